package repo_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/publisher/repo"
)

// The base of a repository is a repository beside it: created on first
// use with its configuration, refusing other bytes under a stored name,
// version and architecture (naming both digests), sharing stored files with
// the repository, published, snapshotted with it and kept by gc.
func TestBaseRepository(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.store.Base(ctx, "test"); !errors.Is(err, repo.ErrNotFound) || !strings.Contains(err.Error(), "no base yet") {
		t.Fatalf("Base before the first base package: %v", err)
	}
	b, err := f.store.EnsureBase(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "test-base" || b.BaseOf != "test" || b.Format != repo.FormatDeb || b.Suite != "stable" || b.Codename != "bookworm" || b.Label != "Kiln base" || !strings.Contains(b.Description, "Base of test") {
		t.Fatalf("base configuration: %+v", b)
	}
	if again, err := f.store.EnsureBase(ctx, "test"); err != nil || again.Name != b.Name {
		t.Fatalf("EnsureBase again: %+v, %v", again, err)
	}

	// A release's own package that a later build installed is in the
	// repository and in its base, stored once.
	zlib := f.deb("zlib1g", "1:1.2.13.dfsg-1", "amd64", "upstream")
	own := f.deb("alpha", "1.0", "amd64", "own")
	if _, err := f.store.Include(ctx, "test", []repo.Input{own}, nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := f.store.Include(ctx, "test-base", []repo.Input{zlib, own}, nil, nil)
	if err != nil || len(res.Added) != 2 {
		t.Fatalf("include into the base: %+v, %v", res, err)
	}
	if n := countObjects(t, f.store.Root()); n != 2 {
		t.Errorf("%d stored objects, want 2 (alpha once, zlib1g)", n)
	}
	inRepo, err := os.Stat(filepath.Join(f.store.PublicDir("test"), "pool/main/a/alpha/alpha_1.0_amd64.deb"))
	if err != nil {
		t.Fatal(err)
	}
	inBase, err := os.Stat(filepath.Join(f.store.PublicDir("test-base"), "pool/main/a/alpha/alpha_1.0_amd64.deb"))
	if err != nil || !os.SameFile(inRepo, inBase) {
		t.Errorf("the package in the repository and in its base are not one stored file: %v", err)
	}
	if res, err := f.store.Include(ctx, "test-base", []repo.Input{zlib}, nil, nil); err != nil || len(res.Existing) != 1 {
		t.Fatalf("the same base package again: %+v, %v", res, err)
	}

	// Other bytes under a stored name, version and architecture.
	rebuilt := f.deb("zlib1g", "1:1.2.13.dfsg-1", "amd64", "other mirror")
	_, err = f.store.Include(ctx, "test-base", []repo.Input{rebuilt}, nil, nil)
	want := "base package zlib1g 1:1.2.13.dfsg-1 amd64: stored sha256 " + fileSHA(t, zlib.Path) + ", offered sha256 " + fileSHA(t, rebuilt.Path)
	if !errors.Is(err, repo.ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("other bytes for a base package: %v\nwant %q", err, want)
	}

	pub, err := f.store.Publish(ctx, "test-base", fakeSigner{})
	if err != nil || pub.Packages != 2 || pub.Bytes == 0 {
		t.Fatalf("publish the base: %+v, %v", pub, err)
	}
	rel, err := os.ReadFile(filepath.Join(f.store.PublicDir("test-base"), "dists/stable/Release"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Label: Kiln base\n", "Suite: stable\n", "Codename: bookworm\n", "Description: Base of test: "} {
		if !strings.Contains(string(rel), w) {
			t.Errorf("the base's Release lacks %q:\n%s", w, rel)
		}
	}
	pk, err := os.ReadFile(filepath.Join(f.store.PublicDir("test-base"), "dists/stable/main/binary-amd64/Packages"))
	if err != nil || !strings.Contains(string(pk), "Package: zlib1g\nVersion: 1:1.2.13.dfsg-1\n") {
		t.Errorf("the base's Packages: %v\n%s", err, pk)
	}

	// The repository's configuration changes reach its base.
	if err := f.store.CreateRepo(ctx, repo.Config{Name: "test", Format: repo.FormatDeb, Suite: "stable", Codename: "bookworm", Description: "MOS 9.0"}); err != nil {
		t.Fatal(err)
	}
	if b, err := f.store.Base(ctx, "test"); err != nil || !strings.Contains(b.Description, "(MOS 9.0)") {
		t.Errorf("base configuration after the repository's changed: %+v, %v", b, err)
	}

	// A snapshot of the repository takes its base with it.
	sn, err := f.store.CreateSnapshot(ctx, "test", "ga")
	if err != nil || sn.Base != "ga-base" || sn.Packages != 1 {
		t.Fatalf("snapshot: %+v, %v", sn, err)
	}
	if _, err := f.store.Remove(ctx, "test-base", []repo.RemoveSpec{{Name: "zlib1g"}}); err != nil {
		t.Fatal(err)
	}
	sp, err := f.store.PublishSnapshot(ctx, "ga", fakeSigner{})
	if err != nil || sp.Base == nil || sp.Base.Packages != 2 || sp.Base.Dir != f.store.SnapshotDir("ga-base") {
		t.Fatalf("publish the snapshot: %+v, %v", sp, err)
	}
	if _, err := os.Stat(filepath.Join(f.store.SnapshotDir("ga-base"), "pool/main/z/zlib1g/zlib1g_1.2.13.dfsg-1_amd64.deb")); err != nil {
		t.Errorf("the base snapshot's pool: %v", err)
	}
	// The snapshot keeps the removed base package's file from gc.
	f.clock = f.clock.Add(72 * time.Hour)
	if res, err := f.store.CollectObjects(ctx, time.Hour, false); err != nil || res.Removed != 0 || !f.store.HasObject(fileSHA(t, zlib.Path)) {
		t.Errorf("gc with the base snapshot: %+v, %v", res, err)
	}
	if _, err := f.store.CreateSnapshot(ctx, "test", "ga"); err == nil {
		t.Error("a second snapshot ga was accepted")
	}
}

func TestBaseNamesRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.store.EnsureBase(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func() error
		want string
	}{
		{"config names a base", func() error {
			return f.store.CreateRepo(ctx, repo.Config{Name: "test-base", Format: repo.FormatDeb, Suite: "stable"})
		}, "is the base of repository test"},
		{"base of a base", func() error { _, err := f.store.EnsureBase(ctx, "test-base"); return err }, "has no base of its own"},
		{"name taken", func() error {
			if err := f.store.CreateRepo(ctx, repo.Config{Name: "x", Format: repo.FormatDeb, Suite: "s"}); err != nil {
				return err
			}
			if err := f.store.CreateRepo(ctx, repo.Config{Name: "x-base", Format: repo.FormatDeb, Suite: "s"}); err != nil {
				return err
			}
			_, err := f.store.EnsureBase(ctx, "x")
			return err
		}, "a repository of that name exists and is not its base"},
		{"unknown repository", func() error { _, err := f.store.EnsureBase(ctx, "nope"); return err }, `repository "nope"`},
	}
	for _, tc := range cases {
		err := tc.do()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func countObjects(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(root, "objects"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

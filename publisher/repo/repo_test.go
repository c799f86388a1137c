package repo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
)

// fakeSigner marks what it signs; unit tests check placement, the
// integration tests check real signatures with gpgv and apt.
type fakeSigner struct{}

func (fakeSigner) DetachSign(_ context.Context, r io.Reader, _ bool) ([]byte, error) {
	b, err := io.ReadAll(r)
	sum := sha256.Sum256(b)
	return []byte("SIG " + hex.EncodeToString(sum[:]) + "\n"), err
}

func (fakeSigner) ClearSign(_ context.Context, data []byte) ([]byte, error) {
	return append([]byte("CLEARSIGNED\n"), data...), nil
}

type fixture struct {
	t     *testing.T
	store *repo.Store
	dir   string
	clock time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	st, err := repo.Open(context.Background(), repo.Options{Root: filepath.Join(f.dir, "root"), Now: func() time.Time {
		f.clock = f.clock.Add(time.Second)
		return f.clock
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.store = st
	if err := st.CreateRepo(context.Background(), repo.Config{Name: "test", Format: repo.FormatDeb, Suite: "stable", Codename: "bookworm"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// deb writes a package file and returns its input.
func (f *fixture) deb(name, version, arch, payload string) repo.Input {
	f.t.Helper()
	data, err := debtest.Build(debtest.Control(name, version, arch), debtest.Options{Payload: []byte(payload)})
	if err != nil {
		f.t.Fatal(err)
	}
	base := name + "_" + version + "_" + arch + ".deb"
	p := filepath.Join(f.dir, "in-"+payload+"-"+base)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	return repo.Input{Name: base, Path: p}
}

func (f *fixture) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.store.PublicDir("test"), rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func TestIncludePublishListRemove(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a1, a2, b := f.deb("alpha", "1.0", "amd64", "a1"), f.deb("alpha", "2.0", "amd64", "a2"), f.deb("beta", "1.0", "all", "b")
	res, err := f.store.Include(ctx, "test", []repo.Input{a1, a2, b}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 3 {
		t.Fatalf("added %d, want 3", len(res.Added))
	}
	pub, err := f.store.Publish(ctx, "test", fakeSigner{})
	if err != nil {
		t.Fatal(err)
	}
	pk := f.read("dists/stable/main/binary-amd64/Packages")
	for _, want := range []string{"Package: alpha\nVersion: 1.0\n", "Package: alpha\nVersion: 2.0\n", "Package: beta\n", "Filename: pool/main/a/alpha/alpha_2.0_amd64.deb"} {
		if !strings.Contains(pk, want) {
			t.Errorf("Packages lacks %q:\n%s", want, pk)
		}
	}
	if _, err := os.Stat(filepath.Join(f.store.PublicDir("test"), "pool/main/a/alpha/alpha_1.0_amd64.deb")); err != nil {
		t.Errorf("pool file missing: %v", err)
	}
	if got := f.read("dists/stable/InRelease"); !strings.HasPrefix(got, "CLEARSIGNED\nOrigin: Kiln\n") {
		t.Errorf("InRelease = %q", got[:40])
	}
	// by-hash holds the live Packages under its SHA256.
	rel := f.read("dists/stable/Release")
	sum := sha256.Sum256([]byte(pk))
	if !strings.Contains(rel, hex.EncodeToString(sum[:])) {
		t.Error("Release does not list the Packages sha256")
	}
	if got := f.read("dists/stable/main/binary-amd64/by-hash/SHA256/" + hex.EncodeToString(sum[:])); got != pk {
		t.Error("by-hash file differs from Packages")
	}
	list, err := f.store.List(ctx, "test")
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %v, %v", list, err)
	}

	// Remove one version; after two publishes its pool file is gone, the
	// other version's stays.
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "alpha", Version: "1.0"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "nope"}}); err == nil || !strings.Contains(err.Error(), "no package matching nope") {
		t.Errorf("removing a missing package: %v", err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(f.read("dists/stable/main/binary-amd64/Packages"), "Version: 1.0\nArchitecture: amd64") {
		t.Error("removed version still indexed")
	}
	// The old index generation is still by-hash reachable and its pool
	// file still there.
	if got := f.read("dists/stable/main/binary-amd64/by-hash/SHA256/" + hex.EncodeToString(sum[:])); got != pk {
		t.Error("previous Packages no longer reachable by hash")
	}
	oldPool := filepath.Join(f.store.PublicDir("test"), "pool/main/a/alpha/alpha_1.0_amd64.deb")
	if _, err := os.Stat(oldPool); err != nil {
		t.Errorf("pool file removed one publish too early: %v", err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(oldPool); !os.IsNotExist(err) {
		t.Errorf("unreferenced pool file kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.store.PublicDir("test"), "pool/main/a/alpha/alpha_2.0_amd64.deb")); err != nil {
		t.Errorf("referenced pool file removed: %v", err)
	}
	_ = pub
}

func TestIncludeConflictsAndNoOps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	first := f.deb("alpha", "1.0", "amd64", "one")
	if _, err := f.store.Include(ctx, "test", []repo.Input{first}, nil, nil); err != nil {
		t.Fatal(err)
	}
	res, err := f.store.Include(ctx, "test", []repo.Input{first}, nil, nil)
	if err != nil || len(res.Added) != 0 || len(res.Existing) != 1 {
		t.Fatalf("identical include: %+v, %v", res, err)
	}
	other := f.deb("alpha", "1.0", "amd64", "two")
	good := f.deb("gamma", "1.0", "amd64", "g")
	_, err = f.store.Include(ctx, "test", []repo.Input{good, other}, nil, nil)
	if err == nil {
		t.Fatal("conflicting include accepted")
	}
	s1 := fileSHA(t, first.Path)
	s2 := fileSHA(t, other.Path)
	if !strings.Contains(err.Error(), s1) || !strings.Contains(err.Error(), s2) {
		t.Errorf("error does not name both digests %s and %s: %v", s1, s2, err)
	}
	// Nothing else changed: gamma was not added either.
	list, _ := f.store.List(ctx, "test")
	if len(list) != 1 {
		t.Errorf("after refused include the repo has %d packages, want 1", len(list))
	}
}

func TestIncludeRefusesBadInputAndChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	good := f.deb("alpha", "1.0", "amd64", "x")
	evil, err := debtest.Build(debtest.Control("evil", "1.0", "amd64")+"\nPackage: injected\n", debtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	evilPath := filepath.Join(f.dir, "evil.deb")
	os.WriteFile(evilPath, evil, 0o644)
	cases := []struct {
		name    string
		in      repo.Input
		wantErr string
	}{
		{"stanza injection", repo.Input{Name: "evil.deb", Path: evilPath}, "second stanza"},
		{"traversal name", repo.Input{Name: "../evil.deb", Path: evilPath}, "path separator"},
		{"unknown type", repo.Input{Name: "evil.zip", Path: evilPath}, `unknown file type ".zip"`},
		{"rpm into deb", repo.Input{Name: "evil.rpm", Path: evilPath}, "cannot go into deb repository"},
	}
	for _, tc := range cases {
		_, err := f.store.Include(ctx, "test", []repo.Input{good, tc.in}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	if list, _ := f.store.List(ctx, "test"); len(list) != 0 {
		t.Errorf("refused includes left %d packages", len(list))
	}
	var left []string
	filepath.WalkDir(filepath.Join(f.store.Root(), "tmp"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return err
	})
	if len(left) != 0 {
		t.Errorf("refused includes left temporary files: %v", left)
	}
}

func TestIncludeRemovesStaleTemporaryFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tmp := filepath.Join(f.store.Root(), "tmp")
	// Older stores kept temporary files in tmp/ itself, now they are
	// spread below it.
	stale, fresh := filepath.Join(tmp, "deb-stale"), filepath.Join(tmp, "upload-fresh")
	staleBelow := filepath.Join(tmp, "a", "deb-stale")
	os.WriteFile(stale, []byte("x"), 0o600)
	os.WriteFile(staleBelow, []byte("x"), 0o600)
	os.WriteFile(fresh, []byte("x"), 0o600)
	old := f.clock.Add(-48 * time.Hour)
	for _, p := range []string{stale, staleBelow} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(fresh, f.clock, f.clock); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Include(context.Background(), "test", []repo.Input{f.deb("alpha", "1.0", "amd64", "a")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, staleBelow} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("stale temporary file %s kept: %v", p, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent temporary file removed: %v", err)
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.store.Include(ctx, "test", []repo.Input{f.deb("alpha", "1.0", "amd64", "a")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	sn, err := f.store.CreateSnapshot(ctx, "test", "rc1")
	if err != nil || sn.Packages != 1 {
		t.Fatalf("CreateSnapshot = %+v, %v", sn, err)
	}
	if _, err := f.store.CreateSnapshot(ctx, "test", "rc1"); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("second snapshot with the same name: %v", err)
	}
	if _, err := f.store.CreateSnapshot(ctx, "test", "../x"); err == nil {
		t.Error("snapshot name with a slash accepted")
	}
	// Later changes to the repository do not reach the snapshot.
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Include(ctx, "test", []repo.Input{f.deb("beta", "1.0", "amd64", "b")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.PublishSnapshot(ctx, "rc1", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	pk, err := os.ReadFile(filepath.Join(f.store.SnapshotDir("rc1"), "dists/stable/main/binary-amd64/Packages"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(pk, []byte("Package: alpha")) || bytes.Contains(pk, []byte("Package: beta")) {
		t.Errorf("snapshot index wrong:\n%s", pk)
	}
	if _, err := os.Stat(filepath.Join(f.store.SnapshotDir("rc1"), "pool/main/a/alpha/alpha_1.0_amd64.deb")); err != nil {
		t.Errorf("snapshot pool file: %v", err)
	}
	list, err := f.store.Snapshots(ctx, "test")
	if err != nil || len(list) != 1 || list[0].Name != "rc1" {
		t.Errorf("Snapshots = %+v, %v", list, err)
	}
}

func TestRepoConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     repo.Config
		wantErr string
	}{
		{"no format", repo.Config{Name: "x"}, "no format"},
		{"reserved name", repo.Config{Name: "snapshots", Format: "deb", Suite: "s"}, "reserved"},
		{"bad format", repo.Config{Name: "x", Format: "apk"}, `format "apk" is not supported`},
		{"no suite", repo.Config{Name: "x", Format: "deb"}, "need a suite"},
		{"slash in suite", repo.Config{Name: "x", Format: "deb", Suite: "a/b"}, `suite name "a/b"`},
		{"bad name", repo.Config{Name: "../x", Format: "deb", Suite: "s"}, `repository name "../x"`},
		{"bad compression", repo.Config{Name: "x", Format: "deb", Suite: "s", Compressions: []string{"bz2"}}, `compression "bz2"`},
		{"newline origin", repo.Config{Name: "x", Format: "deb", Suite: "s", Origin: "a\nSuite: evil"}, "origin must be one line"},
		{"contents on rpm", repo.Config{Name: "x", Format: "rpm", Contents: true}, "contents is for deb repositories"},
		{"xz block size too small", repo.Config{Name: "x", Format: "deb", Suite: "s", XZBlockSize: 100}, "xz_block_size 100 is out of range"},
		{"xz block size negative", repo.Config{Name: "x", Format: "deb", Suite: "s", XZBlockSize: -1}, "xz_block_size -1 is out of range"},
		{"xz block size without xz", repo.Config{Name: "x", Format: "deb", Suite: "s", XZBlockSize: 1 << 22, Compressions: []string{"gz"}}, "has no xz"},
		{"xz block size on rpm", repo.Config{Name: "x", Format: "rpm", XZBlockSize: 1 << 22}, "xz_block_size is for deb repositories"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A package removed and included again with other content under the same
// file name is refused while its old file is still in the published pool
// (clients may still fetch it), and accepted once the pool dropped it; the
// published pool file then has the new content.
func TestRemovedFileNameComesBackWithOtherContent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	first := f.deb("alpha", "1.0", "amd64", "one")
	if _, err := f.store.Include(ctx, "test", []repo.Input{first}, nil, nil); err != nil {
		t.Fatal(err)
	}
	poolFile := filepath.Join(f.store.PublicDir("test"), "pool/main/a/alpha/alpha_1.0_amd64.deb")
	if fileSHA(t, poolFile) != fileSHA(t, first.Path) {
		t.Fatal("the included file is not in the published pool right after include")
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	other := f.deb("alpha", "1.0", "amd64", "two")
	_, err := f.store.Include(ctx, "test", []repo.Input{other}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "still in the published pool with sha256 "+fileSHA(t, first.Path)) {
		t.Fatalf("including other content under a still-published file name: %v", err)
	}
	if list, _ := f.store.List(ctx, "test"); len(list) != 0 {
		t.Fatalf("refused include left %d packages", len(list))
	}
	for range 2 {
		if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.Include(ctx, "test", []repo.Input{other}, nil, nil); err != nil {
		t.Fatalf("include after the old file left the pool: %v", err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if got, want := fileSHA(t, poolFile), fileSHA(t, other.Path); got != want {
		t.Errorf("published pool file has sha256 %s, the included package %s", got, want)
	}
	if !strings.Contains(f.read("dists/stable/main/binary-amd64/Packages"), "SHA256: "+fileSHA(t, other.Path)) {
		t.Error("Packages does not list the new file's sha256")
	}
}

// CollectObjects removes the stored files no package of a repository or a
// snapshot references, once they and their last upload are older than the
// grace period; a dry run only counts them.
func TestCollectObjects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a1, a2, b := f.deb("alpha", "1.0", "amd64", "a1"), f.deb("alpha", "2.0", "amd64", "a2"), f.deb("beta", "1.0", "amd64", "b")
	if _, err := f.store.Include(ctx, "test", []repo.Input{a1, a2, b}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "alpha", Version: "1.0"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateSnapshot(ctx, "test", "snap"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "beta"}}); err != nil {
		t.Fatal(err)
	}
	orphan := []byte("an upload no publish request included")
	sum := sha256.Sum256(orphan)
	orphanSHA := hex.EncodeToString(sum[:])
	if _, err := f.store.AddObject(ctx, orphanSHA, int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	// Every object was written two days before the store's clock.
	old := f.clock.Add(-48 * time.Hour)
	objects := map[string]string{"a1": fileSHA(t, a1.Path), "a2": fileSHA(t, a2.Path), "b": fileSHA(t, b.Path), "orphan": orphanSHA}
	for _, s := range objects {
		if err := os.Chtimes(f.store.ObjectPath(s), old, old); err != nil {
			t.Fatal(err)
		}
	}
	present := func() map[string]bool {
		got := map[string]bool{}
		for n, s := range objects {
			got[n] = f.store.HasObject(s)
		}
		return got
	}
	dry, err := f.store.CollectObjects(ctx, 24*time.Hour, true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Removed != 1 || dry.Kept != 2 || dry.Young != 1 || !present()["a1"] {
		t.Fatalf("dry run: %+v, objects %v", dry, present())
	}
	res, err := f.store.CollectObjects(ctx, 24*time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	// alpha 1.0 was removed; beta is kept by the snapshot; the orphan
	// was uploaded within the grace period.
	want := map[string]bool{"a1": false, "a2": true, "b": true, "orphan": true}
	if got := present(); res.Removed != 1 || res.Bytes == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("collect: %+v, objects %v, want %v", res, got, want)
	}
	f.clock = f.clock.Add(48 * time.Hour)
	if res, err := f.store.CollectObjects(ctx, 24*time.Hour, false); err != nil || res.Removed != 1 || f.store.HasObject(orphanSHA) {
		t.Fatalf("collect after the grace period: %+v, %v; orphan still there: %v", res, err, f.store.HasObject(orphanSHA))
	}
	// The repository still publishes, and a snapshot still has its files.
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.PublishSnapshot(ctx, "snap", fakeSigner{}); err != nil {
		t.Fatalf("publish the snapshot after collecting: %v", err)
	}
	if _, err := f.store.CollectObjects(ctx, -time.Second, false); err == nil {
		t.Error("a negative grace period was accepted")
	}
}

// A long include logs how far it has read.
func TestIncludeLogsProgress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &logs, mu: &mu}, Level: hclog.Info})
	st, err := repo.Open(context.Background(), repo.Options{Root: filepath.Join(dir, "root"), ProgressEvery: time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateRepo(context.Background(), repo.Config{Name: "test", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: st, dir: dir}
	var inputs []repo.Input
	for i := range 200 {
		inputs = append(inputs, f.deb(fmt.Sprintf("p%03d", i), "1.0", "amd64", fmt.Sprint(i)))
	}
	if _, err := st.Include(context.Background(), "test", inputs, nil, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "progress: what=\"reading packages\" done=") || !strings.Contains(logs.String(), "of=200") {
		t.Errorf("no progress logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// writeDSC writes a .dsc of source version version naming files (name ->
// content), and the files, into dir; it returns the .dsc's input.
func writeDSC(t *testing.T, dir, source, version string, files map[string]string) repo.Input {
	t.Helper()
	var sums strings.Builder
	for name, content := range files {
		sum := sha256.Sum256([]byte(content))
		fmt.Fprintf(&sums, " %s %d %s\n", hex.EncodeToString(sum[:]), len(content), name)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dsc := fmt.Sprintf("Format: 3.0 (quilt)\nSource: %s\nBinary: %s\nArchitecture: any\nVersion: %s\nMaintainer: Kiln <kiln@example.org>\nChecksums-Sha256:\n%s", source, source, version, sums.String())
	name := source + "_" + version + ".dsc"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(dsc), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo.Input{Name: name, Path: filepath.Join(dir, name)}
}

// Two source packages of one include naming the same file with different
// content are refused: the pool would hold one, an index name the other.
func TestIncludeRefusesOnePoolPathWithTwoContents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	d1, d2 := filepath.Join(f.dir, "one"), filepath.Join(f.dir, "two")
	for _, d := range []string{d1, d2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	a := writeDSC(t, d1, "foo", "1.0-1", map[string]string{"foo_1.0.orig.tar.gz": "upstream one", "foo_1.0-1.debian.tar.xz": "debian one"})
	b := writeDSC(t, d2, "foo", "1.0-2", map[string]string{"foo_1.0.orig.tar.gz": "upstream two", "foo_1.0-2.debian.tar.xz": "debian two"})
	_, err := f.store.Include(ctx, "test", []repo.Input{a, b}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "two of the files name pool/main/f/foo/foo_1.0.orig.tar.gz") {
		t.Fatalf("include of two sources with different tarballs of one name: %v", err)
	}
	if list, _ := f.store.List(ctx, "test"); len(list) != 0 {
		t.Fatalf("refused include added %d packages", len(list))
	}
	// The same tarball shared by two revisions is fine.
	c := writeDSC(t, d2, "foo", "1.0-3", map[string]string{"foo_1.0.orig.tar.gz": "upstream one", "foo_1.0-3.debian.tar.xz": "debian three"})
	if _, err := f.store.Include(ctx, "test", []repo.Input{a, c}, nil, nil); err != nil {
		t.Fatalf("two revisions sharing one tarball: %v", err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	// A pool file that does not match the store is found at publish.
	pool := filepath.Join(f.store.PublicDir("test"), "pool/main/f/foo/foo_1.0.orig.tar.gz")
	if err := os.Remove(pool); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pool, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err == nil || !strings.Contains(err.Error(), "does not match the store") {
		t.Fatalf("publish over a pool file with other content: %v", err)
	}
}

// An upload of a file already stored, answered "existed", keeps the file
// even while a collection that would remove it runs.
func TestCollectObjectsSparesConcurrentUploads(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	old := f.clock.Add(-48 * time.Hour)
	var data [][]byte
	for i := range 300 {
		b := []byte(fmt.Sprintf("orphan %d", i))
		sum := sha256.Sum256(b)
		if _, err := f.store.AddObject(ctx, hex.EncodeToString(sum[:]), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.store.ObjectPath(hex.EncodeToString(sum[:])), old, old); err != nil {
			t.Fatal(err)
		}
		data = append(data, b)
	}
	// The uploads are older than the grace period by the store's clock.
	f.clock = f.clock.Add(48 * time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := f.store.CollectObjects(ctx, 24*time.Hour, false)
		done <- err
	}()
	var lost []string
	for _, b := range data {
		sum := sha256.Sum256(b)
		s := hex.EncodeToString(sum[:])
		existed, err := f.store.AddObject(ctx, s, int64(len(b)), bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if existed && !f.store.HasObject(s) {
			lost = append(lost, s)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, b := range data {
		sum := sha256.Sum256(b)
		if s := hex.EncodeToString(sum[:]); !f.store.HasObject(s) {
			lost = append(lost, s)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d uploads answered as stored were removed by the collection", len(lost))
	}
}

// TestReleaseDateAdvancesBetweenPublishes: two publishes within one second
// of the real clock give Releases whose Dates differ. apt reads Date in
// seconds and takes a Release with the Date it has for the one it has, so
// a client that updated in between would never see the second publish.
func TestReleaseDateAdvancesBetweenPublishes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	st, err := repo.Open(ctx, repo.Options{Root: filepath.Join(f.dir, "real-clock"), Now: time.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateRepo(ctx, repo.Config{Name: "r", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
		t.Fatal(err)
	}
	date := func() time.Time {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(st.PublicDir("r"), "dists/stable/Release"))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Date: "); ok {
				d, err := time.Parse(time.RFC1123, v)
				if err != nil {
					t.Fatalf("Release Date %q: %v", v, err)
				}
				return d
			}
		}
		t.Fatalf("Release has no Date:\n%s", b)
		return time.Time{}
	}
	var dates []time.Time
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if _, _, err := st.IncludeAndPublish(ctx, "r", []repo.Input{f.deb(name, "1.0", "amd64", name)}, nil, fakeSigner{}); err != nil {
			t.Fatal(err)
		}
		dates = append(dates, date())
	}
	for i := 1; i < len(dates); i++ {
		if !dates[i].After(dates[i-1]) {
			t.Errorf("publish %d has Release Date %s, publish %d %s: a later publish needs a later Date", i+1, dates[i], i, dates[i-1])
		}
	}
}

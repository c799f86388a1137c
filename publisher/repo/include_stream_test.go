package repo_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
)

// publicFiles lists the regular files below the repository's published
// pool.
func publicFiles(t *testing.T, f *fixture) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(f.store.PublicDir("test"), "pool"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An include that fails after recording many of its packages in its
// transaction leaves the repository as it was: no package, pool file or
// temporary file of it remains, and the files it stored are unreferenced
// objects that CollectObjects removes.
func TestIncludeFailingMidwayChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		bad     func(f *fixture) repo.Input
		wantErr string
	}{
		{"unreadable deb", func(f *fixture) repo.Input {
			p := filepath.Join(f.dir, "broken_1.0_amd64.deb")
			if err := os.WriteFile(p, []byte("!<arch>\nnot a deb"), 0o644); err != nil {
				t.Fatal(err)
			}
			return repo.Input{Name: filepath.Base(p), Path: p}
		}, "broken_1.0_amd64.deb"},
		{"conflict with an earlier file of the include", func(f *fixture) repo.Input {
			return f.deb("pkg-005", "1.0", "amd64", "other")
		}, "conflicting package"},
		{"conflict with the repository", func(f *fixture) repo.Input {
			return f.deb("kept", "1.0", "amd64", "other")
		}, "conflicting package"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if _, err := f.store.Include(ctx, "test", []repo.Input{f.deb("kept", "1.0", "amd64", "kept")}, nil, nil); err != nil {
				t.Fatal(err)
			}
			poolBefore := publicFiles(t, f)
			objectsBefore := countObjects(t, f.store.Root())
			// Far more packages than an include reads ahead, the bad one
			// late: the ones before it are in the transaction by then.
			var inputs []repo.Input
			for i := range 60 {
				inputs = append(inputs, f.deb(fmt.Sprintf("pkg-%03d", i), "1.0", "amd64", fmt.Sprint(i)))
			}
			inputs = append(inputs[:50], append([]repo.Input{tc.bad(f)}, inputs[50:]...)...)
			_, err := f.store.Include(ctx, "test", inputs, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("include = %v, want an error naming %q", err, tc.wantErr)
			}
			list, err := f.store.List(ctx, "test")
			if err != nil || len(list) != 1 || list[0].Name != "kept" {
				t.Errorf("after the refused include the repository lists %+v (%v), want only kept", list, err)
			}
			if got := publicFiles(t, f); fmt.Sprint(got) != fmt.Sprint(poolBefore) {
				t.Errorf("published pool after the refused include: %v, want %v", got, poolBefore)
			}
			var left []string
			filepath.WalkDir(filepath.Join(f.store.Root(), "tmp"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					left = append(left, p)
				}
				return err
			})
			if len(left) != 0 {
				t.Errorf("the refused include left temporary files: %v", left)
			}
			stored := countObjects(t, f.store.Root())
			f.clock = time.Now().Add(48 * time.Hour)
			res, err := f.store.CollectObjects(ctx, 24*time.Hour, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != stored-objectsBefore || countObjects(t, f.store.Root()) != objectsBefore {
				t.Errorf("collect after the refused include: %+v, %d objects left, want %d removed and %d left", res, countObjects(t, f.store.Root()), stored-objectsBefore, objectsBefore)
			}
			// The same packages without the bad one go in whole.
			good := append(inputs[:50:50], inputs[51:]...)
			inc, err := f.store.Include(ctx, "test", good, nil, nil)
			if err != nil || len(inc.Added) != len(good) {
				t.Fatalf("include without the bad file: %d added, %v", len(inc.Added), err)
			}
			if got := len(publicFiles(t, f)); got != len(good)+1 {
				t.Errorf("published pool has %d files, want %d", got, len(good)+1)
			}
		})
	}
}

// The same file twice in one include is added once and not listed as
// already present; in a later include it is.
func TestIncludeSameFileTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.deb("alpha", "1.0", "amd64", "a"), f.deb("beta", "1.0", "amd64", "b")
	res, err := f.store.Include(ctx, "test", []repo.Input{a, b, a}, nil, nil)
	if err != nil || len(res.Added) != 2 || len(res.Existing) != 0 || res.Added[0].Name != "alpha" || res.Added[1].Name != "beta" {
		t.Fatalf("include a, b, a: %+v, %v; want alpha and beta added in order", res, err)
	}
	res, err = f.store.Include(ctx, "test", []repo.Input{b, a}, nil, nil)
	if err != nil || len(res.Added) != 0 || len(res.Existing) != 2 {
		t.Fatalf("include again: %+v, %v; want both already present", res, err)
	}
}

// An include holds a few packages in memory however many it adds: the
// heap while it reads its last file holds the stanzas of at most a few
// packages (64 KiB each here), not of all 300. Not parallel: it reads
// the process's heap.
func TestIncludeDoesNotHoldEveryPackage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n, descr = 300, 64 << 10
	long := " " + strings.Repeat("x", descr) + "\n"
	var inputs []repo.Input
	for i := range n {
		name := fmt.Sprintf("big-%04d", i)
		data, err := debtest.Build(debtest.Control(name, "1.0", "amd64")+long, debtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(f.dir, name+"_1.0_amd64.deb")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, repo.Input{Name: filepath.Base(p), Path: p})
	}
	// A .dsc last: its resolver runs while the include reads it, after
	// the packages before it are read.
	dsc := writeDSC(t, f.dir, "last", "1.0", map[string]string{"last_1.0.tar.gz": "tarball"})
	inputs = append(inputs, dsc)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	var during uint64
	resolve := func(name string) (string, bool) {
		during = heap()
		p := filepath.Join(f.dir, name)
		_, err := os.Stat(p)
		return p, err == nil
	}
	res, err := f.store.Include(ctx, "test", inputs, resolve, nil)
	if err != nil || len(res.Added) != n+1 {
		t.Fatalf("include: %d added, %v", len(res.Added), err)
	}
	// Holding every stanza would take n*descr = 19 MiB.
	if grew := int64(during) - int64(before); grew > 6<<20 {
		t.Errorf("the heap grew by %d MiB while including %d packages with %d KiB stanzas: the include holds the packages it has recorded", grew>>20, n, descr>>10)
	} else {
		t.Logf("heap grew by %d KiB (all stanzas: %d KiB)", grew>>10, n*descr>>10)
	}
}

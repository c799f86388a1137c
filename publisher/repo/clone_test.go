package repo_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
)

// reflinkDir mounts a new XFS file system with reflinks (a loop device over
// a sparse file) and returns a directory on it; it skips without root,
// mkfs.xfs or loop devices.
func reflinkDir(t *testing.T) string {
	t.Helper()
	testenv.Root(t)
	mkfs := testenv.Tool(t, "mkfs.xfs")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(400 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput()
	testenv.Require(t, err == nil, "a loop mount ("+strings.TrimSpace(string(out))+")")
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

// TestIncludeKeepsItsBytesWhenTheSourceChanges: a package file rewritten
// in place after include changes neither the stored object, nor the pool
// file, nor what the index says, whether the store copied it (another file
// system, or one without reflinks) or cloned it (XFS with reflinks: shared
// blocks, copied on write).
func TestIncludeKeepsItsBytesWhenTheSourceChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		dir   func(t *testing.T) string
		clone bool
	}{
		{"copy", func(t *testing.T) string { return t.TempDir() }, false},
		{"reflink", reflinkDir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := tc.dir(t)
			st, err := repo.Open(ctx, repo.Options{Root: filepath.Join(dir, "root")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.CreateRepo(ctx, repo.Config{Name: "r", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
				t.Fatal(err)
			}
			// 16 MiB that gzip cannot shrink: a clone shows in the free space.
			payload := make([]byte, 16<<20)
			if _, err := rand.Read(payload); err != nil {
				t.Fatal(err)
			}
			data, err := debtest.Build(debtest.Control("kiln-big", "1.0-1", "amd64"), debtest.Options{Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			in := filepath.Join(dir, "kiln-big_1.0-1_amd64.deb")
			if err := os.WriteFile(in, data, 0o644); err != nil {
				t.Fatal(err)
			}
			want := fileSHA(t, in)
			free := freeBytes(t, dir)
			if _, err := st.Include(ctx, "r", []repo.Input{{Name: filepath.Base(in), Path: in}}, nil, nil); err != nil {
				t.Fatal(err)
			}
			used := free - freeBytes(t, dir)
			if tc.clone && used > int64(len(data))/2 {
				t.Errorf("include used %d bytes for a %d-byte package on a file system with reflinks: not cloned", used, len(data))
			}

			// Rewrite the source in place (same inode), as a careless
			// build tool might.
			f, err := os.OpenFile(in, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, 1<<20), 4096); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if fileSHA(t, in) == want {
				t.Fatal("the source did not change")
			}

			if got := fileSHA(t, st.ObjectPath(want)); got != want {
				t.Errorf("stored object has sha256 %s after its source changed, want %s", got, want)
			}
			list, err := st.List(ctx, "r")
			if err != nil || len(list) != 1 {
				t.Fatalf("List = %v, %v", list, err)
			}
			if list[0].SHA256 != want {
				t.Errorf("repository names sha256 %s, want %s", list[0].SHA256, want)
			}
			pool := filepath.Join(st.PublicDir("r"), filepath.FromSlash(list[0].Path))
			if got := fileSHA(t, pool); got != want {
				t.Errorf("pool file %s has sha256 %s after its source changed, want %s", list[0].Path, got, want)
			}
		})
	}
}

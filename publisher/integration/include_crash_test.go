package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// TestLargeIncludeSurvivesSIGKILL kills an include of many packages at
// points spread over its transaction (it records each package as it reads
// it): after each kill the repository has all of them or none, the
// published pool holds no file of an include that did not commit, and the
// same include then succeeds and apt accepts the publish.
func TestLargeIncludeSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	must(t, os.MkdirAll(in, 0o755))
	mk := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			name := fmt.Sprintf("%s-%04d", prefix, i)
			data, err := debtest.Build(debtest.Control(name, "1.0", "amd64"), debtest.Options{Payload: []byte(name)})
			must(t, err)
			p := filepath.Join(in, name+"_1.0_amd64.deb")
			must(t, os.WriteFile(p, data, 0o644))
			out = append(out, p)
		}
		return out
	}
	kept, big := mk("crash-kept", 10), mk("crash-big", 800)
	include := func(root string, files []string) []string {
		return append([]string{"include", "--repo", "rel", "--format", "deb", "--suite", "stable", "--root", root, "--key", key.KeyFile}, files...)
	}
	count := func(dir string) int {
		n := 0
		err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return err
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return n
	}
	// Each kill in a store of its own, once the include has moved a
	// given number of files into the object store (it does as it records
	// their packages): the kills spread over the transaction.
	const kills = 8
	killedMidway := 0
	var root, public string
	for i := range kills {
		root = filepath.Join(dir, fmt.Sprintf("root-%d", i))
		public = filepath.Join(root, "public", "rel")
		publisher(t, include(root, kept)...)
		objects := filepath.Join(root, "objects")
		target := len(kept) + len(big)*(i+1)/(kills+1)
		cmd := exec.Command(publisherBin(t), include(root, big)...)
		must(t, cmd.Start())
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
	poll:
		for count(objects) < target {
			select {
			case <-exited:
				break poll
			case <-time.After(2 * time.Millisecond):
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		killed := ok && ws.Signaled()
		// Files being read are written without a name until they are
		// stored: a kill leaves none behind.
		if n := count(filepath.Join(root, "tmp")); n != 0 {
			t.Errorf("after SIGKILL at %d stored files (kill %d) %d temporary files are left in the store's tmp", target, i, n)
		}
		out := publisher(t, "list", "--repo", "rel", "--root", root)
		switch n := strings.Count(out, "crash-big-"); {
		case n == len(big):
			continue // finished or committed before the kill
		case n != 0:
			t.Fatalf("after SIGKILL at %d stored files (kill %d) the repository lists %d of the include's %d packages: want all or none", target, i, n, len(big))
		case count(filepath.Join(public, "pool")) != len(kept):
			t.Fatalf("after SIGKILL at %d stored files (kill %d) the include did not commit, but the published pool has %d files, want %d", target, i, count(filepath.Join(public, "pool")), len(kept))
		}
		if killed {
			killedMidway++
		}
	}
	if killedMidway < kills/2 {
		t.Errorf("only %d of %d includes were killed before they committed; the test did not test much", killedMidway, kills)
	}
	t.Logf("%d of %d includes killed before they committed", killedMidway, kills)
	// In the last store, the same include and a publish work.
	publisher(t, include(root, big)...)
	publisher(t, "publish", "--repo", "rel", "--root", root, "--key", key.KeyFile)
	if err := verifyTree(t, key.Keyring, public, "stable"); err != nil {
		t.Fatal(err)
	}
	if got, want := count(filepath.Join(public, "pool")), len(kept)+len(big); got != want {
		t.Errorf("published pool has %d files, want %d", got, want)
	}
	url := serve(t, public)
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s stable main\n", key.Keyring, url))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update after the kills:\n%s", out)
	}
	if out, err := apt.run("apt-cache", "show", fmt.Sprintf("crash-big-%04d", len(big)-1)); err != nil {
		t.Fatalf("last package not published: %v\n%s", err, out)
	}
}

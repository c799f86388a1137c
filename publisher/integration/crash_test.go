package integration

import (
	"fmt"
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

// TestPublishSurvivesSIGKILL kills the publisher at many points during
// publish; after each kill the live repository must still be the previous
// (or the new) signed state, complete, and accepted by apt.
func TestPublishSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	in := filepath.Join(dir, "in")
	must(t, os.MkdirAll(in, 0o755))
	mk := func(i int) string {
		data, err := debtest.Build(debtest.Control(fmt.Sprintf("crash-pkg-%04d", i), "1.0", "amd64"), debtest.Options{Payload: []byte(strings.Repeat("x", i))})
		must(t, err)
		p := filepath.Join(in, fmt.Sprintf("crash-pkg-%04d_1.0_amd64.deb", i))
		must(t, os.WriteFile(p, data, 0o644))
		return p
	}
	var first []string
	for i := range 600 {
		first = append(first, mk(i))
	}
	publisher(t, append(append([]string{"include", "--repo", "rel", "--format", "deb", "--suite", "stable"}, base...), first...)...)
	publisher(t, append([]string{"publish", "--repo", "rel"}, base...)...)
	public := filepath.Join(root, "public", "rel")
	url := serve(t, public)
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s stable main\n", key.Keyring, url))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update before the kills:\n%s", out)
	}

	// How long an uninterrupted publish takes (the fastest of three), to
	// spread the kills over it.
	var full time.Duration
	for range 3 {
		start := time.Now()
		publisher(t, append([]string{"publish", "--repo", "rel"}, base...)...)
		if d := time.Since(start); full == 0 || d < full {
			full = d
		}
	}
	const kills = 20
	killedMidway := 0
	for i := range kills {
		publisher(t, append([]string{"include", "--repo", "rel", mk(1000 + i)}, base...)...)
		cmd := exec.Command(publisherBin(t), append([]string{"publish", "--repo", "rel"}, base...)...)
		must(t, cmd.Start())
		delay := full * time.Duration(i) / kills
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killedMidway++
		}
		_ = err
		if err := verifyTree(t, key.Keyring, public, "stable"); err != nil {
			t.Fatalf("after SIGKILL at %v (kill %d): %v", delay, i, err)
		}
		if out, ok := apt.update(); !ok {
			t.Fatalf("after SIGKILL at %v (kill %d) apt-get update refuses the repository:\n%s", delay, i, out)
		}
	}
	if killedMidway < kills/2 {
		t.Errorf("only %d of %d publishes were killed before they finished; the test did not test much", killedMidway, kills)
	}
	t.Logf("%d of %d publishes killed before they finished (a full publish takes %v)", killedMidway, kills, full)

	// Includes killed midway leave the store consistent: each package is
	// either in it or not, and the next include and publish work.
	for i := range 5 {
		p := mk(2000 + i)
		cmd := exec.Command(publisherBin(t), append([]string{"include", "--repo", "rel", p}, base...)...)
		must(t, cmd.Start())
		time.Sleep(time.Duration(i) * 15 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		publisher(t, append([]string{"include", "--repo", "rel", p}, base...)...)
	}
	if out := publisher(t, append([]string{"list", "--repo", "rel"}, base...)...); !strings.Contains(out, "crash-pkg-2004") {
		t.Errorf("package included after killed includes is missing:\n%s", out)
	}
	// A publish after all that completes and carries every package. (The
	// pause keeps the new InRelease's Last-Modified apart from the one apt
	// saw, since HTTP dates have one-second resolution.)
	time.Sleep(1100 * time.Millisecond)
	publisher(t, append([]string{"publish", "--repo", "rel"}, base...)...)
	if err := verifyTree(t, key.Keyring, public, "stable"); err != nil {
		t.Fatal(err)
	}
	if out, ok := apt.update(); !ok {
		t.Fatalf("final apt-get update:\n%s", out)
	}
	out, err := apt.run("apt-cache", "show", fmt.Sprintf("crash-pkg-%04d", 1000+kills-1))
	if err != nil {
		t.Fatalf("last package not published: %v\n%s", err, out)
	}
	gens, err := os.ReadDir(filepath.Join(public, ".dists"))
	must(t, err)
	if len(gens) > 2 {
		t.Errorf("%d index generations left behind, want at most 2", len(gens))
	}
}

package buildroot_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestContainerdDownIsAnError stops a containerd of the test's own under a
// buildroot: opening and running are then errors (retried elsewhere), not
// build results.
func TestContainerdDownIsAnError(t *testing.T) {
	t.Parallel()
	testenv.Root(t)
	testenv.Tool(t, "containerd")
	dir, err := os.MkdirTemp("/tmp", "kiln-cd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "containerd.sock")
	script := func(arg string) {
		t.Helper()
		cmd := exec.Command("../../scripts/containerd.sh", arg)
		cmd.Env = append(os.Environ(),
			"KILN_CONTAINERD_ADDRESS="+sock,
			"KILN_CONTAINERD_ROOT="+filepath.Join(dir, "root"),
			"KILN_CONTAINERD_LOG="+filepath.Join(dir, "containerd.log"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("containerd.sh %s: %v\n%s", arg, err, out)
		}
	}
	script("start")
	t.Cleanup(func() {
		script("stop")
		os.RemoveAll(dir)
	})
	cfg := buildroottest.Config(t)
	cfg.Address = sock
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	sb, _ := open(t, b, target)
	execOK(t, sb, executor.Step{Argv: []string{"true"}})

	script("stop")
	res, err := sb.Exec(context.Background(), executor.Step{Argv: []string{"true"}}, &bytes.Buffer{})
	if err == nil {
		t.Errorf("exec with containerd down: result %+v and no error", res)
	}
	if _, err := b.Open(context.Background(), target, t.TempDir()); err == nil {
		t.Error("open with containerd down: no error")
	}
	if _, err := buildroot.New(context.Background(), cfg, buildroottest.Logger(t)); err == nil {
		t.Error("new with containerd down: no error")
	}
	// Back up: the same Buildroot reconnects, and the sandbox and the
	// namespace can be removed.
	script("start")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.Targets(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect to containerd in 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	execOK(t, sb, executor.Step{Argv: []string{"true"}})
}

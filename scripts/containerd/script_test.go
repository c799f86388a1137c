// Tests of scripts/containerd.sh, run against a second containerd instance
// of their own so that the project's instance is left alone.
package containerd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

func TestStartStopStatusIdempotent(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "containerd")
	testenv.Tool(t, "ctr")
	dir, err := os.MkdirTemp("/tmp", "kiln-containerd-test-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "containerd.sock")
	env := append(os.Environ(),
		"KILN_CONTAINERD_ADDRESS="+sock,
		"KILN_CONTAINERD_ROOT="+filepath.Join(dir, "root"),
		"KILN_CONTAINERD_LOG="+filepath.Join(dir, "containerd.log"))
	script := func(arg string) (string, int) {
		cmd := exec.Command("../containerd.sh", arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("containerd.sh %s: %v", arg, err)
		}
		return strings.TrimSpace(string(out)), code
	}
	t.Cleanup(func() {
		script("stop")
		os.RemoveAll(dir)
	})
	steps := []struct {
		arg, want string
		code      int
	}{
		{"status", "containerd not running", 3},
		{"start", "containerd running", 0},
		{"start", "containerd already running", 0},
		{"status", "containerd running", 0},
		{"stop", "containerd stopped", 0},
		{"stop", "containerd not running", 0},
		{"status", "containerd not running", 3},
		{"start", "containerd running", 0},
		{"restart", "usage:", 2},
	}
	for i, s := range steps {
		out, code := script(s.arg)
		if code != s.code || !strings.HasPrefix(out, s.want) {
			t.Fatalf("step %d: containerd.sh %s = %q (exit %d), want %q... (exit %d)", i, s.arg, out, code, s.want, s.code)
		}
	}
	// The instance answers on its own socket, not the project's.
	if out, err := exec.Command("ctr", "--address", sock, "version").CombinedOutput(); err != nil {
		t.Errorf("ctr version on %s: %v\n%s", sock, err, out)
	}
}

package itest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
)

// TestArtifactsCannotEscapeThroughSymlinks: a job that links a directory
// of its work dir to / or to a host directory cannot make the worker
// upload a host file, neither with the shell executor nor in a containerd
// buildroot, whatever glob it asks for.
func TestArtifactsCannotEscapeThroughSymlinks(t *testing.T) {
	testenv.Root(t)
	brCfg := buildroottest.Config(t)
	_, target := buildroottest.NewWith(t, brCfg, buildroottest.DebTarget)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "hostsecret.txt")
	if err := os.WriteFile(secret, []byte("root-only host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t)
	c.worker("shell", "exec=shell", 1)
	targets, _ := json.Marshal(brCfg.Targets)
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`coordinator: %s
name: boxed
labels: {exec: containerd}
slots: 1
executor: containerd
work_dir: %s
buildroot:
  address: %s
  namespace: %s
  state_dir: %s
  targets: %s
`, c.addr, filepath.Join(t.TempDir(), "work"), brCfg.Address, brCfg.Namespace, t.TempDir(), targetsYAML(targets))), 0o644)
	start(t, "worker", "boxed", "run", "--dev", "--config", cfg)

	rel := strings.TrimPrefix(secretDir, "/")
	for _, labels := range []string{"exec=shell", "exec=containerd,target=" + target} {
		t.Run(labels, func(t *testing.T) {
			out, errOut, code := c.cli("run", "--labels", labels, "--wait",
				"--artifacts", "h/"+rel+"/hostsecret.txt", "--artifacts", "h/"+rel+"/*",
				"--artifacts", "out/d/*", "--artifacts", "out/*/*", "--artifacts", "out/*",
				"--", "sh", "-c", "ln -s / h && mkdir out && ln -s "+secretDir+" out/d && echo fine > out/ok.txt")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			for _, want := range []string{`artifact glob "h/` + rel + `/hostsecret.txt" refused: h is a symlink`, `artifact glob "out/d/*" refused: out/d is a symlink`, "artifact out/ok.txt sha256"} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			id := jobID(t, errOut)
			dest := t.TempDir()
			if o, e, code := c.cli("artifacts", "get", id, "--dest", dest); code != 0 {
				t.Fatalf("artifacts get: %d %s %s", code, o, e)
			}
			var got []string
			filepath.Walk(dest, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					r, _ := filepath.Rel(dest, p)
					got = append(got, r)
					if b, _ := os.ReadFile(p); strings.Contains(string(b), "host secret") {
						t.Errorf("%s holds the host secret", r)
					}
				}
				return nil
			})
			if len(got) != 1 || got[0] != "out/ok.txt" {
				t.Errorf("artifacts %v, want [out/ok.txt]", got)
			}
		})
	}
}

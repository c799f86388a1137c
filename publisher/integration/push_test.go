package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// rsyncDaemon runs a real rsync daemon on loopback with one writable
// module, as a mirror host would, and returns its rsync:// URL.
func rsyncDaemon(t *testing.T, dir string) string {
	t.Helper()
	testenv.Tool(t, "rsync")
	testenv.Root(t) // the daemon writes files as the module's uid
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(t.TempDir(), "rsyncd.conf")
	must(t, os.WriteFile(conf, []byte(fmt.Sprintf(`use chroot = no
[mirror]
    path = %s
    read only = no
    uid = root
    gid = root
`, dir)), 0o644))
	cmd := exec.Command("rsync", "--daemon", "--no-detach", "--address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--config="+conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatal("rsync daemon never listened")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("rsync://127.0.0.1:%d/mirror/", port)
}

// TestPushToMirror publishes, pushes to a mirror host's rsync daemon, and
// lets apt verify the mirror; then a newer version replaces the old one on
// the mirror and the package no index names any more is gone from it.
func TestPushToMirror(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	mirrorDir := filepath.Join(dir, "mirror")
	must(t, os.MkdirAll(mirrorDir, 0o755))
	url := rsyncDaemon(t, mirrorDir)
	cfg := filepath.Join(dir, "publisher.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`root: %s
signing:
  key_file: %s
repositories:
  - name: rel
    format: deb
    suite: bookworm
mirrors:
  - name: mirror-1
    dest: %s
`, filepath.Join(dir, "root"), key.KeyFile, url)), 0o644))
	old := dpkgDeb(t, dir, "kiln-hello", "1.0-1", "all", "misc", false)
	publisher(t, "include", "--config", cfg, "--repo", "rel", old)
	out := publisher(t, "publish", "--config", cfg, "--repo", "rel", "--push")
	if !strings.Contains(out, "pushed rel to mirror-1") {
		t.Fatalf("publish --push: %s", out)
	}
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s bookworm main\n", key.Keyring, serve(t, filepath.Join(mirrorDir, "rel"))))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update refused the mirror:\n%s", out)
	}
	if out, err := apt.run("apt-get", "download", "kiln-hello=1.0-1"); err != nil {
		t.Fatalf("download from the mirror: %v\n%s", err, out)
	}

	// Replace 1.0-1 with 1.1-1 and push again. (HTTP's Last-Modified has
	// one-second resolution: apt would take an InRelease rewritten within
	// the same second as not modified.)
	time.Sleep(1100 * time.Millisecond)
	newer := dpkgDeb(t, dir, "kiln-hello", "1.1-1", "all", "misc", false)
	publisher(t, "include", "--config", cfg, "--repo", "rel", newer)
	publisher(t, "remove", "--config", cfg, "--repo", "rel", "kiln-hello=1.0-1")
	publisher(t, "publish", "--config", cfg, "--repo", "rel")
	publisher(t, "push", "--config", cfg, "--repo", "rel")
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update refused the mirror after the second push:\n%s", out)
	}
	if out, err := apt.run("apt-get", "download", "kiln-hello=1.1-1"); err != nil {
		t.Fatalf("download 1.1-1 from the mirror: %v\n%s", err, out)
	}
	// The publisher keeps a file no index names for one more publish (a
	// reader may hold the previous index); after it, the push removes it
	// from the mirror too.
	publisher(t, "publish", "--config", cfg, "--repo", "rel", "--push")
	pool, _ := filepath.Glob(filepath.Join(mirrorDir, "rel", "pool", "main", "k", "kiln-hello", "*.deb"))
	if len(pool) != 1 || !strings.Contains(pool[0], "1.1-1") {
		t.Fatalf("mirror pool after the second push: %v", pool)
	}
	if st, err := os.Lstat(filepath.Join(mirrorDir, "rel", "dists")); err != nil || !st.IsDir() {
		t.Fatalf("mirror dists is not a plain directory: %v", err)
	}
}

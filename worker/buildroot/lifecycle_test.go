package buildroot_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// withExtraFile streams archive with one more file, so its digest differs:
// a stand-in for a refreshed chroot.
func withExtraFile(t *testing.T, archive, name, content string) io.Reader {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer f.Close()
		tr := tar.NewReader(bufio.NewReader(f))
		tw := tar.NewWriter(pw)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.WriteString(tw, content)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func TestRefreshDuringBuildDoesNotDisturbIt(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	ctx := context.Background()
	before, err := b.Target(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	old, oldWork := open(t, b, target)
	type result struct {
		res executor.StepResult
		log string
		err error
	}
	done := make(chan result, 1)
	started := make(chan struct{})
	go func() {
		log := &recordWriter{notifyWriter: notifyWriter{started: started}}
		// Reads the chroot until the test says go, after the refresh,
		// and must not see the refreshed chroot.
		res, err := old.Exec(ctx, executor.Step{Argv: sh(
			"echo started; while ! test -e /build/go; do test ! -e /etc/kiln-refreshed || exit 9; cat /usr/bin/dpkg > /dev/null; sleep 0.1; done; test ! -e /etc/kiln-refreshed && echo finished")}, log)
		done <- result{res, log.String(), err}
	}()
	<-started
	archive := buildroottest.Archive(t, target)
	after, err := b.Import(ctx, target, withExtraFile(t, archive, "./etc/kiln-refreshed", "yes\n"))
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if after.Digest == before.Digest {
		t.Fatalf("refresh kept digest %s", after.Digest)
	}
	// The old chroot stays while the build uses it.
	if len(after.Retired) != 0 {
		t.Errorf("Import result lists retired %v", after.Retired)
	}
	cur, err := b.Target(ctx, target)
	if err != nil || cur.Digest != after.Digest || len(cur.Retired) != 1 || cur.Retired[0] != before.Snapshot {
		t.Errorf("after refresh: %+v, %v; want digest %s with %s retired", cur, err, after.Digest, before.Snapshot)
	}
	// New sandboxes get the new chroot at once.
	fresh, _ := open(t, b, target)
	if fresh.ChrootDigest() != after.Digest {
		t.Errorf("new sandbox on %s, want %s", fresh.ChrootDigest(), after.Digest)
	}
	execOK(t, fresh, executor.Step{Argv: sh("test -e /etc/kiln-refreshed")})

	if err := os.WriteFile(filepath.Join(oldWork, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.res.Failed() || !strings.HasSuffix(r.log, "finished\n") {
		t.Fatalf("build on the old chroot: %+v, %v, log %q", r.res, r.err, r.log)
	}
	if old.ChrootDigest() != before.Digest {
		t.Errorf("old sandbox digest %s, want %s", old.ChrootDigest(), before.Digest)
	}
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The last user gone, the old chroot goes too.
	cur, err = b.Target(ctx, target)
	if err != nil || len(cur.Retired) != 0 {
		t.Errorf("after the old build closed: %+v, %v; want no retired chroot", cur, err)
	}
}

// recordWriter keeps what it is given and says when the first write came.
type recordWriter struct {
	notifyWriter
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *recordWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	return w.notifyWriter.Write(p)
}

func (w *recordWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// crashEnv carries the config to the worker subprocess of
// TestCrashedWorkerLeavesNothingAfterRestart.
const crashEnv = "KILN_BUILDROOT_CRASH_CONFIG"

// TestCrashWorker is the worker subprocess that is killed mid-build.
func TestCrashWorker(t *testing.T) {
	raw := os.Getenv(crashEnv)
	if raw == "" {
		t.Skip("subprocess of TestCrashedWorkerLeavesNothingAfterRestart")
	}
	var cfg buildroot.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	b, err := buildroot.New(context.Background(), cfg, buildroottest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Open(context.Background(), buildroottest.DebTarget, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Never returns: the parent kills this process.
	// The namespace in the script lets the parent find the process.
	_, err = sb.Exec(context.Background(), executor.Step{Argv: sh("echo build-running; sleep 600 # " + cfg.Namespace)}, os.Stdout)
	t.Fatalf("crash worker's build returned: %v", err)
}

func TestCrashedWorkerLeavesNothingAfterRestart(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWorker$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(raw))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan bool, 1)
	var out strings.Builder
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "build-running" {
				running <- true
			}
		}
		close(running)
	}()
	select {
	case ok := <-running:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("crash worker ended before its build ran:\n%s", out.String())
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("crash worker's build did not start in 2 minutes")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	c, err := client.New(cfg.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), cfg.Namespace)
	// The killed worker left its build behind: this shows the check
	// below can fail.
	if got := leftovers(t, c, ctx, cfg); len(got) == 0 {
		t.Fatal("the killed worker left nothing behind; the test cannot tell whether New cleans up")
	} else {
		t.Logf("left behind by the killed worker: %v", got)
	}

	buildProc := "sleep 600 # " + cfg.Namespace
	if out, _ := exec.Command("pgrep", "-f", buildProc).Output(); len(out) == 0 {
		t.Fatal("the killed worker's build process is not running; the test cannot tell whether New stops it")
	}

	// The worker restarts.
	restarted, err := buildroot.New(context.Background(), cfg, buildroottest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if got := leftovers(t, c, ctx, cfg); len(got) != 0 {
		t.Errorf("after restart, left behind: %v", got)
	}
	if out, _ := exec.Command("pgrep", "-f", buildProc).Output(); len(out) > 0 {
		t.Errorf("the killed build's process still runs: %s", out)
	}
	// The chroot itself is kept and usable.
	sb, _ := open(t, b, target)
	execOK(t, sb, executor.Step{Argv: []string{"true"}})
}

// leftovers lists the containers, tasks, leases, non-chroot snapshots and
// sandbox mounts in cfg's namespace.
func leftovers(t *testing.T, c *client.Client, ctx context.Context, cfg buildroot.Config) []string {
	t.Helper()
	var out []string
	conts, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range conts {
		out = append(out, "container "+ct.ID())
		if _, err := ct.Task(ctx, nil); err == nil {
			out = append(out, "task "+ct.ID())
		}
	}
	ls, err := c.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		out = append(out, "lease "+l.ID)
	}
	err = c.SnapshotService(cfg.Snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			out = append(out, "snapshot "+info.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fifos, err := os.ReadDir(filepath.Join(cfg.StateDir, cfg.Namespace, "fifo"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, f := range fifos {
		out = append(out, "output pipes "+f.Name())
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, cfg.StateDir) {
			out = append(out, "mount "+line)
		}
	}
	return out
}

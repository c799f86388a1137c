package shell

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

func TestRun(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		cmd      []string
		timeout  time.Duration
		code     int
		reason   string
		inOutput string
	}{
		{name: "ok", cmd: []string{"sh", "-c", "echo hello; pwd"}, inOutput: "hello"},
		{name: "exit code", cmd: []string{"sh", "-c", "echo bad >&2; exit 3"}, code: 3, reason: "exit status 3", inOutput: "bad"},
		{name: "missing", cmd: []string{"/nonexistent/cmd"}, code: 127, reason: "cannot start"},
		{name: "timeout", cmd: []string{"sleep", "30"}, timeout: 200 * time.Millisecond, code: -1, reason: "time limit 200ms reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var log bytes.Buffer
			dir := t.TempDir()
			res, err := New().Run(context.Background(), executor.Job{ID: "1", Command: tc.cmd, WorkDir: dir, Timeout: tc.timeout}, &log)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tc.code || !strings.Contains(res.Reason, tc.reason) {
				t.Fatalf("result %+v, want code %d reason %q", res, tc.code, tc.reason)
			}
			if !strings.Contains(log.String(), tc.inOutput) {
				t.Fatalf("log %q lacks %q", log.String(), tc.inOutput)
			}
			if tc.name == "ok" && !strings.Contains(log.String(), dir) {
				t.Fatalf("did not run in the work dir: %q", log.String())
			}
		})
	}
}

// KillLeftovers kills the process groups recorded by a previous run whose
// leader is the process recorded, or gone with members left; a record
// whose pid now names another process is left alone.
func TestKillLeftovers(t *testing.T) {
	t.Parallel()
	e := New()
	e.GroupDir = filepath.Join(t.TempDir(), "groups")
	startGroup := func(script string) *exec.Cmd {
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		if _, err := e.recordGroup(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	alive := startGroup("sleep 1000")
	// A leader that exits at once, leaving a member in its group.
	orphaned := startGroup("sleep 1000 & exit 0")
	if err := orphaned.Wait(); err != nil {
		t.Fatal(err)
	}
	// A record whose pid is now another process (this test's).
	if err := os.WriteFile(filepath.Join(e.GroupDir, strconv.Itoa(os.Getpid())), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	killed, err := e.KillLeftovers()
	if err != nil {
		t.Fatal(err)
	}
	sort.Ints(killed)
	want := []int{alive.Process.Pid, orphaned.Process.Pid}
	sort.Ints(want)
	if !slices.Equal(killed, want) {
		t.Fatalf("killed %v, want %v", killed, want)
	}
	if err := alive.Wait(); err == nil {
		t.Fatal("the recorded job process was not killed")
	}
	if entries, _ := os.ReadDir(e.GroupDir); len(entries) != 0 {
		t.Fatalf("records left: %v", entries)
	}
}

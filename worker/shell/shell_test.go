package shell

import (
	"bytes"
	"context"
	"strings"
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

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// `run` twice with one --request-id (or KILN_REQUEST_ID) queues one job:
// the second run prints the first one's id and says it was not queued
// again. The id with another command is bad usage naming the id and job;
// without an id every run queues a job of its own.
func TestRunWithRequestIDQueuesOnce(t *testing.T) {
	s := startReleaseServer(t)
	run := func(env string, args ...string) (string, string, int) {
		t.Helper()
		t.Setenv("KILN_REQUEST_ID", env)
		var out, errb bytes.Buffer
		err := Execute(context.Background(), append([]string{"run", "--server", s.addr, "--labels", "os=linux"}, args...), IO{Out: &out, Err: &errb})
		if err != nil {
			errb.WriteString(err.Error())
		}
		return strings.TrimSpace(out.String()), errb.String(), exitCode(err)
	}
	first, _, code := run("", "--request-id", "jenkins-kiln-7-Build", "--", "make")
	if code != 0 || first == "" {
		t.Fatalf("first run: exit %d, job %q", code, first)
	}
	again, errOut, code := run("jenkins-kiln-7-Build", "--", "make")
	if code != 0 || again != first || !strings.Contains(errOut, "not queued again") {
		t.Fatalf("the same run again: exit %d, job %q (%s), want job %s not queued again", code, again, errOut, first)
	}
	_, errOut, code = run("", "--request-id", "jenkins-kiln-7-Build", "--", "make", "check")
	if code != 2 || !strings.Contains(errOut, "jenkins-kiln-7-Build") || !strings.Contains(errOut, "job "+first) {
		t.Fatalf("another command with the id: exit %d (%s), want 2 naming the id and job %s", code, errOut, first)
	}
	a, _, _ := run("", "--", "make")
	b, _, _ := run("", "--", "make")
	if a == "" || a == b || a == first {
		t.Fatalf("runs without an id: jobs %q and %q, want two new jobs", a, b)
	}
}

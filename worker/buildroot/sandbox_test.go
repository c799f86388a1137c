package buildroot_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// open opens a sandbox on a fresh work dir and closes it when t ends.
func open(t *testing.T, b *buildroot.Buildroot, target string) (executor.Sandbox, string) {
	t.Helper()
	work := t.TempDir()
	sb, err := b.Open(context.Background(), target, work)
	if err != nil {
		t.Fatalf("open sandbox: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(context.Background()); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
	})
	return sb, work
}

func execOK(t *testing.T, sb executor.Sandbox, step executor.Step) string {
	t.Helper()
	var log bytes.Buffer
	res, err := sb.Exec(context.Background(), step, &log)
	if err != nil {
		t.Fatalf("exec %q: %v", step.Argv, err)
	}
	if res.Failed() {
		t.Fatalf("exec %q: exit %d, reason %q; output:\n%s", step.Argv, res.ExitCode, res.Reason, log.String())
	}
	return log.String()
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestSandboxRunsAsBuildUserAndRoot(t *testing.T) {
	t.Parallel()
	b, target := buildroottest.New(t)
	sb, _ := open(t, b, target)
	if got := execOK(t, sb, executor.Step{Argv: sh("id -u; id -g; pwd")}); got != "1000\n1000\n/build\n" {
		t.Errorf("build step: id/pwd = %q, want 1000, 1000, /build", got)
	}
	if got := execOK(t, sb, executor.Step{Argv: sh("id -u"), Root: true}); got != "0\n" {
		t.Errorf("root step: id -u = %q, want 0", got)
	}
	if sb.ChrootDigest() == "" || !strings.HasPrefix(sb.ChrootDigest(), "sha256:") {
		t.Errorf("ChrootDigest() = %q, want sha256:...", sb.ChrootDigest())
	}
}

package buildroot

import (
	"context"
	"fmt"
	"io"

	"github.com/kiln-build/kiln/worker/executor"
)

var _ executor.Executor = (*Buildroot)(nil)

// Run runs a command job as the build user, without network, in one
// sandbox of the target named by job.Labels["target"], on job.WorkDir.
// Package builds (job.Build set) are not run here: executor.ErrUnsupported.
func (b *Buildroot) Run(ctx context.Context, job executor.Job, log io.Writer) (_ executor.Result, err error) {
	if job.Build != nil {
		return executor.Result{}, fmt.Errorf("job %s: package build: %w", job.ID, executor.ErrUnsupported)
	}
	target := job.Labels["target"]
	if target == "" {
		return executor.Result{}, fmt.Errorf("job %s: no target label: the containerd executor needs target=<name> to pick a chroot", job.ID)
	}
	if len(job.Command) == 0 {
		return executor.Result{}, fmt.Errorf("job %s: no command to run", job.ID)
	}
	sb, err := b.Open(ctx, target, job.WorkDir)
	if err != nil {
		return executor.Result{}, fmt.Errorf("job %s: %w", job.ID, err)
	}
	defer func() {
		if cerr := sb.Close(ctx); cerr != nil && err == nil {
			err = fmt.Errorf("job %s: %w", job.ID, cerr)
		}
	}()
	res, err := sb.Exec(ctx, executor.Step{Argv: job.Command, Env: job.Env, Timeout: job.Timeout}, log)
	if err != nil {
		return executor.Result{}, fmt.Errorf("job %s: %w", job.ID, err)
	}
	out := executor.Result{ExitCode: res.ExitCode, Reason: res.Reason}
	if out.Reason == "" && out.ExitCode != 0 {
		out.Reason = fmt.Sprintf("exit status %d", out.ExitCode)
	}
	return out, nil
}

// Package shell runs command jobs on the worker's host in a scratch
// directory, like a CI agent's shell step. It is the development executor;
// builds belong in buildroots.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// Executor runs commands on the host.
type Executor struct {
	// BaseEnv is the environment every command starts from.
	BaseEnv []string
}

// New makes a shell executor with a small, predictable base environment.
func New() *Executor {
	return &Executor{BaseEnv: []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
	}}
}

// Run implements executor.Executor.
func (e *Executor) Run(ctx context.Context, job executor.Job, log io.Writer) (executor.Result, error) {
	if job.Build != nil {
		return executor.Result{}, fmt.Errorf("package build on the shell executor: %w", executor.ErrUnsupported)
	}
	if len(job.Command) == 0 {
		return executor.Result{ExitCode: 2, Reason: "no command"}, nil
	}
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, job.Timeout)
		defer cancel()
	}
	cmd := exec.Command(job.Command[0], job.Command[1:]...)
	cmd.Dir = job.WorkDir
	cmd.Env = append(append(append([]string{}, e.BaseEnv...), "HOME="+job.WorkDir, "KILN_JOB_ID="+job.ID), job.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		// The command could not start: the job's fault (bad name), not ours.
		fmt.Fprintf(log, "cannot start %q: %v\n", job.Command[0], err)
		return executor.Result{ExitCode: 127, Reason: fmt.Sprintf("cannot start %q: %v", job.Command[0], err)}, nil
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && job.Timeout > 0 {
			return executor.Result{ExitCode: -1, Reason: fmt.Sprintf("time limit %s reached", job.Timeout)}, nil
		}
		return executor.Result{ExitCode: -1, Reason: "cancelled"}, nil
	}
	// Kill whatever the command left running in its process group.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			return executor.Result{ExitCode: -1, Reason: "killed by " + ee.String()}, nil
		}
		return executor.Result{ExitCode: code, Reason: fmt.Sprintf("exit status %d", code)}, nil
	}
	if err != nil {
		return executor.Result{}, fmt.Errorf("wait for %q: %w", job.Command[0], err)
	}
	return executor.Result{}, nil
}

// Preflight checks the host can run jobs.
func Preflight(workDir string) error {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	return nil
}

// Package shell runs command jobs on the worker's host in a scratch
// directory, like a CI agent's shell step. It is the development executor;
// builds belong in buildroots.
package shell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// Executor runs commands on the host, each in its own process group.
type Executor struct {
	// BaseEnv is the environment every command starts from.
	BaseEnv []string
	// GroupDir, when set, keeps a file per running job's process group,
	// so that a worker restarted after a crash kills what its previous
	// run left (KillLeftovers).
	GroupDir string
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
	forget, rerr := e.recordGroup(cmd.Process.Pid)
	if rerr != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return executor.Result{}, rerr
	}
	// Forgotten only once nothing of the group runs any more.
	defer forget()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
		// Whatever of the group outlived its leader.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
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

// recordGroup keeps a file naming the process group pgid and its
// leader's start time in GroupDir, and returns what removes it.
func (e *Executor) recordGroup(pgid int) (forget func(), err error) {
	if e.GroupDir == "" {
		return func() {}, nil
	}
	start, err := startTime(pgid)
	if err != nil {
		return nil, fmt.Errorf("read start time of job process %d: %w", pgid, err)
	}
	if err := os.MkdirAll(e.GroupDir, 0o755); err != nil {
		return nil, fmt.Errorf("make process group dir: %w", err)
	}
	p := filepath.Join(e.GroupDir, strconv.Itoa(pgid))
	if err := os.WriteFile(p, []byte(start+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("record job process group: %w", err)
	}
	return func() { _ = os.Remove(p) }, nil
}

// startTime returns the start time of process pid (field 22 of
// /proc/PID/stat, in clock ticks since boot): with the pid, it names one
// process for good, as pids are reused.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may hold spaces; fields after it don't.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	return f[19], nil
}

// KillLeftovers kills the process groups of jobs a previous run of the
// worker left running (it was killed before it could stop them), as
// recorded in GroupDir, and returns the ids of the groups it killed. A
// group is killed when its leader is the process recorded (same start
// time), or when the leader is gone but the group lives on: a process
// group id is not reused while the group has members.
func (e *Executor) KillLeftovers() ([]int, error) {
	if e.GroupDir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(e.GroupDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read process group dir: %w", err)
	}
	var killed []int
	for _, ent := range entries {
		p := filepath.Join(e.GroupDir, ent.Name())
		pgid, err := strconv.Atoi(ent.Name())
		if err != nil || pgid <= 1 {
			_ = os.Remove(p)
			continue
		}
		want, _ := os.ReadFile(p)
		got, err := startTime(pgid)
		ours := err == nil && got == strings.TrimSpace(string(want))
		if err != nil {
			// The leader is gone: members left in its group are ours.
			ours = syscall.Kill(-pgid, 0) == nil
		}
		if ours {
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
				killed = append(killed, pgid)
			}
		}
		_ = os.Remove(p)
	}
	return killed, nil
}

// Preflight checks the host can run jobs.
func Preflight(workDir string) error {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	return nil
}

// Package executortest holds the contract every executor.Executor keeps
// for command jobs, as a test suite to run against each implementation.
package executortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// waitLimit bounds every wait in the suite: an executor that does not
// return by then has broken the contract (a hung job, a lost cancel).
const waitLimit = 2 * time.Minute

// Run checks e against the executor contract for command jobs: exit codes
// and reasons, the job's environment, the work dir as the current
// directory, output streamed to the log as it is made, cancellation and
// the time limit, and refusal of package builds. prepare, when set,
// completes each job for the implementation (e.g. a target label); the
// suite fills ID, Command, Env, WorkDir and Timeout. The commands need a
// POSIX sh, sleep and cat.
func Run(t *testing.T, e executor.Executor, prepare func(*executor.Job)) {
	t.Helper()
	RunKnown(t, e, prepare, nil)
}

// RunKnown is Run with known divergences: each subtest named in known is
// skipped with the reason given, so that it shows in the test output until
// the implementation is mended.
func RunKnown(t *testing.T, e executor.Executor, prepare func(*executor.Job), known map[string]string) {
	t.Helper()
	s := suite{e: e, prepare: prepare}
	for _, c := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Success", s.success},
		{"ExitCodes", s.exitCodes},
		{"MissingCommand", s.missingCommand},
		{"Env", s.env},
		{"WorkDir", s.workDir},
		{"StreamsOutput", s.streamsOutput},
		{"Cancel", s.cancel},
		{"TimeLimit", s.timeLimit},
		{"PackageBuildUnsupported", s.packageBuild},
		{"Concurrent", s.concurrent},
	} {
		t.Run(c.name, func(t *testing.T) {
			if reason, ok := known[c.name]; ok {
				t.Skip("known divergence from the executor contract: " + reason)
			}
			c.f(t)
		})
	}
}

type suite struct {
	e       executor.Executor
	prepare func(*executor.Job)
}

// job makes a command job on a fresh work dir.
func (s suite) job(t *testing.T, script string) executor.Job {
	t.Helper()
	j := executor.Job{
		ID:      strings.NewReplacer("/", "-", "#", "-").Replace(t.Name()),
		Attempt: 1,
		Command: []string{"sh", "-c", script},
		WorkDir: t.TempDir(),
	}
	if s.prepare != nil {
		s.prepare(&j)
	}
	return j
}

// run runs j and fails the test on an infrastructure error. It may be
// called from any goroutine.
func (s suite) run(t *testing.T, j executor.Job, log *Log) (executor.Result, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := s.e.Run(ctx, j, log)
	if err != nil {
		t.Errorf("Run(%q): infrastructure error %v; log:\n%s", j.Command, err, log)
		return res, false
	}
	return res, true
}

func (s suite) success(t *testing.T) {
	t.Parallel()
	var log Log
	res, ok := s.run(t, s.job(t, "echo to-stdout; echo to-stderr >&2"), &log)
	if !ok {
		return
	}
	if res.ExitCode != 0 || res.Reason != "" || res.Failed() {
		t.Errorf("result %+v, want success", res)
	}
	for _, want := range []string{"to-stdout", "to-stderr"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, &log)
		}
	}
}

func (s suite) exitCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1, 3, 42, 255} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			t.Parallel()
			var log Log
			res, ok := s.run(t, s.job(t, fmt.Sprintf("exit %d", code)), &log)
			if !ok {
				return
			}
			if res.ExitCode != code || !res.Failed() {
				t.Errorf("result %+v, want exit code %d and failed", res, code)
			}
			if want := fmt.Sprintf("exit status %d", code); res.Reason != want {
				t.Errorf("reason %q, want %q", res.Reason, want)
			}
		})
	}
}

// missingCommand: a command that does not exist is the job's fault, not
// the infrastructure's: a failed result, not an error to retry elsewhere.
func (s suite) missingCommand(t *testing.T) {
	t.Parallel()
	var log Log
	j := s.job(t, "")
	j.Command = []string{"/nonexistent/kiln-no-such-command", "arg"}
	res, ok := s.run(t, j, &log)
	if ok && (!res.Failed() || res.ExitCode == 0) {
		t.Errorf("result %+v, want a failure", res)
	}
}

func (s suite) env(t *testing.T) {
	t.Parallel()
	var log Log
	j := s.job(t, `printf '%s|%s|%s' "$KILN_CONTRACT_A" "$KILN_CONTRACT_B" "$LANG" > env.out`)
	j.Env = append(j.Env, "KILN_CONTRACT_A=one", "KILN_CONTRACT_B=two words = three", "LANG=C")
	if _, ok := s.run(t, j, &log); !ok {
		return
	}
	got, err := os.ReadFile(filepath.Join(j.WorkDir, "env.out"))
	if err != nil {
		t.Fatalf("the job's output file: %v; log:\n%s", err, &log)
	}
	// The job's LANG wins over the executor's base environment.
	if want := "one|two words = three|C"; string(got) != want {
		t.Errorf("job saw env %q, want %q", got, want)
	}
}

func (s suite) workDir(t *testing.T) {
	t.Parallel()
	var log Log
	j := s.job(t, "cat input > output && mkdir sub && echo nested > sub/file")
	if err := os.WriteFile(filepath.Join(j.WorkDir, "input"), []byte("from the worker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, ok := s.run(t, j, &log); !ok || res.Failed() {
		t.Fatalf("result %+v; log:\n%s", res, &log)
	}
	for name, want := range map[string]string{"output": "from the worker\n", "sub/file": "nested\n"} {
		got, err := os.ReadFile(filepath.Join(j.WorkDir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s in the work dir = %q, %v; want %q", name, got, err, want)
		}
	}
}

// streamsOutput: the log gets output while the job runs, not at the end.
// The job waits for a file that the test creates only after it has seen
// the job's first line in the log.
func (s suite) streamsOutput(t *testing.T) {
	t.Parallel()
	log := Log{}
	ready := log.Await("kiln-contract-ready")
	j := s.job(t, "echo kiln-contract-ready; while [ ! -e go ]; do sleep 0.05; done; echo finished")
	done := make(chan executor.Result, 1)
	go func() {
		res, _ := s.run(t, j, &log)
		done <- res
	}()
	select {
	case <-ready:
	case res := <-done:
		t.Fatalf("job ended (%+v) before the test let it", res)
	case <-time.After(waitLimit):
		t.Fatalf("no output in the log while the job runs:\n%s", &log)
	}
	if err := os.WriteFile(filepath.Join(j.WorkDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.Failed() || !strings.Contains(log.String(), "finished") {
			t.Errorf("result %+v; log:\n%s", res, &log)
		}
	case <-time.After(waitLimit):
		t.Fatal("job did not finish after the test let it")
	}
}

// cancel: cancelling the context stops the job and Run returns; the job is
// not reported as a success.
func (s suite) cancel(t *testing.T) {
	t.Parallel()
	log := Log{}
	ready := log.Await("kiln-contract-ready")
	j := s.job(t, "echo kiln-contract-ready; sleep 600; echo not-stopped")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ran struct {
		res executor.Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := s.e.Run(ctx, j, &log)
		done <- ran{res, err}
	}()
	select {
	case <-ready:
	case r := <-done:
		t.Fatalf("job ended (%+v, %v) before it was cancelled", r.res, r.err)
	case <-time.After(waitLimit):
		t.Fatalf("job did not start:\n%s", &log)
	}
	cancel()
	select {
	case r := <-done:
		if r.err != nil && !errors.Is(r.err, context.Canceled) {
			t.Errorf("error %v after cancel, want nil or one that wraps context.Canceled", r.err)
		}
		if r.err == nil && !r.res.Failed() {
			t.Errorf("cancelled job reported as success: %+v", r.res)
		}
		if strings.Contains(log.String(), "not-stopped") {
			t.Errorf("job ran on after cancel:\n%s", &log)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after cancel")
	}
}

func (s suite) timeLimit(t *testing.T) {
	t.Parallel()
	var log Log
	j := s.job(t, "sleep 600")
	j.Timeout = 500 * time.Millisecond
	start := time.Now()
	res, ok := s.run(t, j, &log)
	if !ok {
		return
	}
	if !res.Failed() || res.ExitCode == 0 {
		t.Errorf("result %+v, want a failure", res)
	}
	if want := "time limit 500ms reached"; !strings.Contains(res.Reason, want) {
		t.Errorf("reason %q, want it to say %q", res.Reason, want)
	}
	if d := time.Since(start); d > waitLimit/2 {
		t.Errorf("Run took %s with a 500ms limit", d)
	}
}

func (s suite) packageBuild(t *testing.T) {
	t.Parallel()
	j := s.job(t, "true")
	j.Command = nil
	j.Build = &executor.PackageBuild{Release: "r", Target: "t", Package: "p"}
	_, err := s.e.Run(context.Background(), j, &Log{})
	if !errors.Is(err, executor.ErrUnsupported) {
		t.Errorf("package build: error %v, want executor.ErrUnsupported", err)
	}
}

// concurrent: two jobs at once keep to their own work dirs and logs.
func (s suite) concurrent(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	jobs := make([]executor.Job, 2)
	logs := make([]Log, 2)
	results := make([]executor.Result, 2)
	for i := range jobs {
		jobs[i] = s.job(t, fmt.Sprintf("echo job-%d > mine; echo log-of-job-%d", i, i))
	}
	for i := range jobs {
		wg.Go(func() { results[i], _ = s.run(t, jobs[i], &logs[i]) })
	}
	wg.Wait()
	for i := range jobs {
		if results[i].Failed() {
			t.Errorf("job %d: %+v; log:\n%s", i, results[i], &logs[i])
		}
		got, err := os.ReadFile(filepath.Join(jobs[i].WorkDir, "mine"))
		if want := fmt.Sprintf("job-%d\n", i); err != nil || string(got) != want {
			t.Errorf("job %d wrote %q, %v; want %q", i, got, err, want)
		}
		other := fmt.Sprintf("log-of-job-%d", 1-i)
		if !strings.Contains(logs[i].String(), fmt.Sprintf("log-of-job-%d", i)) || strings.Contains(logs[i].String(), other) {
			t.Errorf("job %d's log:\n%s", i, &logs[i])
		}
	}
}

// Log is a log writer safe for concurrent use that can signal when a
// string first appears in it.
type Log struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	waiters []waiter
}

type waiter struct {
	s  string
	ch chan struct{}
}

// Write implements io.Writer.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.buf.Write(p)
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if bytes.Contains(l.buf.Bytes(), []byte(w.s)) {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	l.waiters = kept
	return n, nil
}

// Await returns a channel closed once s is in the log.
func (l *Log) Await(s string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if bytes.Contains(l.buf.Bytes(), []byte(s)) {
		close(ch)
	} else {
		l.waiters = append(l.waiters, waiter{s, ch})
	}
	return ch
}

// String returns what was written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

package itest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// waitWorker waits until the coordinator lists the worker as online.
func (c *cluster) waitWorker(name string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r, err := c.client.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
		if err == nil {
			for _, w := range r.GetWorkers() {
				if w.GetName() == name && w.GetState() == pb.WorkerState_WORKER_STATE_ONLINE {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("worker %s not online after %s", name, timeout)
}

// A job keeps running through a long coordinator outage: the worker's
// reconnect delay is capped, so it comes back inside the coordinator's
// reclaim window and the job is re-attached, not started again.
func TestRunningJobSurvivesLongCoordinatorOutage(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.worker("w1", "pool=outage", 1)
	gate := filepath.Join(t.TempDir(), "go")
	id := c.submit(cmdJob(map[string]string{"pool": "outage"},
		"echo started; while [ ! -e "+gate+" ]; do sleep 0.2; done; echo survived"))
	c.waitState(id, pb.JobState_JOB_STATE_RUNNING)

	c.coord.kill()
	// Long enough for an uncapped gRPC reconnect backoff to grow well past
	// any reclaim window.
	time.Sleep(50 * time.Second)
	c.startCoordinator()
	c.waitWorker("w1", time.Minute)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := c.waitJobs([]string{id}, time.Minute)[id]
	if j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED || j.GetAttempt() != 1 {
		t.Fatalf("job %s: %s, attempt %d (%s); want succeeded in attempt 1", id, j.GetState(), j.GetAttempt(), j.GetReason())
	}
	if l := c.logOf(id); !strings.Contains(l, "survived") {
		t.Fatalf("log lacks the job's output:\n%s", l)
	}
}

// A shell job's processes do not outlive a SIGKILLed worker: the
// restarted worker kills what its previous run left before it runs
// anything, so the job's side effects never run twice side by side.
func TestKilledWorkerLeavesNoJobProcesses(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	workDir := filepath.Join(t.TempDir(), "w1")
	startWorker := func() *proc {
		return start(t, "worker", "w1", "run", "--dev", "--coordinator", c.addr, "--name", "w1", "--labels", "pool=kill",
			"--slots", "1", "--work-dir", workDir)
	}
	w := startWorker()
	marks := t.TempDir()
	pidFile := filepath.Join(marks, "pid")
	// The job forks a child that keeps the group alive after its shell;
	// its next attempt (after the worker restarts) ends at once.
	ran := filepath.Join(marks, "ran")
	id := c.submit(cmdJob(map[string]string{"pool": "kill"},
		"[ -e "+ran+" ] && exit 0; touch "+ran+"; sh -c 'echo $$ > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; exec sleep 1000' & wait"))
	c.waitState(id, pb.JobState_JOB_STATE_RUNNING)
	var pid int
	deadline := time.Now().Add(30 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never started its child")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	w.kill() // SIGKILL to the worker's own process group only
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the job's process died with the worker (%v): the test shows nothing", err)
	}
	startWorker()
	deadline = time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			break // a zombie waiting for its parent: dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d of the killed worker's job still runs after the worker restarted", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package itest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

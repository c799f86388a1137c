package itest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/coordinator/store/storetest"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/leaderconn"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// Two coordinators on one PostgreSQL database and one state dir: one
// leads, the other is a standby that names it. A worker and the CLI are
// given both addresses. The leader is SIGKILLed while a job runs and
// another waits: the standby leads, the worker re-attaches the running job
// to it, both jobs succeed, and the CLI reaches the new leader. The old
// leader started again is a standby naming the new one, and stops cleanly
// on SIGTERM.
// followTheLeader gives c a client of all the coordinators at addrs (it
// follows the leader), starts worker w1 in pool, given them all too, and
// has it run a job that prints "started" and, once gate exists,
// "survived": the job is running when it returns.
func followTheLeader(c *cluster, addrs []string, pool string) (gate, running string) {
	t := c.t
	t.Helper()
	conn, err := leaderconn.New(addrs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.client = pb.NewCoordinatorServiceClient(conn)
	start(t, "worker", "w1", "run", "--dev", "--coordinator", c.addr, "--name", "w1", "--labels", "pool="+pool,
		"--slots", "1", "--work-dir", filepath.Join(t.TempDir(), "w1"))
	c.waitWorker("w1", time.Minute)
	gate = filepath.Join(t.TempDir(), "go")
	running = c.submit(cmdJob(map[string]string{"pool": pool},
		"echo started; while [ ! -e "+gate+" ]; do sleep 0.2; done; echo survived"))
	c.waitState(running, pb.JobState_JOB_STATE_RUNNING)
	return gate, running
}

func TestStandbyTakesOverFromKilledLeader(t *testing.T) {
	t.Parallel()
	db := storetest.Postgres(t)
	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(cfg, []byte("heartbeat_interval: 1s\nlost_after: 4s\nretry_cap: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs := []string{freeAddr(t), freeAddr(t)}
	https := []string{freeAddr(t), freeAddr(t)}
	coordinator := func(i int) *proc {
		return start(t, "coordinator", fmt.Sprintf("coordinator-%d", i), "serve", "--dev", "--config", cfg, "--state-dir", state,
			"--database-url", db, "--listen", addrs[i], "--http-listen", https[i])
	}
	c := &cluster{t: t, addr: strings.Join(addrs, ","), state: state}
	a := coordinator(0)
	c.waitListening(addrs[0])
	waitMetric(t, https[0], "kiln_coordinator_leader 1")
	coordinator(1)
	c.waitListening(addrs[1])
	waitMetric(t, https[1], "kiln_coordinator_leader 0")
	standby := pb.NewCoordinatorServiceClient(dial(t, addrs[1]))
	if _, err := standby.ListWorkers(context.Background(), &pb.ListWorkersRequest{}); grpcerr.Classify(err) != grpcerr.Standby || grpcerr.LeaderOf(err) != addrs[0] {
		t.Fatalf("the standby answers %v, want UNAVAILABLE, reason STANDBY, naming %s", err, addrs[0])
	}

	gate, running := followTheLeader(c, addrs, "standby")
	queued := c.submit(cmdJob(map[string]string{"pool": "standby"}, "echo second"))

	a.kill()
	waitMetric(t, https[1], "kiln_coordinator_leader 1")
	c.waitWorker("w1", time.Minute)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := c.waitJobs([]string{running, queued}, 2*time.Minute)
	for _, id := range []string{running, queued} {
		if j := jobs[id]; j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("job %s: %s (%s), want succeeded", id, j.GetState(), j.GetReason())
		}
	}
	if j := jobs[running]; j.GetAttempt() != 1 {
		t.Errorf("job %s ran in attempt %d, want re-attached in attempt 1", running, j.GetAttempt())
	}
	if l := c.logOf(running); !strings.Contains(l, "started") || !strings.Contains(l, "survived") {
		t.Errorf("log of job %s lacks output from before or after the takeover:\n%s", running, l)
	}
	if out, errOut, code := c.cli("jobs", "show", queued); code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("the CLI given both addresses: exit %d\n%s%s", code, out, errOut)
	}

	a = coordinator(0)
	c.waitListening(addrs[0])
	waitMetric(t, https[0], "kiln_coordinator_leader 0")
	old := pb.NewCoordinatorServiceClient(dial(t, addrs[0]))
	if _, err := old.ListWorkers(context.Background(), &pb.ListWorkersRequest{}); grpcerr.Classify(err) != grpcerr.Standby || grpcerr.LeaderOf(err) != addrs[1] {
		t.Fatalf("the old leader started again answers %v, want a standby naming %s", err, addrs[1])
	}
	a.stop(t)
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the standby stopped by SIGTERM exited with status %d, want 0", code)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitMetric waits until a coordinator's /metrics has the line.
func waitMetric(t *testing.T, addr, line string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			for _, l := range strings.Split(last, "\n") {
				if l == line {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s/metrics never had %q; last:\n%s", addr, line, tail(last, 2000))
}

// A leader whose lock's PostgreSQL session ends while its process lives
// (its database connection lost, say) stops at once and exits with status
// 3, and the standby leads.
func TestLeaderThatLosesItsLockExits(t *testing.T) {
	t.Parallel()
	db := storetest.Postgres(t)
	state := t.TempDir()
	addrs := []string{freeAddr(t), freeAddr(t)}
	https := []string{freeAddr(t), freeAddr(t)}
	coordinator := func(i int) *proc {
		return start(t, "coordinator", fmt.Sprintf("coordinator-%d", i), "serve", "--dev", "--state-dir", state,
			"--database-url", db, "--listen", addrs[i], "--http-listen", https[i])
	}
	a := coordinator(0)
	waitMetric(t, https[0], "kiln_coordinator_leader 1")
	coordinator(1)
	waitMetric(t, https[1], "kiln_coordinator_leader 0")

	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("ended %d lock sessions (%v), want the leader's", n, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- a.cmd.Wait() }()
	select {
	case err := <-exited:
		if a.cmd.ProcessState.ExitCode() != 3 {
			t.Fatalf("the leader exited: %v, want status 3", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the leader did not stop after losing its lock")
	}
	waitMetric(t, https[1], "kiln_coordinator_leader 1")
}

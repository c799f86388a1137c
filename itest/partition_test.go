package itest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/coordinator/store/storetest"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/testenv"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// The leading coordinator runs in a network namespace of its own and
// reaches PostgreSQL over a veth pair; a worker and the CLI reach it, and
// the standby on the host, by their addresses. The veth goes down while a
// job runs and another waits: packets are lost, nothing is refused. The
// leader's lock ping times out and it exits with status 3; PostgreSQL
// ends its idle lock session (idle_session_timeout) and the standby
// leads; the worker follows it, re-attaches the running job, and both
// jobs succeed, each once; the waiting one, submitted again with its
// request id, is not queued again. The measured times are logged.
func TestPartitionedLeaderIsReplaced(t *testing.T) {
	t.Parallel()
	testenv.Require(t, os.Geteuid() == 0, "root, to make a network namespace")
	_, err := exec.LookPath("ip")
	testenv.Require(t, err == nil, "ip (iproute2), to make a network namespace")
	db := storetest.Postgres(t)
	ns := newNetns(t)

	// The namespace reaches PostgreSQL through a relay on the host end of
	// the veth; the host reaches the leader's gRPC through a relay into
	// the namespace's loopback, at the same port (--dev wants loopback).
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	pgRelay := relay(t, net.JoinHostPort(ns.hostIP, "0"), func() (net.Conn, error) { return net.DialTimeout("tcp", u.Host, 5*time.Second) })
	nsURL := *u
	nsURL.Host = pgRelay
	leaderAddr := freeAddr(t)
	relay(t, leaderAddr, func() (net.Conn, error) { return ns.dial(leaderAddr) })

	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "coordinator.yaml")
	if err := os.WriteFile(cfg, []byte("heartbeat_interval: 1s\nlost_after: 4s\nretry_cap: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	standbyAddr, standbyHTTP := freeAddr(t), freeAddr(t)
	leader := start(t, "ip", "coordinator-partitioned", "netns", "exec", ns.name, bin("coordinator"), "serve", "--dev", "--config", cfg,
		"--state-dir", state, "--database-url", nsURL.String(), "--listen", leaderAddr, "--http-listen", freeAddr(t))
	c := &cluster{t: t, addr: leaderAddr + "," + standbyAddr, state: state}
	direct := pb.NewCoordinatorServiceClient(dial(t, leaderAddr))
	waitFor(t, time.Minute, "the coordinator in the namespace to lead", func() bool {
		_, err := direct.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
		return err == nil
	})
	start(t, "coordinator", "coordinator-standby", "serve", "--dev", "--config", cfg, "--state-dir", state,
		"--database-url", db, "--listen", standbyAddr, "--http-listen", standbyHTTP)
	waitMetric(t, standbyHTTP, "kiln_coordinator_leader 0")

	gate, running := followTheLeader(c, []string{leaderAddr, standbyAddr}, "partition")
	second := &pb.SubmitJobRequest{Spec: cmdJob(map[string]string{"pool": "partition"}, "echo second"), RequestId: "partition-second"}
	sub, err := c.client.SubmitJob(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	queued := sub.GetJob().GetId()

	exited := make(chan time.Time, 1)
	go func() { _ = leader.cmd.Wait(); exited <- time.Now() }()
	led := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if metricIs(standbyHTTP, "kiln_coordinator_leader 1") {
				led <- time.Now()
				return
			}
		}
		close(led)
	}()
	cut := time.Now()
	ns.run(t, "ip", "link", "set", ns.hostIf, "down")

	// The leader's lock ping fails 5 s after the cut at most (Lease.Hold),
	// then it stops serving (at most 5 s for long polls) and exits; its
	// store's writes stuck on the dead network fail within 15 s.
	var exitAt, leadAt time.Time
	select {
	case exitAt = <-exited:
		if code := leader.cmd.ProcessState.ExitCode(); code != 3 {
			t.Fatalf("the partitioned leader exited with status %d, want 3", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the partitioned leader still runs 30 s after losing PostgreSQL")
	}
	// PostgreSQL ends the lock's session 10 s after its last ping
	// (idle_session_timeout), and the standby takes the lock.
	leadAt, ok := <-led
	if !ok {
		t.Fatalf("the standby did not lead within a minute of the cut")
	}
	t.Logf("partitioned leader exited %.1fs after the cut; the standby led %.1fs after it", exitAt.Sub(cut).Seconds(), leadAt.Sub(cut).Seconds())
	if d := leadAt.Sub(cut); d > 30*time.Second {
		t.Errorf("the standby led %s after the cut, want within 30s (idle_session_timeout 10s)", d)
	}

	// The second submission sent again (its answer lost to the cut, say)
	// reaches the new leader, which knows its request id.
	again, err := c.client.SubmitJob(context.Background(), second)
	if err != nil || !again.GetRepeated() || again.GetJob().GetId() != queued {
		t.Fatalf("the second submission sent again to the new leader: job %s repeated %v (%v), want job %s repeated",
			again.GetJob().GetId(), again.GetRepeated(), err, queued)
	}
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
	if l := c.logOf(running); strings.Count(l, "started") != 1 || strings.Count(l, "survived") != 1 {
		t.Errorf("log of job %s: want one run, started and survived once:\n%s", running, l)
	}
	all, err := c.client.ListJobs(context.Background(), &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.GetJobs()); n != 2 {
		t.Errorf("%d jobs after the takeover, want the 2 submitted", n)
	}
	// Back on the network the old leader's lock is gone: started again in
	// its namespace it is a standby naming the new leader.
	ns.run(t, "ip", "link", "set", ns.hostIf, "up")
	start(t, "ip", "coordinator-partitioned-again", "netns", "exec", ns.name, bin("coordinator"), "serve", "--dev", "--config", cfg,
		"--state-dir", state, "--database-url", nsURL.String(), "--listen", leaderAddr, "--http-listen", freeAddr(t))
	waitFor(t, time.Minute, "the old leader to come back as a standby", func() bool {
		_, err := direct.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
		return grpcerr.Classify(err) == grpcerr.Standby && grpcerr.LeaderOf(err) == standbyAddr
	})
}

// testNetns is a network namespace joined to the host by a veth pair.
type testNetns struct {
	name, hostIf, nsIf, hostIP, nsIP string
}

// newNetns makes a namespace with names and a /30 unique to this run,
// deleted when the test ends.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	id := rand.Uint32() & 0xffffff
	n := &testNetns{name: fmt.Sprintf("kiln-it-%06x", id), hostIf: fmt.Sprintf("kih%06x", id), nsIf: fmt.Sprintf("kin%06x", id),
		hostIP: fmt.Sprintf("10.%d.%d.%d", 200+id%50, (id>>8)&0xff, (id&0x3f)*4+1)}
	n.nsIP = n.hostIP[:strings.LastIndex(n.hostIP, ".")+1] + fmt.Sprint((id&0x3f)*4+2)
	n.run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", n.name).Run() })
	n.run(t, "ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "delete", n.hostIf).Run() })
	n.run(t, "ip", "link", "set", n.nsIf, "netns", n.name)
	n.run(t, "ip", "addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	n.run(t, "ip", "link", "set", n.hostIf, "up")
	for _, args := range [][]string{{"ip", "addr", "add", n.nsIP + "/30", "dev", n.nsIf}, {"ip", "link", "set", n.nsIf, "up"}, {"ip", "link", "set", "lo", "up"}} {
		n.run(t, append([]string{"ip", "netns", "exec", n.name}, args...)...)
	}
	return n
}

func (n *testNetns) run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// dial connects to addr inside the namespace, from a thread that enters
// it and is discarded after.
func (n *testNetns) dial(addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open("/run/netns/" + n.name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", n.name, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// relay listens at addr and copies each connection to one dial makes,
// until the test ends; it returns the address it listens at.
func relay(t *testing.T, addr string, dial func() (net.Conn, error)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := dial()
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			open = append(open, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return ln.Addr().String()
}

// metricIs tells whether a coordinator's /metrics has the line now.
func metricIs(addr, line string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// waitFor polls ok until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

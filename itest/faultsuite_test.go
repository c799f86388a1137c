package itest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// faultSuiteJobs and faultSuiteBuilds bound the suite in count; the
// deadline below bounds it in time.
const (
	faultSuiteJobs   = 16
	faultSuiteBuilds = 3
	faultSuiteFaults = 8
)

// daemon is one process of the suite that faults are injected into:
// restart starts it again with the same arguments, healthy says whether
// it serves again.
type daemon struct {
	name    string
	p       *proc
	healthy func() bool
}

func (d *daemon) pgid() int { return d.p.cmd.Process.Pid }

func (d *daemon) restart(t *testing.T, n int) {
	t.Helper()
	d.p = start(t, d.p.cmd.Path, fmt.Sprintf("%s-%d", d.name, n), d.p.cmd.Args[1:]...)
}

// TestFaultSuite runs a stream of command jobs with artifacts and
// package builds that are published, while the coordinator, the worker
// and the publisher are SIGKILLed or SIGSTOPped at random points. At the
// end: every accepted job ended exactly once, every artifact matches its
// digest, every published package verifies with apt, and no process of a
// killed worker's jobs survives. The seed is printed; KILN_FAULT_SEED
// replays a run.
func TestFaultSuite(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KILN_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KILN_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault suite seed %d (KILN_FAULT_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	p := newPipelineOpts(t, "retry_cap: 20\n", workerOptions{extra: "labels:\n  pool: faults\n"})
	c, g := p.c, p.g
	ctx := context.Background()
	helloURL, _ := g.repo(t, "kiln-hello", "../examples/hello")

	online := func() bool {
		r, err := c.client.ListWorkers(ctx, &pb.ListWorkersRequest{})
		if err != nil {
			return false
		}
		for _, w := range r.GetWorkers() {
			if w.GetName() == "builder" && w.GetState() == pb.WorkerState_WORKER_STATE_ONLINE {
				return true
			}
		}
		return false
	}
	daemons := []*daemon{
		{name: "coordinator", p: c.coord, healthy: online},
		{name: "worker", p: p.worker},
		{name: "publisher", p: p.publisher, healthy: func() bool { return dialable(p.pubAddr) }},
	}
	// The worker serves again when its current process has registered
	// (the coordinator may still list the killed one as online).
	daemons[1].healthy = func() bool {
		b, _ := os.ReadFile(daemons[1].p.log)
		return online() && strings.Contains(string(b), "registered")
	}

	marks := t.TempDir()
	pids := filepath.Join(marks, "pids")
	// Each job leaves a long sleep in its own process group's tree and
	// ends it itself when it finishes normally: a run cut short by a
	// killed worker leaves it behind unless the worker kills it.
	script := func(i int) string {
		return fmt.Sprintf(`sleep 600 & echo $! >> %s
mkdir -p out && echo "job-%d-$KILN_JOB_ID" > out/result.txt && head -c 300000 /dev/urandom > out/blob
sleep %d.%d
kill $!`, pids, i, 1+rng.IntN(3), rng.IntN(10))
	}

	var ids, builds []string
	submitCommand := func(i int) {
		ids = append(ids, c.submit(cmdJob(map[string]string{"pool": "faults"}, script(i), "out/*")))
	}
	submitBuild := func() {
		// A forced build has the next revision: each one is a new version
		// in the repository.
		_, errOut, code := c.cli("build", "--release", "rel", "--target", p.target, "--package", "kiln-hello",
			"--source", helloURL+"@master", "--publish", "--force")
		if code != 0 {
			t.Fatalf("build: exit %d: %s", code, errOut)
		}
		id := jobID(t, errOut)
		ids = append(ids, id)
		builds = append(builds, id)
	}

	// The stream: jobs go in between faults, so faults land before,
	// during and after runs, builds and publishes.
	deadline := time.Now().Add(7 * time.Minute)
	submitted, buildsDone := 0, 0
	type recovery struct {
		what string
		took time.Duration
	}
	var recoveries []recovery
	kills, stops := 0, 0
	order := []int{0, 1, 2}
	for f := 0; f < faultSuiteFaults && time.Now().Before(deadline); f++ {
		for n := 0; n < 2+rng.IntN(3) && submitted < faultSuiteJobs; n++ {
			submitCommand(submitted)
			submitted++
		}
		if buildsDone < faultSuiteBuilds && (f%3 == 0) {
			submitBuild()
			buildsDone++
		}
		time.Sleep(time.Duration(2000+rng.IntN(6000)) * time.Millisecond)

		// Each daemon in turn, in a new random order each round; its
		// first fault is a SIGKILL, later ones SIGKILL or SIGSTOP.
		if f%len(daemons) == 0 {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		d := daemons[order[f%len(daemons)]]
		var what string
		if f >= len(daemons) && rng.IntN(3) == 0 {
			// SIGSTOP long enough, sometimes, for the coordinator to
			// declare the worker lost (lost_after 10s).
			pause := time.Duration(2+rng.IntN(12)) * time.Second
			what = fmt.Sprintf("SIGSTOP %s for %s", d.name, pause)
			t.Log(what)
			if err := syscall.Kill(-d.pgid(), syscall.SIGSTOP); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(pause)
			if err := syscall.Kill(-d.pgid(), syscall.SIGCONT); err != nil {
				t.Fatalf("SIGCONT %s: %v", d.name, err)
			}
			stops++
		} else {
			what = "SIGKILL " + d.name
			t.Log(what)
			d.p.kill()
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			kills++
			d.restart(t, f)
			if d.name == "coordinator" {
				c.coord = d.p
			}
		}
		took := waitHealthy(t, d, 2*time.Minute)
		recoveries = append(recoveries, recovery{what, took})
		t.Logf("%s: serving again after %s", what, took.Round(time.Millisecond))
	}
	for submitted < faultSuiteJobs {
		submitCommand(submitted)
		submitted++
	}
	for buildsDone < faultSuiteBuilds {
		submitBuild()
		buildsDone++
	}

	// Invariant 1: every accepted job ended, and ended once: its final
	// state never changes afterwards.
	final := c.waitJobs(ids, time.Until(deadline)+5*time.Minute)
	for _, id := range ids {
		if j := final[id]; j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("job %s ended %s after %d attempts: %s", id, j.GetState(), j.GetAttempt(), j.GetReason())
		}
	}
	// Invariant 2: every artifact is what its digest says, and the
	// result file names its own job.
	for _, id := range ids {
		j := final[id]
		if j.GetSpec().GetKind() != pb.JobKind_JOB_KIND_COMMAND {
			continue
		}
		if len(j.GetArtifacts()) != 2 {
			t.Errorf("job %s has %d artifacts, want 2: %v", id, len(j.GetArtifacts()), j.GetArtifacts())
		}
		for _, a := range j.GetArtifacts() {
			b := c.fetch(id, a.GetName())
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != a.GetSha256() || int64(len(b)) != a.GetSize() {
				t.Errorf("job %s artifact %s: %d bytes sha256 %x, recorded %d bytes %s", id, a.GetName(), len(b), sum, a.GetSize(), a.GetSha256())
			}
			if a.GetName() == "out/result.txt" && !strings.HasSuffix(strings.TrimSpace(string(b)), "-"+id) {
				t.Errorf("job %s result.txt holds %q: another job's output", id, b)
			}
		}
	}
	// Invariant 3: every build is published, and apt verifies each
	// version through the mirror with the operator's key.
	for _, id := range builds {
		j := waitPublished(t, c, id, 5*time.Minute)
		if j.GetPublish().GetState() != pb.PublishState_PUBLISH_STATE_PUBLISHED {
			t.Errorf("build %s: publish %s (%s)", id, j.GetPublish().GetState(), j.GetPublishState())
			continue
		}
		aptFetch(t, p.dir, p.mirrorAddr, p.repoName, "kiln-hello", j.GetRecord().GetVersion())
	}
	// The final states stay final.
	for _, id := range ids {
		r, err := c.client.GetJob(ctx, &pb.GetJobRequest{Id: id})
		if err != nil {
			t.Fatalf("get job %s: %v", id, err)
		}
		if r.GetJob().GetState() != final[id].GetState() || r.GetJob().GetAttempt() != final[id].GetAttempt() {
			t.Errorf("job %s changed after it ended: %s attempt %d, then %s attempt %d", id,
				final[id].GetState(), final[id].GetAttempt(), r.GetJob().GetState(), r.GetJob().GetAttempt())
		}
	}
	// Invariant 4: no job process of a killed worker survives.
	b, _ := os.ReadFile(pids)
	alive := 0
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if pid > 0 && processAlive(pid) {
			alive++
			t.Errorf("process %d of a job still runs", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}

	worst := recovery{}
	for _, r := range recoveries {
		if r.took > worst.took {
			worst = r
		}
	}
	t.Logf("fault suite: %d jobs (%d package builds published), %d SIGKILLs, %d SIGSTOPs, %d recoveries, worst recovery %s (%s), %d job processes left",
		len(ids), len(builds), kills, stops, len(recoveries), worst.took.Round(time.Millisecond), worst.what, alive)
}

// newPipelineOpts is newPipeline with extra coordinator settings and the
// worker's options.
func newPipelineOpts(t *testing.T, extra string, o workerOptions) *pipeline {
	t.Helper()
	p := newPipeline(t, func(*gitServer) string { return extra })
	p.worker.kill()
	p.worker = p.startWorker(t, o)
	return p
}

func waitHealthy(t *testing.T, d *daemon, limit time.Duration) time.Duration {
	t.Helper()
	from := time.Now()
	for !d.healthy() {
		if time.Since(from) > limit {
			t.Fatalf("%s does not serve %s after a fault", d.name, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(from)
}

func waitPublished(t *testing.T, c *cluster, id string, limit time.Duration) *pb.Job {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r, err := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
		if err == nil {
			switch r.GetJob().GetPublish().GetState() {
			case pb.PublishState_PUBLISH_STATE_PENDING, pb.PublishState_PUBLISH_STATE_UNSPECIFIED:
			default:
				return r.GetJob()
			}
			if time.Now().After(deadline) {
				return r.GetJob()
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("get job %s: %v", id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// processAlive reports whether pid runs (a zombie waiting for its
// parent counts as dead).
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func dialable(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

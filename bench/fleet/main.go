// Command fleet-bench measures the coordinator's dispatch throughput and
// queue-to-start latency with a simulated worker fleet (see run.sh and
// RESULTS.md).
//
// It starts a real `coordinator serve --dev` process on loopback, runs
// simulated workers in this process (each its own gRPC connection speaking
// the worker protocol: Register, heartbeats, long-poll PullJob, and an
// immediate CompleteJob with exit 0), and submits no-op command jobs
// through the client API from concurrent submitters, as Jenkins would.
//
// It runs phases of -jobs jobs each (-phases, default burst,paced:2000,paced:1000):
//   - burst: the submitters submit as fast as the coordinator acknowledges;
//     this measures the highest dispatch rate (jobs queue up inside the
//     coordinator when submission outpaces dispatch);
//   - paced:RATE: jobs are submitted at RATE per second on a fixed schedule
//     (open loop) while idle slots exist; this measures queue-to-start
//     latency at that dispatch rate.
//
// Per phase it reports dispatches per second (assignments received by the
// workers over the phase), queue-to-start latency p50/p99 from the
// coordinator's kiln_queue_to_start_seconds histogram and client-side
// (submit acknowledged to assignment received by the simulated worker), and
// how many jobs the coordinator recorded as succeeded.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/internal/protocol"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fleet-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	coordinator string
	stateDir    string
	workers     int
	slots       int
	jobs        int
	submitters  int
	clientConns int
	labelSets   int
	phases      string
	pollWait    int
	coordLog    string
	extraArgs   string
}

// labelSets are the label sets workers advertise and jobs require, in
// turn: a few targets and architectures, as a build farm would have.
var labelSets = []map[string]string{
	{"target": "bookworm", "arch": "amd64"},
	{"target": "jammy", "arch": "amd64"},
	{"target": "centos7", "arch": "x86_64"},
	{"target": "bookworm", "arch": "arm64"},
	{"target": "noble", "arch": "amd64"},
	{"target": "rocky9", "arch": "x86_64"},
	{"target": "trixie", "arch": "amd64"},
	{"target": "trixie", "arch": "arm64"},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The driver shares the machine with the coordinator under test: collect
	// its garbage less often so that it takes less of the CPU.
	debug.SetGCPercent(400)
	fs := flag.NewFlagSet("fleet-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.coordinator, "coordinator", "bin/coordinator", "coordinator binary built from this module")
	fs.StringVar(&o.stateDir, "state-dir", "", "coordinator state directory (default: a new temporary directory, removed afterwards)")
	fs.IntVar(&o.workers, "workers", 200, "simulated workers")
	fs.IntVar(&o.slots, "slots", 1, "slots per worker (one long poll each)")
	fs.IntVar(&o.jobs, "jobs", 10000, "jobs per phase")
	fs.IntVar(&o.submitters, "submitters", 64, "concurrent submitters")
	fs.IntVar(&o.clientConns, "client-conns", 16, "client connections the submitters share")
	fs.IntVar(&o.labelSets, "label-sets", 4, fmt.Sprintf("label sets workers and jobs are spread over (1..%d)", len(labelSets)))
	fs.StringVar(&o.phases, "phases", "burst,paced:2000,paced:1000", "phases to run, in order: burst or paced:RATE (submissions per second)")
	fs.IntVar(&o.pollWait, "poll-wait", 30, "PullJob long-poll wait in seconds")
	fs.StringVar(&o.coordLog, "coordinator-log", "", "file for the coordinator's output (default: in the state directory)")
	fs.StringVar(&o.extraArgs, "coordinator-args", "", "extra arguments for `coordinator serve`, space separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.labelSets < 1 || o.labelSets > len(labelSets) || o.workers < o.labelSets || o.slots < 1 || o.jobs < 1 || o.submitters < 1 || o.clientConns < 1 {
		return errors.New("bad flags: need 1 <= label-sets <= 8, workers >= label-sets, and positive slots, jobs, submitters, client-conns")
	}
	if o.stateDir != "" {
		if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
			return err
		}
	} else {
		d, err := os.MkdirTemp("", "kiln-fleet-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.stateDir = d
	}

	c, err := startCoordinator(ctx, o)
	if err != nil {
		return err
	}
	defer c.stop()

	b := &bench{o: o, coord: c, assigned: map[string]time.Time{}, acked: map[string]time.Time{}, sent: map[string]time.Time{}, dispatches: map[string]int{}}
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	if err := b.startWorkers(wctx, &wg); err != nil {
		return err
	}
	clients := make([]pb.CoordinatorServiceClient, o.clientConns)
	for i := range clients {
		cc, err := grpc.NewClient(c.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		clients[i] = pb.NewCoordinatorServiceClient(cc)
	}
	// Let every long poll reach the coordinator before the clock starts.
	time.Sleep(time.Second)

	fmt.Fprintf(stdout, "# fleet-bench: %d workers x %d slots over %d label sets, %d jobs per phase, %d submitters on %d connections\n",
		o.workers, o.slots, o.labelSets, o.jobs, o.submitters, o.clientConns)
	var results []result
	for i, ph := range strings.Split(o.phases, ",") {
		var r result
		var err error
		ph = strings.TrimSpace(ph)
		kind, arg, _ := strings.Cut(ph, ":")
		rate, perr := strconv.ParseFloat(arg, 64)
		switch {
		case ph == "burst":
			r, err = b.phase(ctx, fmt.Sprintf("p%d", i), "burst", clients, 0)
		case kind == "paced" && perr == nil && rate > 0:
			r, err = b.phase(ctx, fmt.Sprintf("p%d", i), fmt.Sprintf("paced %.0f/s", rate), clients, rate)
		default:
			return fmt.Errorf("phase %q: use burst or paced:RATE", ph)
		}
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	stopWorkers()
	wg.Wait()
	printTable(stdout, results)
	if b.errors.Load() > 0 {
		return fmt.Errorf("%d worker or submitter calls failed (first: %v)", b.errors.Load(), b.firstErr.Load())
	}
	return nil
}

// coordinator is the coordinator process under test.
type coordinator struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	done     chan error
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startCoordinator(ctx context.Context, o options) (*coordinator, error) {
	ga, err := freePort()
	if err != nil {
		return nil, err
	}
	ha, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := o.coordLog
	if logPath == "" {
		logPath = filepath.Join(o.stateDir, "coordinator.log")
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--dev", "--state-dir", filepath.Join(o.stateDir, "state"), "--listen", ga, "--http-listen", ha, "--log-level", "warn"}
	args = append(args, strings.Fields(o.extraArgs)...)
	cmd := exec.CommandContext(ctx, o.coordinator, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", o.coordinator, err)
	}
	c := &coordinator{cmd: cmd, grpcAddr: ga, httpAddr: ha, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); lf.Close() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + ha + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case err := <-c.done:
			return nil, fmt.Errorf("coordinator exited before serving (%v); see %s", err, logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("coordinator not healthy after 20s; see %s", logPath)
		}
	}
}

func (c *coordinator) stop() {
	if c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd.Process = nil
}

// cpuSeconds returns the user+system CPU time a process used so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return math.NaN()
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

type bench struct {
	o     options
	coord *coordinator

	mu         sync.Mutex
	assigned   map[string]time.Time // job id: assignment received by a worker
	acked      map[string]time.Time // job id: submit acknowledged
	sent       map[string]time.Time // job id: submit sent
	dispatches map[string]int       // job id: assignments received
	phaseJobs  map[string]bool      // ids submitted in the current phase

	nAssigned  atomic.Int64
	nCompleted atomic.Int64
	busy       atomic.Int64 // slots holding an assignment now
	maxBusy    atomic.Int64
	errors     atomic.Int64
	firstErr   atomic.Value
}

func (b *bench) fail(what string, err error) {
	if b.errors.Add(1) == 1 {
		b.firstErr.Store(fmt.Errorf("%s: %w", what, err))
	}
}

// startWorkers registers the simulated workers and starts their loops.
func (b *bench) startWorkers(ctx context.Context, wg *sync.WaitGroup) error {
	errs := make(chan error, b.o.workers)
	for i := 0; i < b.o.workers; i++ {
		cc, err := grpc.NewClient(b.coord.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		w := &simWorker{b: b, name: fmt.Sprintf("sim-%03d", i), labels: labelSets[i%b.o.labelSets], client: wpb.NewWorkerServiceClient(cc),
			running: map[string]int32{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.run(ctx, wg)
		}()
		go func() {
			<-ctx.Done()
			cc.Close()
		}()
	}
	// Wait until every worker has registered (run sends nil once it has).
	for i := 0; i < b.o.workers; i++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

type simWorker struct {
	b       *bench
	name    string
	labels  map[string]string
	client  wpb.WorkerServiceClient
	session string

	mu      sync.Mutex
	running map[string]int32
}

func (w *simWorker) run(ctx context.Context, wg *sync.WaitGroup) error {
	resp, err := w.client.Register(ctx, &wpb.RegisterRequest{Name: w.name, Labels: w.labels, Slots: int32(w.b.o.slots), ProtocolVersion: protocol.Version})
	if err != nil {
		return fmt.Errorf("register %s: %w", w.name, err)
	}
	w.session = resp.GetSessionId()
	interval := time.Duration(resp.GetHeartbeatIntervalSeconds()) * time.Second
	if interval <= 0 {
		interval = 3 * time.Second
	}
	for s := 0; s < w.b.o.slots; s++ {
		wg.Add(1)
		go func() { defer wg.Done(); w.slot(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); w.heartbeats(ctx, interval) }()
	return nil
}

func (w *simWorker) heartbeats(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		var running []*wpb.RunningJob
		for id, a := range w.running {
			running = append(running, &wpb.RunningJob{JobId: id, Attempt: a})
		}
		w.mu.Unlock()
		if _, err := w.client.Heartbeat(ctx, &wpb.HeartbeatRequest{SessionId: w.session, Running: running}); err != nil && ctx.Err() == nil {
			w.b.fail("heartbeat "+w.name, err)
		}
	}
}

// slot long-polls for a job and completes it at once with exit 0.
func (w *simWorker) slot(ctx context.Context) {
	for ctx.Err() == nil {
		resp, err := w.client.PullJob(ctx, &wpb.PullJobRequest{SessionId: w.session, WaitSeconds: int32(w.b.o.pollWait)})
		if err != nil {
			if ctx.Err() == nil {
				w.b.fail("pull "+w.name, err)
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		a := resp.GetAssignment()
		if a == nil {
			continue
		}
		now := time.Now()
		w.b.mu.Lock()
		if _, ok := w.b.assigned[a.GetJobId()]; !ok {
			w.b.assigned[a.GetJobId()] = now
		}
		w.b.dispatches[a.GetJobId()]++
		w.b.mu.Unlock()
		w.b.nAssigned.Add(1)
		if n := w.b.busy.Add(1); n > w.b.maxBusy.Load() {
			w.b.maxBusy.Store(n) // racy maximum; good enough for a report
		}
		w.mu.Lock()
		w.running[a.GetJobId()] = a.GetAttempt()
		w.mu.Unlock()
		_, err = w.client.CompleteJob(ctx, &wpb.CompleteJobRequest{SessionId: w.session, JobId: a.GetJobId(), Attempt: a.GetAttempt(), ExitCode: 0})
		w.mu.Lock()
		delete(w.running, a.GetJobId())
		w.mu.Unlock()
		w.b.busy.Add(-1)
		if err != nil {
			if ctx.Err() == nil {
				w.b.fail("complete "+a.GetJobId(), err)
			}
			continue
		}
		w.b.nCompleted.Add(1)
	}
}

type result struct {
	name                   string
	jobs                   int
	submitSecs, totalSecs  float64
	dispatchPerSec         float64
	submitPerSec           float64
	srvP50, srvP99         float64 // seconds, from the coordinator's histogram
	cliP50, cliP99, cliMax float64 // seconds, submit ack to assignment
	sentP50, sentP99       float64 // seconds, submit sent to assignment
	ackP50, ackP99         float64 // seconds, submit round trip
	succeeded              int     // jobs the coordinator recorded as succeeded during the phase
	dispatched, redispatch int
	coordCPU, benchCPU     float64 // CPU seconds over the phase
	maxBusy, slots         int
	load0, load1           string // 1-minute load average before and after
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// phase submits b.o.jobs jobs (paced at rate per second when rate > 0) and
// waits until every one has been assigned and completed.
func (b *bench) phase(ctx context.Context, tag, name string, clients []pb.CoordinatorServiceClient, rate float64) (result, error) {
	r := result{name: name, jobs: b.o.jobs, slots: b.o.workers * b.o.slots, load0: loadavg()}
	b.maxBusy.Store(0)
	before, err := b.scrape()
	if err != nil {
		return r, err
	}
	b.mu.Lock()
	b.phaseJobs = map[string]bool{}
	b.mu.Unlock()
	cpu0, bcpu0 := cpuSeconds(b.coord.cmd.Process.Pid), cpuSeconds(os.Getpid())
	assigned0, completed0 := b.nAssigned.Load(), b.nCompleted.Load()

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	ackDur := make([]float64, b.o.jobs)
	for s := 0; s < b.o.submitters; s++ {
		client := clients[s%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.o.jobs {
					return
				}
				if rate > 0 {
					if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
						time.Sleep(d)
					}
				}
				spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: labelSets[i%b.o.labelSets],
					Command: []string{"true"}, Origin: "fleet-bench " + tag + " #" + strconv.Itoa(i)}
				t0 := time.Now()
				resp, err := client.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec})
				t1 := time.Now()
				if err != nil {
					b.fail("submit", err)
					continue
				}
				ackDur[i] = t1.Sub(t0).Seconds()
				id := resp.GetJob().GetId()
				b.mu.Lock()
				b.sent[id], b.acked[id] = t0, t1
				b.phaseJobs[id] = true
				b.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	submitted := time.Now()
	r.submitSecs = submitted.Sub(start).Seconds()
	// Wait for every job to be completed (or give up after a minute of no
	// progress).
	last, lastChange := b.nCompleted.Load(), time.Now()
	for b.nCompleted.Load()-completed0 < int64(b.o.jobs) {
		time.Sleep(2 * time.Millisecond)
		if b.errors.Load() > 0 {
			return r, fmt.Errorf("%s: %d call errors, first: %v", name, b.errors.Load(), b.firstErr.Load())
		}
		if n := b.nCompleted.Load(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > time.Minute {
			return r, fmt.Errorf("%s: only %d of %d jobs completed, none for a minute (%d call errors, first: %v)", name, n-completed0, b.o.jobs, b.errors.Load(), b.firstErr.Load())
		}
	}
	end := time.Now()
	r.coordCPU = cpuSeconds(b.coord.cmd.Process.Pid) - cpu0
	r.benchCPU = cpuSeconds(os.Getpid()) - bcpu0
	r.totalSecs = end.Sub(start).Seconds()
	r.dispatched = int(b.nAssigned.Load() - assigned0)
	r.maxBusy = int(b.maxBusy.Load())
	r.load1 = loadavg()

	b.mu.Lock()
	var lastAssign time.Time
	var cli, snt []float64
	for id := range b.phaseJobs {
		at, ok := b.assigned[id]
		if !ok {
			continue
		}
		if at.After(lastAssign) {
			lastAssign = at
		}
		cli = append(cli, at.Sub(b.acked[id]).Seconds())
		snt = append(snt, at.Sub(b.sent[id]).Seconds())
		if b.dispatches[id] > 1 {
			r.redispatch++
		}
	}
	b.mu.Unlock()
	r.dispatchPerSec = float64(r.dispatched) / lastAssign.Sub(start).Seconds()
	r.submitPerSec = float64(b.o.jobs) / r.submitSecs
	sort.Float64s(cli)
	sort.Float64s(snt)
	sort.Float64s(ackDur)
	r.cliP50, r.cliP99, r.cliMax = quantile(cli, .5), quantile(cli, .99), quantile(cli, 1)
	r.sentP50, r.sentP99 = quantile(snt, .5), quantile(snt, .99)
	r.ackP50, r.ackP99 = quantile(ackDur, .5), quantile(ackDur, .99)

	// The store's counts are written by group commit before CompleteJob
	// returns, so they are final here.
	after, err := b.scrape()
	if err != nil {
		return r, err
	}
	r.srvP50 = histQuantile(.5, before.buckets, after.buckets)
	r.srvP99 = histQuantile(.99, before.buckets, after.buckets)
	r.succeeded = int(after.succeeded - before.succeeded)
	return r, nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

type scrape struct {
	buckets   map[float64]float64 // le: cumulative count
	succeeded float64
}

// scrape reads the coordinator's queue-to-start histogram and its count of
// succeeded jobs from /metrics.
func (b *bench) scrape() (scrape, error) {
	s := scrape{buckets: map[float64]float64{}}
	resp, err := http.Get("http://" + b.coord.httpAddr + "/metrics")
	if err != nil {
		return s, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, `kiln_queue_to_start_seconds_bucket{le="`):
			rest := strings.TrimPrefix(line, `kiln_queue_to_start_seconds_bucket{le="`)
			le, val, ok := strings.Cut(rest, `"} `)
			if !ok {
				continue
			}
			l, err1 := strconv.ParseFloat(le, 64)
			v, err2 := strconv.ParseFloat(strings.Fields(val)[0], 64)
			if err1 == nil && err2 == nil {
				s.buckets[l] = v
			}
		case strings.HasPrefix(line, `kiln_jobs{state="succeeded"} `):
			v, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			if err == nil {
				s.succeeded = v
			}
		}
	}
	if len(s.buckets) == 0 {
		return s, errors.New("scrape metrics: no kiln_queue_to_start_seconds histogram")
	}
	return s, sc.Err()
}

// histQuantile estimates a quantile from the difference of two cumulative
// histogram snapshots, interpolating linearly inside the bucket as
// Prometheus's histogram_quantile does.
func histQuantile(q float64, before, after map[float64]float64) float64 {
	les := make([]float64, 0, len(after))
	for le := range after {
		les = append(les, le)
	}
	sort.Float64s(les)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		c := after[le] - before[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return prevLe
			}
			if c == prevCount {
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(c-prevCount)
		}
		prevLe, prevCount = le, c
	}
	return math.NaN()
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.1f", s*1000)
}

func printTable(w io.Writer, rs []result) {
	row := func(label string, f func(r result) string) {
		fmt.Fprintf(w, "%-60s", label)
		for _, r := range rs {
			fmt.Fprintf(w, " %16s", f(r))
		}
		fmt.Fprintln(w)
	}
	row("phase", func(r result) string { return r.name })
	row("jobs", func(r result) string { return strconv.Itoa(r.jobs) })
	row("dispatches/s (assignments received / first submit to last)", func(r result) string { return fmt.Sprintf("%.0f", r.dispatchPerSec) })
	row("submissions/s (acknowledged)", func(r result) string { return fmt.Sprintf("%.0f", r.submitPerSec) })
	row("queue-to-start p50 ms (coordinator histogram)", func(r result) string { return ms(r.srvP50) })
	row("queue-to-start p99 ms (coordinator histogram)", func(r result) string { return ms(r.srvP99) })
	row("queue-to-start p50 ms (client: ack to assignment)", func(r result) string { return ms(r.cliP50) })
	row("queue-to-start p99 ms (client: ack to assignment)", func(r result) string { return ms(r.cliP99) })
	row("queue-to-start max ms (client: ack to assignment)", func(r result) string { return ms(r.cliMax) })
	row("send to assignment p50 ms (client)", func(r result) string { return ms(r.sentP50) })
	row("send to assignment p99 ms (client)", func(r result) string { return ms(r.sentP99) })
	row("SubmitJob round trip p50 ms", func(r result) string { return ms(r.ackP50) })
	row("SubmitJob round trip p99 ms", func(r result) string { return ms(r.ackP99) })
	row("completed end to end (coordinator: succeeded)", func(r result) string {
		return fmt.Sprintf("%d/%d %.1f%%", r.succeeded, r.jobs, 100*float64(r.succeeded)/float64(r.jobs))
	})
	row("jobs dispatched more than once", func(r result) string { return strconv.Itoa(r.redispatch) })
	row("most slots busy at once", func(r result) string { return fmt.Sprintf("%d of %d", r.maxBusy, r.slots) })
	row("wall time s", func(r result) string { return fmt.Sprintf("%.2f", r.totalSecs) })
	row("coordinator CPU s (user+sys)", func(r result) string { return fmt.Sprintf("%.2f", r.coordCPU) })
	row("bench CPU s (workers+submitters)", func(r result) string { return fmt.Sprintf("%.2f", r.benchCPU) })
	row("coordinator CPU us per job", func(r result) string { return fmt.Sprintf("%.0f", r.coordCPU/float64(r.jobs)*1e6) })
	row("machine load average (1 min) before/after", func(r result) string { return r.load0 + "/" + r.load1 })
}

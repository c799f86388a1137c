// Command weblog-bench measures the web pages' live log with real
// processes: a coordinator (development mode) whose store holds a farm's
// history of jobs, and a worker process that runs a command job printing a
// line with its clock every few milliseconds. Server-sent-event clients
// follow the job's log on /jobs/ID/log/events as a browser's log.js does;
// each line's delay is the client's clock when the line arrives minus the
// clock the job printed. Each phase also samples the coordinator's
// resident memory while its clients follow.
//
//	bench/weblog/run.sh [-jobs 100000] [-clients 1,50] [-lines 200]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

type options struct {
	coordinator, worker, dir string
	jobs                     int
	clients                  []int
	lines                    int
	every                    time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "weblog-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("weblog-bench", flag.ContinueOnError)
	var o options
	var clients string
	fs.StringVar(&o.coordinator, "coordinator", "", "coordinator binary")
	fs.StringVar(&o.worker, "worker", "", "worker binary")
	fs.StringVar(&o.dir, "dir", "", "work directory (state, logs)")
	fs.IntVar(&o.jobs, "jobs", 100_000, "jobs in the store before the coordinator starts")
	fs.StringVar(&clients, "clients", "1,50", "log followers per phase, comma-separated")
	fs.IntVar(&o.lines, "lines", 200, "lines the job prints per phase")
	fs.DurationVar(&o.every, "every", 50*time.Millisecond, "time between the job's lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.coordinator == "" || o.worker == "" || o.dir == "" {
		return errors.New("give -coordinator, -worker and -dir")
	}
	for _, c := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return fmt.Errorf("-clients %q: give positive numbers", clients)
		}
		o.clients = append(o.clients, n)
	}
	state := filepath.Join(o.dir, "state")
	t0 := time.Now()
	if err := fill(ctx, state, o.jobs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store filled with %d jobs in %s\n", o.jobs, time.Since(t0).Round(time.Millisecond))

	grpcAddr, httpAddr := freeAddr(), freeAddr()
	coord, err := start(ctx, filepath.Join(o.dir, "coordinator.log"), o.coordinator, "serve", "--dev", "--state-dir", state,
		"--listen", grpcAddr, "--http-listen", httpAddr, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer coord.stop()
	if err := waitHealthy(ctx, "http://"+httpAddr+"/healthz", coord); err != nil {
		return err
	}
	wk, err := start(ctx, filepath.Join(o.dir, "worker.log"), o.worker, "run", "--dev", "--coordinator", grpcAddr, "--name", "bench",
		"--labels", "os=linux", "--slots", "1", "--work-dir", filepath.Join(o.dir, "work"))
	if err != nil {
		return err
	}
	defer wk.stop()

	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := pb.NewCoordinatorServiceClient(cc)

	fmt.Fprintf(stdout, "\n| followers | lines received | delay p50 | delay p95 | delay max | coordinator RSS before | RSS while following (max) |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range o.clients {
		r, err := phase(ctx, o, client, httpAddr, coord.cmd.Process.Pid, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "| %d | %d | %s | %s | %s | %.1f MiB | %.1f MiB |\n", n, len(r.delays),
			ms(quantile(r.delays, 0.5)), ms(quantile(r.delays, 0.95)), ms(quantile(r.delays, 1)), mib(r.rssBefore), mib(r.rssMax))
	}
	return nil
}

type result struct {
	delays            []time.Duration
	rssBefore, rssMax int64
}

// phase runs one job that waits until n followers are connected and then
// prints o.lines lines, each with its clock.
func phase(ctx context.Context, o options, client pb.CoordinatorServiceClient, httpAddr string, pid, n int) (result, error) {
	ready := filepath.Join(o.dir, fmt.Sprintf("ready-%d", n))
	script := fmt.Sprintf(`while [ ! -e %q ]; do sleep 0.01; done
i=0; while [ $i -lt %d ]; do echo "line $i $(date +%%s%%N)"; i=$((i+1)); sleep %s; done`, ready, o.lines, strconv.FormatFloat(o.every.Seconds(), 'f', 3, 64))
	resp, err := client.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND,
		Labels: map[string]string{"os": "linux"}, Command: []string{"sh", "-c", script}, Origin: "weblog-bench"}})
	if err != nil {
		return result{}, fmt.Errorf("submit: %w", err)
	}
	id := resp.GetJob().GetId()
	var r result
	r.rssBefore = rss(pid)
	var mu sync.Mutex
	var wg sync.WaitGroup
	connected := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := follow(ctx, "http://"+httpAddr+"/jobs/"+id+"/log/events", connected)
			if err != nil {
				connected <- err
				return
			}
			mu.Lock()
			r.delays = append(r.delays, d...)
			mu.Unlock()
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-connected; err != nil {
			return r, err
		}
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return r, err
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			slices.Sort(r.delays)
			if want := n * o.lines; len(r.delays) != want {
				return r, fmt.Errorf("followers received %d lines, want %d", len(r.delays), want)
			}
			return r, nil
		case <-tick.C:
			r.rssMax = max(r.rssMax, rss(pid))
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
}

type segment struct {
	T string `json:"t"`
}

// follow reads a job's log events to the end, as log.js does, and returns
// each line's delay. It says on connected when the stream is open.
func follow(ctx context.Context, url string, connected chan<- error) ([]time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	connected <- nil
	var out []time.Duration
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		now := time.Now()
		var msg struct {
			Lines [][]segment `json:"lines"`
			State string      `json:"state"`
		}
		if err := json.Unmarshal([]byte(data), &msg); err != nil {
			return nil, fmt.Errorf("event %q: %w", data, err)
		}
		for _, l := range msg.Lines {
			var b strings.Builder
			for _, s := range l {
				b.WriteString(s.T)
			}
			f := strings.Fields(b.String())
			if len(f) != 3 || f[0] != "line" {
				continue // the coordinator's own notes
			}
			ns, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", b.String(), err)
			}
			out = append(out, now.Sub(time.Unix(0, ns)))
		}
		if msg.State != "" {
			return out, nil
		}
	}
	return out, fmt.Errorf("log stream of %s ended without its end event: %v", url, sc.Err())
}

// fill writes jobs into a new store at dir, as a farm's history: three in
// five command jobs, the rest package builds, all finished.
func fill(ctx context.Context, dir string, n int) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]*job.Job, 0, 5000)
	for i := 1; i <= n; i++ {
		at := start.Add(time.Duration(i) * time.Minute)
		j := &job.Job{ID: fmt.Sprintf("h%06d", i), Seq: int64(i), State: job.Succeeded, CreatedAt: at, StartedAt: at.Add(time.Second),
			FinishedAt: at.Add(time.Minute), Worker: "w" + strconv.Itoa(i%20), Attempt: 1}
		if i%5 < 3 {
			j.Spec = job.Spec{Kind: job.Command, Command: []string{"make", "check"}, Origin: "cli", Labels: map[string]string{"os": "linux"}}
		} else {
			pkg := "pkg" + strconv.Itoa(i%200)
			j.Spec = job.Spec{Kind: job.PackageBuild, Origin: fmt.Sprintf("gerrit g: review build of change %d patch set 1 (team/%s main)", i, pkg),
				Labels: map[string]string{"target": "bookworm"},
				Build: &job.Build{Release: "r" + strconv.Itoa(i%10), Target: "bookworm", Package: pkg, Revision: int64(i),
					Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: fmt.Sprintf("%040x", i), Role: "combined"}}}}
			j.BuildKey = j.Spec.Build.Key()
		}
		batch = append(batch, j)
		if len(batch) == cap(batch) || i == n {
			if err := st.Put(ctx, batch...); err != nil {
				return fmt.Errorf("fill store: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func start(ctx context.Context, logPath, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); lf.Close() }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func waitHealthy(ctx context.Context, url string, p *proc) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-p.done:
			return fmt.Errorf("coordinator exited before serving: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after 60s", url)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// rss is a process's resident memory in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

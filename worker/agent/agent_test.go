package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/grpcerr"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
	"github.com/kiln-build/kiln/worker/executor"
)

// fakeExec runs jobs by a function the test gives.
type fakeExec struct {
	run func(ctx context.Context, j executor.Job, log io.Writer) (executor.Result, error)
}

func (f fakeExec) Run(ctx context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
	return f.run(ctx, j, log)
}

// coordinator is an in-process coordinator (fleet, store and the worker
// API) reached over bufconn.
type coordinator struct {
	f    *fleet.Fleet
	conn *grpc.ClientConn

	mu        sync.Mutex
	registers []error // every Register call's result
	// heartbeats receives (without blocking) after every Heartbeat call.
	heartbeats chan struct{}
	logsDown   bool // AppendLog answers Unavailable
}

// setLogsDown makes AppendLog fail as if the coordinator were unreachable.
func (c *coordinator) setLogsDown(down bool) {
	c.mu.Lock()
	c.logsDown = down
	c.mu.Unlock()
}

// registered returns the results of the Register calls so far.
func (c *coordinator) registered() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.registers...)
}

func newCoordinator(t *testing.T) *coordinator {
	t.Helper()
	return newCoordinatorWith(t, fleet.Config{LostAfter: 10 * time.Second, RetryCap: 2})
}

// newCoordinatorWith is newCoordinator with the fleet's config (its
// StateDir is filled in).
func newCoordinatorWith(t *testing.T, cfg fleet.Config) *coordinator {
	t.Helper()
	return newCoordinatorTokens(t, cfg, nil)
}

// newCoordinatorTokens is newCoordinatorWith with the workers' bearer
// tokens (nil: no check).
func newCoordinatorTokens(t *testing.T, cfg fleet.Config, tokens map[string]string) *coordinator {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = dir
	f, err := fleet.New(ctx, cfg, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	c := &coordinator{f: f, heartbeats: make(chan struct{}, 100)}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if strings.HasSuffix(info.FullMethod, "/Register") {
			c.mu.Lock()
			c.registers = append(c.registers, err)
			c.mu.Unlock()
		}
		if strings.HasSuffix(info.FullMethod, "/Heartbeat") {
			select {
			case c.heartbeats <- struct{}{}:
			default:
			}
		}
		return resp, err
	}), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		c.mu.Lock()
		down := c.logsDown
		c.mu.Unlock()
		if down && strings.HasSuffix(info.FullMethod, "/AppendLog") {
			return status.Error(codes.Unavailable, "coordinator unreachable (test)")
		}
		return h(srv, ss)
	}))
	wpb.RegisterWorkerServiceServer(srv, api.NewWorkerServer(f, tokens, time.Second))
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop(); st.Close() })
	c.conn = conn
	return c
}

func (c *coordinator) runAgent(t *testing.T, exec executor.Executor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 1, WorkDir: t.TempDir(), PollWait: time.Second, ShutdownGrace: time.Second},
		c.conn, exec, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
}

func (c *coordinator) wait(t *testing.T, id string, final bool) *job.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		j, _, err := c.f.Get(context.Background(), id)
		if err == nil && (j.State.Final() == final) && (final || j.State == job.Running) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not get there", id)
	return nil
}

func (c *coordinator) log(t *testing.T, id string) string {
	t.Helper()
	var b strings.Builder
	if _, err := c.f.StreamLog(context.Background(), id, 0, false, func(p []byte) error { b.Write(p); return nil }); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func submit(t *testing.T, c *coordinator, globs ...string) string {
	t.Helper()
	j, _, err := c.f.Submit(context.Background(), job.Spec{Kind: job.Command, Command: []string{"build"}, Labels: map[string]string{"os": "linux"}, ArtifactGlobs: globs})
	if err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func TestAgentRunsJobStreamsLogAndUploadsArtifacts(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	stop := c.runAgent(t, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		io.WriteString(log, "compiling "+j.ID+"\n")
		os.MkdirAll(filepath.Join(j.WorkDir, "out"), 0o755)
		os.WriteFile(filepath.Join(j.WorkDir, "out", "pkg.deb"), []byte("package bytes"), 0o644)
		os.WriteFile(filepath.Join(j.WorkDir, "notes.txt"), []byte("not collected"), 0o644)
		os.Symlink("/etc/passwd", filepath.Join(j.WorkDir, "out", "leak"))
		return executor.Result{}, nil
	}})
	defer stop()
	id := submit(t, c, "out/*")
	j := c.wait(t, id, true)
	if j.State != job.Succeeded || len(j.Artifacts) != 1 || j.Artifacts[0].Name != "out/pkg.deb" || j.Artifacts[0].Size != 13 {
		t.Fatalf("job %+v", j)
	}
	l := c.log(t, id)
	if !strings.Contains(l, "compiling "+id) || !strings.Contains(l, "artifact out/leak refused: it is a symlink") {
		t.Fatalf("log:\n%s", l)
	}
	fh, _, err := c.f.OpenArtifact(context.Background(), id, "out/pkg.deb")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(fh)
	fh.Close()
	if string(b) != "package bytes" {
		t.Fatalf("artifact %q", b)
	}
}

func TestAgentReportsFailuresApart(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	var mu sync.Mutex
	calls := 0
	stop := c.runAgent(t, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch {
		case strings.Contains(strings.Join(j.Command, " "), "build") && n == 1:
			return executor.Result{}, errors.New("containerd unreachable")
		default:
			return executor.Result{ExitCode: 2, Reason: "exit status 2"}, nil
		}
	}})
	defer stop()
	id := submit(t, c)
	j := c.wait(t, id, true)
	// The infrastructure failure was retried; the build failure was not.
	if j.State != job.Failed || j.Attempt != 2 || j.ExitCode != 2 {
		t.Fatalf("job: %s attempt %d exit %d: %s", j.State, j.Attempt, j.ExitCode, j.Reason)
	}
	if l := c.log(t, id); !strings.Contains(l, "infrastructure failure: containerd unreachable") {
		t.Fatalf("log:\n%s", l)
	}
}

func TestAgentStopsJobTheCoordinatorCancels(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	stopped := make(chan struct{})
	stop := c.runAgent(t, fakeExec{run: func(ctx context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		<-ctx.Done()
		close(stopped)
		return executor.Result{ExitCode: -1, Reason: "cancelled"}, nil
	}})
	defer stop()
	id := submit(t, c)
	c.wait(t, id, false)
	if _, err := c.f.Cancel(context.Background(), id, "not needed"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop the cancelled job")
	}
	if j := c.wait(t, id, true); j.State != job.Canceled {
		t.Fatalf("job %s", j.State)
	}
}

// A worker whose labels change while it runs (a chroot made for a new
// target) registers again with them: a job asking for the new label runs,
// and the job running meanwhile finishes in its first attempt.
func TestAgentAdvertisesChangedLabels(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var mu sync.Mutex
	labels := map[string]string{"os": "linux"}
	// ranEarly is set when the job for the new target runs while the
	// worker does not have its label: whenever that happens, early or
	// late, the test sees it.
	ranEarly := false
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 2, WorkDir: t.TempDir(), PollWait: time.Second, ShutdownGrace: time.Second,
		LabelsEvery: 20 * time.Millisecond,
		RefreshLabels: func(context.Context) (map[string]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(labels), nil
		}},
		c.conn, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
			switch j.Command[0] {
			case "long":
				started <- struct{}{}
				<-release
			case "build":
				mu.Lock()
				ranEarly = ranEarly || labels["target"] != "trixie-amd64"
				mu.Unlock()
			}
			return executor.Result{}, nil
		}}, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var releaseOnce sync.Once
	defer func() {
		releaseOnce.Do(func() { close(release) })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	long, _, err := c.f.Submit(context.Background(), job.Spec{Kind: job.Command, Command: []string{"long"}, Labels: map[string]string{"os": "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	newTarget, _, err := c.f.Submit(context.Background(), job.Spec{Kind: job.Command, Command: []string{"build"}, Labels: map[string]string{"target": "trixie-amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	// Once the coordinator has heard from the worker twice more (a
	// heartbeat carries any change of its labels), the job still waits
	// for want of the label; then the labels change.
	for len(c.heartbeats) > 0 {
		<-c.heartbeats
	}
	<-c.heartbeats
	<-c.heartbeats
	if j, why, _ := c.f.Get(context.Background(), newTarget.ID); j.State != job.Queued || why != "no worker has label target=trixie-amd64" {
		t.Fatalf("job for a target no worker has: %s (%q), want it queued for want of the label", j.State, why)
	}
	mu.Lock()
	labels = map[string]string{"os": "linux", "target": "trixie-amd64"}
	mu.Unlock()
	if j := c.wait(t, newTarget.ID, true); j.State != job.Succeeded {
		t.Fatalf("job for the new target: %s %s", j.State, j.Reason)
	}
	mu.Lock()
	early := ranEarly
	mu.Unlock()
	if early {
		t.Fatal("the job for a target no worker had ran")
	}
	releaseOnce.Do(func() { close(release) })
	if j := c.wait(t, long.ID, true); j.State != job.Succeeded || j.Attempt != 1 {
		t.Fatalf("job running while the worker registered again: %s, attempt %d: %s", j.State, j.Attempt, j.Reason)
	}
}

func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 1, WorkDir: t.TempDir(), PollWait: time.Second, ShutdownGrace: time.Second,
		Metrics: NewMetrics(reg)}, c.conn, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		io.WriteString(log, "twelve bytes")
		os.WriteFile(filepath.Join(j.WorkDir, "pkg.deb"), []byte("package bytes"), 0o644)
		if j.Command[0] == "fail" {
			return executor.Result{ExitCode: 1, Reason: "exit status 1"}, nil
		}
		return executor.Result{}, nil
	}}, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for _, cmd := range []string{"ok", "fail"} {
		j, _, err := c.f.Submit(context.Background(), job.Spec{Kind: job.Command, Command: []string{cmd}, Labels: map[string]string{"os": "linux"}, ArtifactGlobs: []string{"*.deb"}})
		if err != nil {
			t.Fatal(err)
		}
		c.wait(t, j.ID, true)
		fh, _, err := c.f.OpenArtifact(context.Background(), j.ID, "pkg.deb")
		if err != nil {
			t.Fatalf("job %s (%s): %v", j.ID, cmd, err)
		}
		data, _ := io.ReadAll(fh)
		fh.Close()
		if string(data) != "package bytes" {
			t.Errorf("job %s (%s): pkg.deb is %q", j.ID, cmd, data)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key+" count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"kiln_worker_jobs_total kind=command result=succeeded": 1,
		"kiln_worker_jobs_total kind=command result=failed":    1,
		"kiln_worker_running_jobs":                             0,
		"kiln_worker_job_duration_seconds kind=command count":  2,
		// The second job's pkg.deb has the first one's bytes: the
		// coordinator holds them already and the upload stops after its
		// header.
		"kiln_worker_artifact_bytes_total":          13,
		"kiln_worker_artifact_bytes_not_sent_total": 13,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	// Both jobs' output and the worker's own lines about them.
	if got["kiln_worker_log_bytes_total"] < 24 {
		t.Errorf("kiln_worker_log_bytes_total = %v, want at least 24", got["kiln_worker_log_bytes_total"])
	}
}

// A large artifact the coordinator already holds stops after its header:
// the worker sees its stream end early (io.EOF on a send), takes the
// answer, and the job has the artifact all the same.
func TestAgentSkipsLargeArtifactTheCoordinatorHolds(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	reg := prometheus.NewRegistry()
	big := bytes.Repeat([]byte("base file "), 1<<20) // 10 MiB, many chunks
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 1, WorkDir: t.TempDir(), PollWait: time.Second, ShutdownGrace: time.Second,
		Metrics: NewMetrics(reg)}, c.conn, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		os.WriteFile(filepath.Join(j.WorkDir, "base.deb"), big, 0o644)
		return executor.Result{}, nil
	}}, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for i := range 2 {
		j, _, err := c.f.Submit(context.Background(), job.Spec{Kind: job.Command, Command: []string{"build"}, Labels: map[string]string{"os": "linux"}, ArtifactGlobs: []string{"*.deb"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.wait(t, j.ID, true); got.State != job.Succeeded {
			t.Fatalf("job %d: %s %s", i, got.State, got.Reason)
		}
		fh, _, err := c.f.OpenArtifact(context.Background(), j.ID, "base.deb")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(fh)
		fh.Close()
		if !bytes.Equal(data, big) {
			t.Fatalf("job %d: base.deb is %d bytes, not the file", i, len(data))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if m := mf.GetMetric(); len(m) == 1 && m[0].GetCounter() != nil {
			got[mf.GetName()] = m[0].GetCounter().GetValue()
		}
	}
	if got["kiln_worker_artifact_bytes_total"] != float64(len(big)) || got["kiln_worker_artifact_bytes_not_sent_total"] != float64(len(big)) {
		t.Errorf("sent %v bytes, not sent %v; want %d each", got["kiln_worker_artifact_bytes_total"], got["kiln_worker_artifact_bytes_not_sent_total"], len(big))
	}
}

// A job cannot make the worker read a host file through a symlinked
// directory anywhere in an artifact's path: not with a link to /, not
// with a link to a host directory inside out/, whatever the glob.
func TestAgentRefusesArtifactsThroughSymlinkedDirectories(t *testing.T) {
	t.Parallel()
	secretDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(secretDir, "hostsecret.txt"), []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCoordinator(t)
	stop := c.runAgent(t, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		os.MkdirAll(filepath.Join(j.WorkDir, "out"), 0o755)
		os.WriteFile(filepath.Join(j.WorkDir, "out", "ok.txt"), []byte("fine"), 0o644)
		os.Symlink("/", filepath.Join(j.WorkDir, "h"))
		os.Symlink(secretDir, filepath.Join(j.WorkDir, "out", "d"))
		os.Symlink("out", filepath.Join(j.WorkDir, "inner"))
		return executor.Result{}, nil
	}})
	defer stop()
	rel := strings.TrimPrefix(secretDir, "/")
	id := submit(t, c, "h/"+rel+"/hostsecret.txt", "h/"+rel+"/*", "out/*/*", "out/d/hostsecret.txt", "*/d/*", "inner/ok.txt", "out/*")
	j := c.wait(t, id, true)
	if j.State != job.Succeeded {
		t.Fatalf("job %+v", j)
	}
	if len(j.Artifacts) != 1 || j.Artifacts[0].Name != "out/ok.txt" {
		t.Fatalf("artifacts %+v, want out/ok.txt only", j.Artifacts)
	}
	l := c.log(t, id)
	for _, want := range []string{
		`artifact glob "h/` + rel + `/hostsecret.txt" refused: h is a symlink`,
		`artifact glob "out/d/hostsecret.txt" refused: out/d is a symlink`,
		`artifact glob "inner/ok.txt" refused: inner is a symlink`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	if strings.Contains(l, "host secret") {
		t.Fatalf("log shows the secret:\n%s", l)
	}
}

// fakeClock moves when the test says; its timers are real.
type fakeClock struct {
	scheduler.RealClock
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// A job re-assigned to the same worker while its first attempt is still
// dying is tracked by attempt: when attempt 1 finally ends, it does not
// take attempt 2's entry with it, so cancelling the job stops attempt 2.
func TestAgentKeepsReassignedAttemptApart(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newCoordinatorWith(t, fleet.Config{LostAfter: 10 * time.Second, RetryCap: 3, Clock: clock})
	started := make(chan int, 4)
	releaseFirst := make(chan struct{})
	secondStopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	metrics := NewMetrics(nil)
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 2, WorkDir: t.TempDir(), PollWait: time.Second, ShutdownGrace: time.Second,
		Metrics: metrics},
		c.conn, fakeExec{run: func(ctx context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
			started <- j.Attempt
			<-ctx.Done()
			if j.Attempt == 1 {
				// Slow to die: it ends after attempt 2 has started.
				<-releaseFirst
			} else {
				close(secondStopped)
			}
			return executor.Result{ExitCode: -1, Reason: "stopped"}, nil
		}}, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	id := submit(t, c)
	if got := <-started; got != 1 {
		t.Fatalf("first attempt %d", got)
	}
	// The coordinator loses the worker's session (missed heartbeats) and
	// re-queues the job; the worker registers again, is told to abandon
	// attempt 1 and pulls attempt 2 into its free slot.
	var second int
	for second == 0 {
		clock.Advance(11 * time.Second)
		c.f.Scheduler().Expire()
		select {
		case second = <-started:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if second != 2 {
		t.Fatalf("second attempt %d", second)
	}
	close(releaseFirst)
	// Attempt 1 has ended once its result was refused (the coordinator
	// gave it up) and the worker reports attempt 2 alone.
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := a.runningList()
		var m dto.Metric
		if err := metrics.jobs.WithLabelValues("command", "refused").Write(&m); err != nil {
			t.Fatal(err)
		}
		refused := m.GetCounter().GetValue()
		if refused == 1 && len(l) <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("running attempts %v, want attempt 2 only", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.f.Cancel(context.Background(), id, "not needed"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-secondStopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the cancelled attempt 2 was not stopped")
	}
}

// A second worker process started with a name already connected is
// refused with AlreadyExists, saying where the first is connected from,
// and backs off: it does not take the session over in a loop, and the
// first keeps running jobs.
func TestAgentSecondProcessWithTheSameNameIsRefused(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	exec := fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		return executor.Result{}, nil
	}}
	stop := c.runAgent(t, exec)
	defer stop()
	for len(c.registered()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	second := c.runAgent(t, exec)
	defer second()
	deadline := time.Now().Add(20 * time.Second)
	var refusal error
	for refusal == nil {
		for _, err := range c.registered()[1:] {
			if err == nil {
				t.Fatal("the second process registered under the name of the first")
			}
			refusal = err
		}
		if time.Now().After(deadline) {
			t.Fatal("the second process was never refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status.Code(refusal) != codes.AlreadyExists || !strings.Contains(refusal.Error(), "worker w1 is already connected from") {
		t.Fatalf("refusal: %v", refusal)
	}
	// The first still works; the second has not stormed meanwhile.
	id := submit(t, c)
	if j := c.wait(t, id, true); j.State != job.Succeeded {
		t.Fatalf("job %s: %s", id, j.State)
	}
	if n := len(c.registered()); n > 6 {
		t.Fatalf("%d registrations: the refused process does not back off", n)
	}
}

// An artifact over the coordinator's size limit is the job's own fault:
// the job fails with exit code 1 in its first attempt, saying why, and is
// not retried as an infrastructure failure.
func TestAgentOverLimitArtifactFailsTheJob(t *testing.T) {
	t.Parallel()
	c := newCoordinatorWith(t, fleet.Config{LostAfter: 10 * time.Second, RetryCap: 3, MaxArtifactSize: 10})
	stop := c.runAgent(t, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		os.WriteFile(filepath.Join(j.WorkDir, "big.bin"), []byte("twenty bytes of data"), 0o644)
		return executor.Result{}, nil
	}})
	defer stop()
	id := submit(t, c, "big.bin")
	j := c.wait(t, id, true)
	if j.State != job.Failed || j.ExitCode != 1 || j.Attempt != 1 || !strings.Contains(j.Reason, "big.bin") {
		t.Fatalf("job: %s, exit %d, attempt %d: %s; want failed, exit 1, attempt 1", j.State, j.ExitCode, j.Attempt, j.Reason)
	}
	if l := c.log(t, id); !strings.Contains(l, "artifact big.bin (20 bytes) is over the coordinator's limit of 10 bytes") {
		t.Fatalf("log:\n%s", l)
	}
}

// A file whose name holds control characters is not collected: the log
// says so with the name quoted, and no raw escape reaches the log.
func TestAgentRefusesArtifactNamesWithControlCharacters(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	stop := c.runAgent(t, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
		os.MkdirAll(filepath.Join(j.WorkDir, "out"), 0o755)
		os.WriteFile(filepath.Join(j.WorkDir, "out", "ok"), []byte("fine"), 0o644)
		os.WriteFile(filepath.Join(j.WorkDir, "out", "\x1b]0;title\x07"), []byte("bad"), 0o644)
		return executor.Result{}, nil
	}})
	defer stop()
	id := submit(t, c, "out/*")
	j := c.wait(t, id, true)
	if j.State != job.Succeeded || len(j.Artifacts) != 1 || j.Artifacts[0].Name != "out/ok" {
		t.Fatalf("job %s %s, artifacts %+v", j.State, j.Reason, j.Artifacts)
	}
	l := c.log(t, id)
	if !strings.Contains(l, `artifact "out/\x1b]0;title\a" refused: control character`) || strings.ContainsAny(l, "\x1b\x07") {
		t.Fatalf("log:\n%q", l)
	}
}

// While the coordinator is unreachable, a job's output waits on disk, not
// in memory, up to the spool's bound; what is over it is dropped and the
// log says how much, where. Once the coordinator is back the rest comes.
func TestAgentSpoolsLogOutputWithABound(t *testing.T) {
	t.Parallel()
	c := newCoordinator(t)
	workDir := t.TempDir()
	const bound = 1 << 20
	line := strings.Repeat("x", 1023) + "\n"
	var spooled int64
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{Name: "w1", Labels: map[string]string{"os": "linux"}, Slots: 1, WorkDir: workDir, PollWait: time.Second, ShutdownGrace: time.Second,
		LogSpoolMax: bound},
		c.conn, fakeExec{run: func(_ context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
			c.setLogsDown(true)
			io.WriteString(log, "first line\n")
			for i := 0; i < 3<<10; i++ { // 3 MiB
				io.WriteString(log, line)
			}
			entries, _ := os.ReadDir(filepath.Join(workDir, "log-spool"))
			for _, e := range entries {
				if info, err := e.Info(); err == nil {
					spooled += info.Size()
				}
			}
			c.setLogsDown(false)
			io.WriteString(log, "last line\n")
			return executor.Result{}, nil
		}}, hclog.NewNullLogger())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	id := submit(t, c)
	if j := c.wait(t, id, true); j.State != job.Succeeded || !strings.Contains(j.Reason, "log incomplete: ") || !strings.Contains(j.Reason, " bytes of output missing") {
		t.Fatalf("job %s: %q; want succeeded, saying the log is incomplete", j.State, j.Reason)
	}
	if spooled < bound/2 || spooled > bound {
		t.Errorf("%d bytes spooled on disk while the coordinator was unreachable, want up to %d", spooled, bound)
	}
	l := c.log(t, id)
	if !strings.Contains(l, "first line\n") || !strings.Contains(l, "last line\n") {
		t.Fatalf("log lacks its first or last line (%d bytes)", len(l))
	}
	if !strings.Contains(l, "bytes of output dropped here: the worker's log spool (1048576 bytes) was full") {
		t.Fatalf("log does not say output was dropped (%d bytes)", len(l))
	}
	if n := len(l); n > bound+64<<10 {
		t.Fatalf("log of %d bytes: more than the spool could hold", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(workDir, "log-spool")); len(entries) != 0 {
		t.Fatalf("spool files left: %v", entries)
	}
}

// A wrong token ends the worker at its first registration, with the
// coordinator's reason: retrying cannot help, an operator must fix it.
func TestAgentStopsOnABadToken(t *testing.T) {
	t.Parallel()
	c := newCoordinatorTokens(t, fleet.Config{LostAfter: 10 * time.Second, RetryCap: 2}, map[string]string{"w1": "right"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := New(Config{Name: "w1", Token: "wrong", Labels: map[string]string{"os": "linux"}, Slots: 1, WorkDir: t.TempDir(), PollWait: time.Second},
		c.conn, fakeExec{}, hclog.NewNullLogger())
	err := a.Run(ctx)
	if grpcerr.Classify(err) != grpcerr.BadToken || ctx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v), want a bad token at once", err, ctx.Err())
	}
	if n := len(c.registered()); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
}

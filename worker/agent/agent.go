// Package agent is the worker's side of the fleet protocol: it registers
// with the coordinator, heartbeats, pulls jobs into free slots, runs them
// through an executor, streams their logs, uploads their artifacts and
// reports how they ended.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/kiln-build/kiln/internal/artifactname"
	"github.com/kiln-build/kiln/internal/chunks"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/protocol"
	"github.com/kiln-build/kiln/internal/reconnect"
	cpb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
	"github.com/kiln-build/kiln/worker/executor"
)

// Config configures an agent.
type Config struct {
	Name    string
	Labels  map[string]string
	Slots   int
	WorkDir string
	Token   string
	// ShutdownGrace is how long a graceful shutdown waits for running jobs
	// before handing them back.
	ShutdownGrace time.Duration
	// PollWait is the long-poll wait.
	PollWait time.Duration
	// KeepWorkDirs keeps job directories after the job (debugging).
	KeepWorkDirs bool
	// RefreshLabels, when set, is asked every LabelsEvery for the labels
	// to advertise now (a chroot made or removed while the worker runs);
	// when they differ, the next heartbeat carries them.
	RefreshLabels func(ctx context.Context) (map[string]string, error)
	// CheckRefusal, when set, is asked when the coordinator cannot be
	// reached: a non-nil error (a refused TLS certificate) stops the
	// worker with it instead of retrying for ever.
	CheckRefusal func(ctx context.Context) error
	// LabelsEvery is how often RefreshLabels is asked; 0 means 30 s.
	LabelsEvery time.Duration
	// Metrics counts the jobs run; nil: kept but not registered.
	Metrics *Metrics
	// LogSpoolMax bounds the output of one job waiting to be sent (on
	// disk, in the work dir's log-spool/), e.g. while the coordinator
	// is unreachable; output over it is dropped, and the log says so.
	// 0 means 256 MiB.
	LogSpoolMax int64
}

// Agent runs jobs for one coordinator.
type Agent struct {
	cfg    Config
	client wpb.WorkerServiceClient
	exec   executor.Executor
	logger hclog.Logger

	// instance identifies this worker's work dir to the coordinator (see
	// RegisterRequest.instance); set by Run.
	instance string

	mu       sync.Mutex
	session  string
	interval time.Duration
	// running holds the attempts running here. A job can be handed to
	// this worker again while an attempt it was told to abandon is still
	// ending, so an entry is one attempt, never one job.
	running  map[attemptKey]*runningJob
	draining bool
	// labelsDirty: cfg.Labels changed since the coordinator last took
	// them.
	labelsDirty bool
	regMu       sync.Mutex
}

type attemptKey struct {
	id      string
	attempt int
}

type runningJob struct {
	cancel context.CancelFunc
}

// New makes an agent on a connection to the coordinator.
func New(cfg Config, conn grpc.ClientConnInterface, exec executor.Executor, logger hclog.Logger) *Agent {
	if cfg.PollWait <= 0 {
		cfg.PollWait = 20 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 30 * time.Second
	}
	if cfg.LabelsEvery <= 0 {
		cfg.LabelsEvery = 30 * time.Second
	}
	if cfg.LogSpoolMax <= 0 {
		cfg.LogSpoolMax = 256 << 20
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Agent{cfg: cfg, client: wpb.NewWorkerServiceClient(conn), exec: exec, logger: logger,
		running: map[attemptKey]*runningJob{}, interval: 5 * time.Second}
}

func (a *Agent) authed(ctx context.Context) context.Context {
	if a.cfg.Token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.cfg.Token)
}

func (a *Agent) runningList() []*wpb.RunningJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*wpb.RunningJob, 0, len(a.running))
	for k := range a.running {
		out = append(out, &wpb.RunningJob{JobId: k.id, Attempt: int32(k.attempt)})
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].JobId != out[k].JobId {
			return out[i].JobId < out[k].JobId
		}
		return out[i].Attempt < out[k].Attempt
	})
	return out
}

// register (re-)starts the session, unless another goroutine already did so
// after stale was seen.
func (a *Agent) register(ctx context.Context, stale string) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	a.mu.Lock()
	cur := a.session
	a.mu.Unlock()
	if cur != stale {
		return nil
	}
	backoff := 200 * time.Millisecond
	var refused time.Duration
	for {
		labels := a.labels()
		resp, err := a.client.Register(a.authed(ctx), &wpb.RegisterRequest{
			Name: a.cfg.Name, Labels: labels, Slots: int32(a.cfg.Slots), Running: a.runningList(), ProtocolVersion: protocol.Version,
			Instance: a.instance,
		})
		if err == nil {
			a.mu.Lock()
			a.session = resp.GetSessionId()
			if s := resp.GetHeartbeatIntervalSeconds(); s > 0 {
				a.interval = time.Duration(s) * time.Second
			}
			for _, r := range resp.GetAbandon() {
				if j, ok := a.running[attemptKey{r.GetJobId(), int(r.GetAttempt())}]; ok {
					j.cancel()
				}
			}
			a.mu.Unlock()
			a.logger.Info("registered", "labels", labelString(labels), "slots", a.cfg.Slots)
			return nil
		}
		if grpcerr.Classify(err) == grpcerr.Conflict {
			// Another process runs under this name: wait for it to go
			// away (or be stopped), slowly, rather than fight it.
			refused = min(max(2*refused, time.Second), 30*time.Second)
			a.logger.Error("refused: another worker process is connected under this name; retrying", "error", grpcerr.Message(err), "in", refused)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(refused):
			}
			continue
		}
		// A bad token, a protocol version the coordinator does not
		// speak, a refused certificate: an operator must act.
		if !grpcerr.Classify(err).Retryable() {
			return fmt.Errorf("register with the coordinator: %w", err)
		}
		if grpcerr.Classify(err) == grpcerr.Unavailable && a.cfg.CheckRefusal != nil {
			if perr := a.cfg.CheckRefusal(ctx); perr != nil {
				return fmt.Errorf("register with the coordinator: %w", perr)
			}
		}
		a.logger.Warn("coordinator unreachable; retrying", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = reconnect.Next(backoff)
	}
}

// labels returns the labels to advertise.
func (a *Agent) labels() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Labels
}

// refreshLabels asks RefreshLabels every LabelsEvery and, when the labels
// changed, has the next heartbeat carry them, until ctx ends.
func (a *Agent) refreshLabels(ctx context.Context) {
	t := time.NewTicker(a.cfg.LabelsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		labels, err := a.cfg.RefreshLabels(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Warn("cannot read the labels to advertise; keeping the old ones", "error", err)
			}
			continue
		}
		a.mu.Lock()
		if labelString(labels) != labelString(a.cfg.Labels) {
			a.cfg.Labels = labels
			a.labelsDirty = true
			a.logger.Info("labels changed; the next heartbeat advertises them", "labels", labelString(labels))
		}
		a.mu.Unlock()
	}
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k+"="+l[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (a *Agent) sessionID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session
}

// call runs fn with the current session, re-registering when the
// coordinator no longer knows it and retrying while it is unreachable, until
// ctx ends.
func (a *Agent) call(ctx context.Context, what string, fn func(ctx context.Context, session string) error) error {
	backoff := 100 * time.Millisecond
	for {
		s := a.sessionID()
		err := fn(ctx, s)
		k := grpcerr.Classify(err)
		if err == nil || !k.Retryable() {
			return err
		}
		if k == grpcerr.UnknownSession || k == grpcerr.Unauthenticated {
			if rerr := a.register(ctx, s); rerr != nil {
				return rerr
			}
			continue
		}
		a.logger.Debug("call failed; retrying", "call", what, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = reconnect.Next(backoff)
	}
}

// Run works until ctx ends, then shuts down gracefully: it stops pulling,
// waits up to ShutdownGrace for running jobs, hands back the rest and says
// goodbye.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("make work dir: %w", err)
	}
	inst, err := workerInstance(a.cfg.WorkDir)
	if err != nil {
		return err
	}
	a.instance = inst
	a.cleanWorkDir()
	// Jobs get their own context so that they can outlive ctx during the
	// grace period.
	jobsCtx, cancelJobs := context.WithCancel(context.Background())
	defer cancelJobs()
	if err := a.register(ctx, ""); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it could register
		}
		return err
	}
	hbCtx, stopHB := context.WithCancel(context.Background())
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); a.heartbeats(hbCtx) }()
	labelsDone := make(chan struct{})
	go func() {
		defer close(labelsDone)
		if a.cfg.RefreshLabels != nil {
			a.refreshLabels(ctx)
		}
	}()

	var wg sync.WaitGroup
	for i := 0; i < a.cfg.Slots; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.slot(ctx, jobsCtx)
		}()
	}
	<-ctx.Done()
	a.mu.Lock()
	a.draining = true
	n := len(a.running)
	a.mu.Unlock()
	if n > 0 {
		a.logger.Info("shutting down: waiting for running jobs", "jobs", n, "grace", a.cfg.ShutdownGrace)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(a.cfg.ShutdownGrace):
		a.logger.Warn("grace period over: handing running jobs back")
		cancelJobs()
		<-done
	}
	<-labelsDone
	stopHB()
	<-hbDone
	gctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.client.Goodbye(gctx, &wpb.GoodbyeRequest{SessionId: a.sessionID()}); err != nil {
		a.logger.Warn("goodbye", "error", err)
	}
	return nil
}

// workerInstance returns the instance id kept in the work dir, making it
// on first use: a worker restarted on the same work dir is the same
// instance and takes its old session over at once.
func workerInstance(workDir string) (string, error) {
	p := filepath.Join(workDir, "instance")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) == 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make worker instance id: %w", err)
	}
	id := hex.EncodeToString(b)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keep worker instance id in %s: %w", p, err)
	}
	return id, nil
}

// cleanWorkDir removes job directories a previous run left behind.
func (a *Agent) cleanWorkDir() {
	entries, _ := os.ReadDir(a.cfg.WorkDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "job-") || e.Name() == "log-spool" {
			_ = os.RemoveAll(filepath.Join(a.cfg.WorkDir, e.Name()))
		}
	}
}

func (a *Agent) heartbeats(ctx context.Context) {
	for {
		a.mu.Lock()
		interval, draining := a.interval, a.draining
		var labels *wpb.WorkerLabels
		if a.labelsDirty {
			labels = &wpb.WorkerLabels{Labels: a.cfg.Labels}
		}
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		var resp *wpb.HeartbeatResponse
		err := a.call(ctx, "heartbeat", func(ctx context.Context, s string) error {
			var err error
			cctx, cancel := context.WithTimeout(ctx, interval*2)
			defer cancel()
			resp, err = a.client.Heartbeat(cctx, &wpb.HeartbeatRequest{SessionId: s, Running: a.runningList(), Draining: draining, Labels: labels})
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Error("heartbeat", "error", err)
			}
			continue
		}
		if labels != nil {
			a.mu.Lock()
			// Unless they changed again meanwhile, the coordinator has them.
			if labelString(labels.GetLabels()) == labelString(a.cfg.Labels) {
				a.labelsDirty = false
			}
			a.mu.Unlock()
		}
		for _, c := range resp.GetCancel() {
			a.mu.Lock()
			if j, ok := a.running[attemptKey{c.GetJobId(), int(c.GetAttempt())}]; ok {
				a.logger.Info("coordinator cancelled job", "job_id", c.GetJobId(), "attempt", c.GetAttempt())
				j.cancel()
			}
			a.mu.Unlock()
		}
	}
}

// slot pulls and runs jobs one at a time until ctx ends.
func (a *Agent) slot(ctx, jobsCtx context.Context) {
	for ctx.Err() == nil {
		var asg *wpb.Assignment
		err := a.call(ctx, "pull", func(ctx context.Context, s string) error {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.PollWait+10*time.Second)
			defer cancel()
			resp, err := a.client.PullJob(cctx, &wpb.PullJobRequest{SessionId: s, WaitSeconds: int32(a.cfg.PollWait / time.Second)})
			if err != nil {
				return err
			}
			asg = resp.GetAssignment()
			return nil
		})
		if err != nil {
			if ctx.Err() == nil {
				a.logger.Error("pull", "error", err)
				time.Sleep(time.Second)
			}
			continue
		}
		if asg == nil {
			continue
		}
		a.runJob(jobsCtx, asg)
	}
}

func (a *Agent) runJob(parent context.Context, asg *wpb.Assignment) {
	id, attempt := asg.GetJobId(), int(asg.GetAttempt())
	logger := a.logger.With("job_id", id, "attempt", attempt)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	key := attemptKey{id, attempt}
	a.mu.Lock()
	a.running[key] = &runningJob{cancel: cancel}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, key)
		a.mu.Unlock()
	}()
	logger.Info("job started")
	kind := "command"
	if asg.GetSpec().GetPackageBuild() != nil {
		kind = "build"
	}
	started := time.Now()
	a.cfg.Metrics.running.Inc()
	defer a.cfg.Metrics.running.Dec()

	dir := filepath.Join(a.cfg.WorkDir, fmt.Sprintf("job-%s-%d", id, attempt))
	if !a.cfg.KeepWorkDirs {
		defer os.RemoveAll(dir)
	}
	lw := newLogWriter(a, id, attempt)
	req := &wpb.CompleteJobRequest{JobId: id, Attempt: int32(attempt)}
	if err := os.RemoveAll(dir); err == nil {
		err = os.MkdirAll(dir, 0o755)
		if err != nil {
			req.InfrastructureError, req.Reason = true, fmt.Sprintf("make job dir: %v", err)
		}
	}
	if !req.InfrastructureError {
		a.execute(ctx, asg, dir, lw, req)
	}
	lw.Close()
	if n := lw.Missing(); n > 0 {
		// The job says so, not only its log (whose note may be lost too).
		note := fmt.Sprintf("log incomplete: %d bytes of output missing", n)
		if req.Reason != "" {
			note = req.Reason + "; " + note
		}
		req.Reason = note
	}
	if parent.Err() != nil {
		// Handed back at shutdown: the coordinator re-queues it on goodbye.
		logger.Info("job handed back")
		a.cfg.Metrics.finished(kind, "handed_back", time.Since(started))
		return
	}
	err := a.call(parent, "complete", func(ctx context.Context, s string) error {
		req.SessionId = s
		_, err := a.client.CompleteJob(ctx, req)
		return err
	})
	result := "succeeded"
	switch {
	case req.InfrastructureError:
		result = "infrastructure"
	case req.Failed:
		result = "failed"
	}
	switch {
	case grpcerr.Classify(err) == grpcerr.StaleAttempt:
		logger.Warn("result refused: the coordinator gave this attempt up", "error", err)
		result = "refused"
	case err != nil:
		logger.Error("report result", "error", err)
	default:
		logger.Info("job finished", "exit_code", req.ExitCode, "failed", req.Failed, "infrastructure_error", req.InfrastructureError)
	}
	a.cfg.Metrics.finished(kind, result, time.Since(started))
}

// execute runs the job and fills in req.
func (a *Agent) execute(ctx context.Context, asg *wpb.Assignment, dir string, log io.Writer, req *wpb.CompleteJobRequest) {
	spec := asg.GetSpec()
	ej := executor.Job{ID: asg.GetJobId(), Attempt: int(asg.GetAttempt()), Command: spec.GetCommand(), Env: spec.GetEnv(),
		WorkDir: dir, Labels: spec.GetLabels(), Timeout: time.Duration(asg.GetTimeoutSeconds()) * time.Second}
	globs := spec.GetArtifactGlobs()
	if b := spec.GetPackageBuild(); b != nil {
		ej.Build = buildFromPB(b)
		globs = append(globs, "out/*", "base/*")
	}
	res, err := a.exec.Run(ctx, ej, log)
	if err != nil {
		fmt.Fprintf(log, "[kiln worker %s] infrastructure failure: %v\n", a.cfg.Name, err)
		req.InfrastructureError, req.Reason = true, err.Error()
		return
	}
	req.ExitCode, req.Failed, req.Reason = int32(res.ExitCode), res.Failed(), res.Reason
	if res.Record != nil {
		req.Record = recordToPB(res.Record)
	}
	arts, err := a.collect(ctx, dir, globs, asg, log)
	if grpcerr.Classify(err) == grpcerr.TooLarge {
		// Over the coordinator's limit: the job made it, so the job
		// fails; running it again would make it again.
		msg := grpcerr.Message(err)
		fmt.Fprintf(log, "[kiln worker %s] %s: the job fails\n", a.cfg.Name, msg)
		req.Failed, req.Reason, req.Artifacts = true, msg, arts
		if req.ExitCode == 0 {
			req.ExitCode = 1
		}
		return
	}
	if err != nil {
		fmt.Fprintf(log, "[kiln worker %s] artifact upload failed: %v\n", a.cfg.Name, err)
		req.InfrastructureError, req.Reason = true, "artifact upload: "+err.Error()
		return
	}
	req.Artifacts = arts
	if req.Record != nil {
		req.Record.Artifacts = arts
	}
}

// collect finds the artifacts matching globs inside dir and uploads them.
// Only regular files reached without a symlink in any path component
// count: everything is looked up through an os.Root on dir, so nothing
// the job made (a link to /, to a host directory, or swapped in while
// collecting) can make the worker read outside its work dir. A refused
// match is said in the log.
func (a *Agent) collect(ctx context.Context, dir string, globs []string, asg *wpb.Assignment, log io.Writer) ([]*cpb.Artifact, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open work dir: %w", err)
	}
	defer root.Close()
	seen := map[string]bool{}
	var out []*cpb.Artifact
	for _, g := range globs {
		clean := path.Clean(filepath.ToSlash(g))
		if !fs.ValidPath(clean) || clean == "." {
			fmt.Fprintf(log, "[kiln] artifact glob %q refused: it must stay inside the work dir\n", g)
			continue
		}
		if link := symlinkPrefix(root, clean); link != "" {
			fmt.Fprintf(log, "[kiln] artifact glob %q refused: %s is a symlink\n", g, link)
			continue
		}
		matches, err := fs.Glob(root.FS(), clean)
		if err != nil {
			return nil, fmt.Errorf("glob %q: %w", g, err)
		}
		for _, rel := range matches {
			if seen[rel] {
				continue
			}
			f, err := openArtifact(root, rel)
			if err != nil {
				if !errors.Is(err, errNotRegular) {
					fmt.Fprintf(log, "[kiln] artifact %s refused: %v\n", quoteIfNeeded(rel), err)
				}
				continue
			}
			if err := artifactname.Check(rel); err != nil {
				f.Close()
				fmt.Fprintf(log, "[kiln] artifact %q refused: %v\n", rel, err)
				continue
			}
			seen[rel] = true
			art, err := a.upload(ctx, f, rel, asg)
			f.Close()
			if err != nil {
				return out, err
			}
			fmt.Fprintf(log, "[kiln] artifact %s sha256 %s (%d bytes)\n", art.GetName(), art.GetSha256(), art.GetSize())
			out = append(out, art)
		}
	}
	return out, nil
}

// quoteIfNeeded returns name as it is when it is a plain name, else
// quoted, so that no control character of a file name reaches a log.
func quoteIfNeeded(name string) string {
	if artifactname.Check(name) != nil {
		return strconv.Quote(name)
	}
	return name
}

// errNotRegular marks a match that is a directory or a device: skipped
// without a word, as a glob like out/* matches subdirectories too.
var errNotRegular = errors.New("not a regular file")

// symlinkPrefix returns the first component of the glob's literal prefix
// (the part before any pattern character) that is a symlink, or "".
func symlinkPrefix(root *os.Root, glob string) string {
	parts := strings.Split(glob, "/")
	for i := range parts[:len(parts)-1] {
		if strings.ContainsAny(parts[i], `*?[\`) {
			return ""
		}
		p := strings.Join(parts[:i+1], "/")
		if st, err := root.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
			return p
		}
	}
	return ""
}

// openArtifact opens rel for reading when no component of it is a symlink
// and it is a regular file. The file opened is checked to be the one
// inspected, so a component swapped for a link in between is refused.
func openArtifact(root *os.Root, rel string) (*os.File, error) {
	parts := strings.Split(rel, "/")
	var st os.FileInfo
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		var err error
		if st, err = root.Lstat(p); err != nil {
			return nil, err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			if i == len(parts)-1 {
				return nil, errors.New("it is a symlink")
			}
			return nil, fmt.Errorf("%s is a symlink", p)
		}
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	got, err := f.Stat()
	if err != nil || !os.SameFile(st, got) {
		f.Close()
		return nil, errors.New("it changed while it was collected")
	}
	return f, nil
}

func fileDigest(f *os.File) (string, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func (a *Agent) upload(ctx context.Context, f *os.File, name string, asg *wpb.Assignment) (*cpb.Artifact, error) {
	sum, size, err := fileDigest(f)
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", name, err)
	}
	art := &cpb.Artifact{Name: name, Sha256: sum, Size: size}
	existed := false
	err = a.call(ctx, "upload", func(ctx context.Context, s string) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		body := io.LimitReader(f, size)
		stream, err := a.client.UploadArtifact(ctx)
		if err != nil {
			return err
		}
		// io.EOF from Send: the coordinator answered before the body,
		// because it holds the file already (or refused it); the answer
		// says which.
		err = stream.Send(&wpb.UploadArtifactRequest{Header: &wpb.ArtifactHeader{SessionId: s, JobId: asg.GetJobId(), Attempt: asg.GetAttempt(), Artifact: art}})
		if err == nil {
			err = chunks.Send(body, func(b []byte) error { return stream.Send(&wpb.UploadArtifactRequest{Chunk: b}) })
		}
		resp, rerr := stream.CloseAndRecv()
		if err != nil && !errors.Is(err, io.EOF) {
			return errors.Join(err, rerr)
		}
		existed = resp.GetExisted()
		return rerr
	})
	switch {
	case err == nil && existed:
		a.cfg.Metrics.artifactSkipped.Add(float64(size))
	case err == nil:
		a.cfg.Metrics.artifactBytes.Add(float64(size))
	}
	return art, err
}

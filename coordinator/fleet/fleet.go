// Package fleet is the coordinator's core: it accepts jobs, persists them
// before acknowledging, lets the scheduler hand them to workers, keeps logs
// and artifacts, and reports finished jobs to whoever listens.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/label"
)

// Errors callers branch on (the API maps them to gRPC codes).
var (
	ErrInvalid  = errors.New("invalid request")
	ErrNotFound = errors.New("not found")
	ErrRefused  = errors.New("refused")
	// ErrTooLarge: an upload over its limit, the job's own fault.
	ErrTooLarge = errors.New("over the size limit")
	// ErrNoSpace: the coordinator's disk (or database) is full.
	ErrNoSpace = errors.New("no space left")
)

// Config configures the fleet.
type Config struct {
	StateDir  string
	LostAfter time.Duration
	// ReclaimWindow is how long a job restored as running waits for its
	// worker to re-attach it; zero means LostAfter.
	ReclaimWindow  time.Duration
	RetryCap       int
	DefaultTimeout time.Duration
	// MaxArtifactSize bounds one uploaded artifact.
	MaxArtifactSize int64
	// MaxLogSize bounds the output kept of one job: over it, its first
	// and last MaxLogSize/2 bytes are kept, with a line where it was cut.
	// 0 means no bound.
	MaxLogSize int64
	Releases   map[string]Release
	Clock      scheduler.Clock
	// Started observes queue-to-start times: from queued to the assignment
	// being durable and on its way to the worker.
	Started func(time.Duration)
}

// Fleet is safe for concurrent use.
type Fleet struct {
	cfg    Config
	st     *store.Store
	sched  *scheduler.Scheduler
	logger hclog.Logger

	buildMu sync.Mutex // serialises build-key dedup and revisions
	// seals are the configured releases' seals as last read or set, with
	// the chroots a sealed one's base held then (see requeueSpec).
	sealMu sync.Mutex
	seals  map[string]sealSnapshot

	seq atomic.Int64

	logLocks [64]sync.Mutex
	notesMu  sync.Mutex
	logs     map[string]*liveLog // live jobs' logs, until final and durable

	logMu   sync.Mutex
	logSubs map[string]chan struct{}

	finMu    sync.Mutex
	finished []func(context.Context, *job.Job)
	// finCalls are the OnFinished calls under way; finCtx is their
	// context, cancelled when WaitFinished gives up waiting.
	finCalls  sync.WaitGroup
	finCtx    context.Context
	finCancel context.CancelFunc

	healthMu sync.Mutex
	writeErr error // of the last store write; nil once one succeeds

	reqLocks  requestLocks
	reqForgot atomic.Int64 // when expired request ids were last deleted (Unix ns)
}

// New opens the fleet on a store and restores its live jobs.
func New(ctx context.Context, cfg Config, st *store.Store, logger hclog.Logger) (*Fleet, error) {
	if cfg.Clock == nil {
		cfg.Clock = scheduler.RealClock{}
	}
	if cfg.MaxArtifactSize <= 0 {
		cfg.MaxArtifactSize = 4 << 30
	}
	if cfg.DefaultTimeout <= 0 {
		cfg.DefaultTimeout = 6 * time.Hour
	}
	for _, d := range []string{"logs", "artifacts", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o750); err != nil {
			return nil, fmt.Errorf("make state directory: %w", err)
		}
	}
	f := &Fleet{cfg: cfg, st: st, logger: logger, logSubs: map[string]chan struct{}{}, logs: map[string]*liveLog{}}
	f.finCtx, f.finCancel = context.WithCancel(context.WithoutCancel(ctx))
	f.sched = scheduler.New(scheduler.Config{
		LostAfter: cfg.LostAfter, ReclaimAfter: cfg.ReclaimWindow, RetryCap: cfg.RetryCap, NewID: randomID,
		Requeue: f.requeueSpec,
	}, cfg.Clock)
	seq, err := st.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	f.seq.Store(seq)
	live, err := st.Live(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.loadSeals(ctx, live); err != nil {
		return nil, err
	}
	f.sched.Restore(live)
	if err := f.resealRestored(ctx, live); err != nil {
		return nil, err
	}
	drained, err := st.Drained(ctx)
	if err != nil {
		return nil, err
	}
	f.sched.RestoreDrained(drained)
	if len(live) > 0 {
		logger.Info("restored live jobs", "count", len(live))
	}
	return f, nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// wrote records the result of a store write for Health and returns it.
func (f *Fleet) wrote(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller went away: says nothing of the store
	}
	f.healthMu.Lock()
	f.writeErr = err
	f.healthMu.Unlock()
	return err
}

// writeError wraps a failed write; a full disk is ErrNoSpace, with what
// to do.
func (f *Fleet) writeError(what string, err error) error {
	if store.IsFull(err) {
		return fmt.Errorf("%w: %s: the coordinator's disk is full (state dir %s); nothing was accepted: free space there and try again: %v",
			ErrNoSpace, what, f.cfg.StateDir, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Health reports whether the fleet can keep what it is given: the last
// store write succeeded and the state dir takes a file.
func (f *Fleet) Health(ctx context.Context) error {
	f.healthMu.Lock()
	err := f.writeErr
	f.healthMu.Unlock()
	if err != nil {
		return fmt.Errorf("the store cannot write: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(f.cfg.StateDir, "tmp"), "health-*")
	if err != nil {
		return fmt.Errorf("the state dir cannot be written: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(make([]byte, 4096))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("the state dir cannot be written: %w", err)
	}
	return nil
}

// Scheduler exposes the scheduler for metrics.
func (f *Fleet) Scheduler() *scheduler.Scheduler { return f.sched }

// Store exposes the store.
func (f *Fleet) Store() *store.Store { return f.st }

// OnFinished registers a function called (in a goroutine the fleet owns)
// with every job that reaches a final state. Its ctx ends when WaitFinished
// gives up waiting for it.
func (f *Fleet) OnFinished(fn func(ctx context.Context, j *job.Job)) {
	f.finMu.Lock()
	f.finished = append(f.finished, fn)
	f.finMu.Unlock()
}

// WaitFinished waits for the OnFinished calls under way (and those they
// start) to return. When ctx ends first, it cancels their context and
// waits for them to return. The composition root calls it once nothing
// can finish a job any more (servers and runners stopped), before the
// store closes.
func (f *Fleet) WaitFinished(ctx context.Context) {
	done := make(chan struct{})
	go func() { f.finCalls.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.logger.Warn("stopping the callbacks of finished jobs", "error", ctx.Err())
		f.finCancel()
		<-done
	}
}

// Run expires lost workers until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	interval := f.cfg.LostAfter / 4
	if interval < 100*time.Millisecond {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if ch := f.sched.Expire(); len(ch) > 0 {
				var notes []store.Note
				for _, j := range ch {
					f.logger.Warn("job re-queued or given up", "job_id", j.ID, "state", j.State.String(), "reason", j.Reason)
					notes = append(notes, f.note(ctx, j.ID, j.Reason))
				}
				if err := f.persist(ctx, ch, notes...); err != nil {
					f.logger.Error("persist expired jobs", "error", err)
				}
			}
		}
	}
}

// persist writes changed jobs with their log notes, wakes log followers of
// finished ones and tells listeners.
func (f *Fleet) persist(ctx context.Context, jobs []*job.Job, notes ...store.Note) error {
	if len(jobs) == 0 && len(notes) == 0 {
		return nil
	}
	err := f.wrote(f.st.Write(ctx, jobs, notes))
	if err == nil {
		f.forgetNotes(jobs)
	}
	for _, j := range jobs {
		if j.State.Final() {
			f.notifyLog(j.ID)
			f.finMu.Lock()
			fns := append([]func(context.Context, *job.Job){}, f.finished...)
			f.finMu.Unlock()
			for _, fn := range fns {
				c := j.Clone()
				f.finCalls.Go(func() { fn(f.finCtx, c) })
			}
		}
	}
	return err
}

// Submit validates, persists and queues a job. A package build whose build
// key already succeeded (or is queued or running) is not queued again unless
// forced: the earlier job is returned with dedup true.
func (f *Fleet) Submit(ctx context.Context, spec job.Spec) (j *job.Job, dedup bool, err error) {
	return f.submit(ctx, spec, "", nil)
}

// submit is Submit for a job that may rebuild an earlier one; everything
// about the job is set before its first write, since a worker may finish it
// at any moment after. A new job is written with req, when given, in the
// same transaction.
func (f *Fleet) submit(ctx context.Context, spec job.Spec, rebuildOf string, req *store.Request) (j *job.Job, dedup bool, err error) {
	if err := spec.Validate(); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	j = &job.Job{Spec: spec, State: job.Queued, CreatedAt: f.cfg.Clock.Now(), RebuildOf: rebuildOf}
	if spec.Build != nil {
		f.buildMu.Lock()
		defer f.buildMu.Unlock()
		if _, ok := spec.Labels["target"]; !ok {
			spec.Labels["target"] = spec.Build.Target
		}
		if spec.FairnessGroup == "" {
			j.Spec.FairnessGroup = spec.Build.Release
		}
		// A build that names no profiles or options gets its release's
		// and target's, before the key is made: they are part of it. A
		// rebuild keeps exactly what its original had.
		if b := spec.Build; rebuildOf == "" && len(b.Profiles) == 0 && len(b.Options) == 0 {
			if rel, ok := f.cfg.Releases[b.Release]; ok {
				b.Profiles, b.Options = rel.BuildDefaults(b.Target)
			}
		}
		j.BuildKey = spec.Build.Key()
		prev, err := f.st.ByBuildKey(ctx, j.BuildKey)
		if err != nil {
			return nil, false, err
		}
		if prev != nil && !spec.Force && spec.Build.Publish && !prev.Spec.Build.Publish && !prev.Verify {
			reused, err := f.publishReused(ctx, prev)
			if err != nil || reused != nil {
				return reused, reused != nil, err
			}
			prev = nil // it did not succeed after all: build anew
		}
		if prev != nil && !spec.Force && prev.Spec.SupersedeKey != "" && spec.SupersedeKey != prev.Spec.SupersedeKey {
			// Another change's review, or a build without a change (the
			// CLI), needs the same build: the first change's next patch
			// set or abandonment must not cancel it for the other.
			who := spec.SupersedeKey
			if who == "" {
				who = "a request without a supersede key (" + spec.Origin + ")"
			}
			if live, err := f.sched.ShareLive(prev.ID, false); err == nil {
				if err := f.persist(ctx, []*job.Job{live}, f.note(ctx, live.ID, "also built for "+who+": no longer superseded by "+prev.Spec.SupersedeKey)); err != nil {
					return nil, false, err
				}
				return live, true, nil
			}
		}
		if prev != nil && !spec.Force {
			if live := f.sched.Live(prev.ID); live != nil {
				return live, true, nil
			}
			// Not live: it has succeeded, or it has just ended and its
			// final state is on its way to the store.
			cur, err := f.settled(ctx, prev.ID)
			if err != nil {
				return nil, false, err
			}
			if cur.State == job.Succeeded {
				return cur, true, nil
			}
			prev = nil // it ended without success: build anew
		}
		j.Rebuild = prev != nil
		if err := f.assignRevision(ctx, j); err != nil {
			return nil, false, err
		}
		if err := f.markSealed(ctx, &j.Spec); err != nil {
			return nil, false, err
		}
	}
	if j.Spec.Timeout == 0 {
		j.Spec.Timeout = f.cfg.DefaultTimeout
	}
	j.Seq = f.seq.Add(1)
	j.ID = strconv.FormatInt(j.Seq, 10)
	var put error
	if req != nil {
		req.JobID = j.ID
		put = f.st.PutRequest(ctx, j, *req)
	} else {
		put = f.st.Put(ctx, j)
	}
	if err := f.wrote(put); err != nil {
		// Unless another job took the next id meanwhile, this one is not
		// used up.
		f.seq.CompareAndSwap(j.Seq, j.Seq-1)
		return nil, false, f.writeError("persist job", err)
	}
	f.newLog(j.ID)
	// The new job is already durable as queued. Writing it again here would
	// cost a second commit on every submission and could race with its own
	// assignment and completion: when Enqueue hands it to a waiting worker,
	// Pull persists it as running and the worker may complete it before
	// this goroutine's write lands, which would then overwrite the final
	// state with "running". Only the older jobs it superseded are written.
	mine, others := splitChanged(j.ID, f.sched.Enqueue(j))
	if err := f.persistCancelled(ctx, others); err != nil {
		return nil, false, err
	}
	f.logger.Debug("job queued", "job_id", j.ID, "labels", label.String(spec.Labels))
	return mine, false, nil
}

// publishReused makes an earlier build made without publishing (a review
// build) be published, because a build with publishing asks for the same
// sources and recipe (a merge of the reviewed commit): nothing is built
// again. A live build is published when it succeeds; a succeeded one now,
// through the OnFinished listeners, as if it had just finished. It returns
// nil when the build turned out not to succeed.
func (f *Fleet) publishReused(ctx context.Context, prev *job.Job) (*job.Job, error) {
	const why = "to be published: a build with publishing asked for the same sources and recipe"
	if live, err := f.sched.ShareLive(prev.ID, true); err == nil {
		if err := f.persist(ctx, []*job.Job{live}, f.note(ctx, live.ID, why)); err != nil {
			return nil, err
		}
		return live, nil
	}
	// Not live: the change is written over its final state.
	cur, err := f.settled(ctx, prev.ID)
	if err != nil || cur.State != job.Succeeded {
		return nil, err
	}
	b := *cur.Spec.Build
	b.Publish = true
	cur.Spec.Build = &b
	cur.Spec.SupersedeKey = ""
	if err := f.persist(ctx, []*job.Job{cur}, f.note(ctx, cur.ID, why)); err != nil {
		return nil, fmt.Errorf("persist job: %w", err)
	}
	return cur, nil
}

// settled returns the final state of a job that is no longer live: in the
// store, or on its way there (a result being written).
func (f *Fleet) settled(ctx context.Context, id string) (*job.Job, error) {
	for wait := time.Millisecond; ; wait *= 2 {
		cur, err := f.st.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if cur.State.Final() {
			return cur, nil
		}
		if wait > 5*time.Second {
			return nil, fmt.Errorf("job %s is neither live nor finished", id)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (f *Fleet) assignRevision(ctx context.Context, j *job.Job) error {
	b := j.Spec.Build
	rel, ok := f.cfg.Releases[b.Release]
	rev, err := f.st.NextRevision(ctx, b.Release, b.Package)
	if err != nil {
		return err
	}
	b.Revision = rev
	pattern := "+kiln{revision}"
	if ok {
		if strings.EqualFold(rel.Targets[b.Target], "rpm") {
			if rel.RPMSuffix != "" {
				pattern = rel.RPMSuffix
			} else {
				pattern = ".kiln{revision}"
			}
		} else if rel.DebSuffix != "" {
			pattern = rel.DebSuffix
		}
	}
	b.VersionSuffix = strings.ReplaceAll(pattern, "{revision}", strconv.FormatInt(rev, 10))
	return nil
}

// withLive overlays the scheduler's view of a live job.
func (f *Fleet) withLive(j *job.Job) *job.Job {
	if l := f.sched.Live(j.ID); l != nil {
		return l
	}
	return j
}

// Get returns a job and, when queued, why it waits.
func (f *Fleet) Get(ctx context.Context, id string) (*job.Job, string, error) {
	if l := f.sched.Live(id); l != nil {
		return l, f.sched.WaitingReason(id), nil
	}
	j, err := f.st.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return j, "", err
}

// List lists jobs newest first.
func (f *Fleet) List(ctx context.Context, states []job.State, limit int) ([]*job.Job, error) {
	jobs, err := f.st.List(ctx, states, limit)
	for i, j := range jobs {
		jobs[i] = f.withLive(j)
	}
	return jobs, err
}

// Cancel cancels a live job; a finished job is returned unchanged.
func (f *Fleet) Cancel(ctx context.Context, id, reason string) (*job.Job, error) {
	if reason == "" {
		reason = "cancelled by user"
	}
	j, err := f.sched.Cancel(id, reason)
	if errors.Is(err, scheduler.ErrNotFound) {
		j, _, err = f.Get(ctx, id)
		return j, err
	}
	if err != nil {
		return nil, err
	}
	return j, f.persist(ctx, []*job.Job{j}, f.note(ctx, id, reason))
}

// CancelBySupersedeKey cancels every live job with the supersede key, queued
// or running, with reason, and returns them as cancelled. A change that is
// closed (abandoned, deleted) cancels its review builds this way.
func (f *Fleet) CancelBySupersedeKey(ctx context.Context, key, reason string) ([]*job.Job, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: cancel by supersede key: the key is empty", ErrInvalid)
	}
	if reason == "" {
		reason = "cancelled with every build of supersede key " + key
	}
	jobs := f.sched.CancelBySupersedeKey(key, reason)
	return jobs, f.persistCancelled(ctx, jobs)
}

// persistCancelled persists jobs the scheduler changed, each cancelled one
// with a log note giving the reason.
func (f *Fleet) persistCancelled(ctx context.Context, jobs []*job.Job) error {
	var notes []store.Note
	for _, j := range jobs {
		if j.State == job.Canceled {
			notes = append(notes, f.note(ctx, j.ID, j.Reason))
		}
	}
	return f.persist(ctx, jobs, notes...)
}

// SetPublish records a job's publish state.
func (f *Fleet) SetPublish(ctx context.Context, id, state string) error {
	j, err := f.st.Get(ctx, id)
	if err != nil {
		return err
	}
	j.Publish = state
	return f.st.Put(ctx, j)
}

// Update writes a finished job's changed fields (e.g. differing artifacts).
func (f *Fleet) Update(ctx context.Context, j *job.Job) error { return f.st.Put(ctx, j) }

// Package scheduler decides which worker runs which job. It keeps the live
// jobs (queued and running) and the worker sessions in memory, does no I/O,
// and reports every job it changes so that the caller can persist it.
//
// Workers pull: a pull takes the best matching queued job or waits for one.
// Among the jobs a worker's labels satisfy, the highest priority goes first;
// at equal priority, fairness groups (releases) take turns, least recently
// served first; within a group, oldest first.
package scheduler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
)

// Clock tells the time and starts timers; tests inject a fake one
// (clocktest.Clock) so that what waits on time waits on the test.
type Clock interface {
	Now() time.Time
	// NewTimer starts a timer that fires once, d from now: c receives the
	// time then, unless stop (which reports whether it stopped the timer
	// before it fired) was called first.
	NewTimer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

// RealClock is the wall clock and the runtime's timers.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer is time.NewTimer.
func (RealClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Config tunes the scheduler.
type Config struct {
	// LostAfter is how long a session may go without a heartbeat before its
	// worker is declared lost and its jobs re-queued.
	LostAfter time.Duration
	// ReclaimAfter is how long a job restored as running after a restart
	// waits for its worker to register and claim it before it is
	// re-queued; zero means LostAfter.
	ReclaimAfter time.Duration
	// RetryCap is how many attempts a job gets before an infrastructure
	// failure becomes final.
	RetryCap int
	// NewID makes session ids.
	NewID func() string
	// Started, when set, is called with the queue-to-start time of every
	// assignment.
	Started func(wait time.Duration)
	// Requeue, when set, may rewrite the spec of a job going back to the
	// queue after an infrastructure failure (a copy: its Build and Labels
	// may be replaced or changed), as Respec does for queued jobs: it says
	// whether it changed it, or why the job cannot run again, which ends
	// it Failed. It is called with the scheduler's lock held: it must not
	// call the scheduler, nor wait on anything that does.
	Requeue func(spec *job.Spec) (bool, error)
}

// snap stamps j with a new version and returns a copy to persist. Called
// with s.mu held, so versions follow the order of the changes; they are
// wall-clock nanoseconds so that they also exceed what a previous process
// wrote.
func (s *Scheduler) snap(j *job.Job) *job.Job {
	v := time.Now().UnixNano()
	if v <= s.version {
		v = s.version + 1
	}
	s.version = v
	j.Version = v
	return j.Clone()
}

// Errors callers branch on.
var (
	// ErrUnknownSession means the session expired or never existed; the
	// worker must register again.
	ErrUnknownSession = errors.New("unknown worker session: register again")
	// ErrStale means a call names an attempt the coordinator no longer
	// considers running on that worker; its result is refused.
	ErrStale = errors.New("attempt is no longer assigned to this worker")
	// ErrNotFound means no live job has that id.
	ErrNotFound = errors.New("no live job with that id")
)

// RunningJob names one attempt of one job.
type RunningJob struct {
	JobID   string
	Attempt int
}

// Outcome is how an attempt ended, as a worker reports it.
type Outcome struct {
	ExitCode  int
	Failed    bool
	InfraErr  bool
	Reason    string
	Artifacts []job.Artifact
	Record    *job.Record
}

// WorkerState is what the scheduler thinks of a worker.
type WorkerState string

// Worker states.
const (
	WorkerOnline   WorkerState = "online"
	WorkerDraining WorkerState = "draining"
	WorkerLost     WorkerState = "lost"
	WorkerOffline  WorkerState = "offline"
)

// WorkerInfo describes a worker for listings.
type WorkerInfo struct {
	Name     string
	Labels   map[string]string
	Slots    int
	State    WorkerState
	Running  []string
	LastSeen time.Time
}

type worker struct {
	name     string
	labels   map[string]string
	slots    int
	drained  bool // an operator asked
	state    WorkerState
	session  *session
	lastSeen time.Time
}

type session struct {
	id       string
	instance string // the worker process's instance, see RegisterAs
	addr     string // where it registered from
	w        *worker
	lastSeen time.Time
	draining bool // the worker itself is shutting down
	running  map[string]*job.Job
	assigned map[string]time.Time // when each running job was handed out
	cancel   []RunningJob
}

type waiter struct {
	s  *session
	ch chan *job.Job
}

type orphan struct {
	j        *job.Job
	deadline time.Time
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	cfg   Config
	clock Clock

	mu        sync.Mutex
	version   int64
	live      map[string]*job.Job
	queues    map[string]*labelQueue
	enqueued  map[string]time.Time
	supersede map[string]map[string]*job.Job
	served    map[string]uint64
	tick      uint64
	workers   map[string]*worker
	sessions  map[string]*session
	waiters   []*waiter
	orphans   map[string]orphan
}

// New makes a scheduler.
func New(cfg Config, clock Clock) *Scheduler {
	if cfg.RetryCap <= 0 {
		cfg.RetryCap = 3
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = 30 * time.Second
	}
	if cfg.ReclaimAfter <= 0 {
		cfg.ReclaimAfter = cfg.LostAfter
	}
	return &Scheduler{
		cfg: cfg, clock: clock,
		live:      map[string]*job.Job{},
		queues:    map[string]*labelQueue{},
		enqueued:  map[string]time.Time{},
		supersede: map[string]map[string]*job.Job{},
		served:    map[string]uint64{},
		workers:   map[string]*worker{},
		sessions:  map[string]*session{},
		orphans:   map[string]orphan{},
	}
}

// Restore loads live jobs after a restart. Queued jobs go back in the queue;
// running ones wait LostAfter for their worker to re-register and claim them,
// then are re-queued.
func (s *Scheduler) Restore(jobs []*job.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for _, j := range jobs {
		s.live[j.ID] = j
		s.trackSupersede(j)
		switch j.State {
		case job.Queued:
			s.push(j, j.CreatedAt)
		case job.Running:
			s.orphans[j.ID] = orphan{j: j, deadline: now.Add(s.cfg.ReclaimAfter)}
		}
	}
}

// Enqueue adds a new job. Older live jobs with the same supersede key are
// cancelled; they are returned with the new job among the changed jobs.
func (s *Scheduler) Enqueue(j *job.Job) []*job.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []*job.Job
	if key := j.Spec.SupersedeKey; key != "" {
		for _, old := range s.supersede[key] {
			if old.Seq < j.Seq {
				changed = append(changed, s.cancelLocked(old, "superseded by job "+j.ID))
			}
		}
	}
	j.State = job.Queued
	s.live[j.ID] = j
	s.trackSupersede(j)
	now := s.clock.Now()
	if !s.handOff(j, now) {
		s.push(j, now)
	}
	return append(changed, s.snap(j))
}

func (s *Scheduler) trackSupersede(j *job.Job) {
	if key := j.Spec.SupersedeKey; key != "" {
		if s.supersede[key] == nil {
			s.supersede[key] = map[string]*job.Job{}
		}
		s.supersede[key][j.ID] = j
	}
}

// handOff gives j to a waiting puller that can take it.
func (s *Scheduler) handOff(j *job.Job, now time.Time) bool {
	for i, w := range s.waiters {
		if !s.canRun(w.s) || !matches(j.Spec.Labels, w.s.w.labels) {
			continue
		}
		s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
		s.enqueued[j.ID] = now
		j.QueuedAt = now
		s.assign(w.s, j, now)
		w.ch <- s.snap(j)
		return true
	}
	return false
}

func (s *Scheduler) canRun(ss *session) bool {
	return ss != nil && !ss.draining && !ss.w.drained && s.sessions[ss.id] == ss && len(ss.running) < ss.w.slots
}

func (s *Scheduler) push(j *job.Job, at time.Time) {
	key := label.String(j.Spec.Labels)
	q := s.queues[key]
	if q == nil {
		q = &labelQueue{labels: j.Spec.Labels, groups: map[string]*jobHeap{}}
		s.queues[key] = q
	}
	h := q.groups[j.Spec.FairnessGroup]
	if h == nil {
		h = &jobHeap{}
		q.groups[j.Spec.FairnessGroup] = h
	}
	heap.Push(h, j)
	q.size++
	s.enqueued[j.ID] = at
	j.QueuedAt = at
}

func (s *Scheduler) assign(ss *session, j *job.Job, now time.Time) {
	j.State = job.Running
	j.Attempt++
	j.Worker = ss.w.name
	j.StartedAt = now
	j.Reason = ""
	ss.running[j.ID] = j
	ss.assigned[j.ID] = now
	s.tick++
	s.served[j.Spec.FairnessGroup] = s.tick
	if at, ok := s.enqueued[j.ID]; ok {
		delete(s.enqueued, j.ID)
		if s.cfg.Started != nil {
			s.cfg.Started(now.Sub(at))
		}
	}
}

// next pops the best queued job the session's worker can run.
func (s *Scheduler) next(ss *session) *job.Job {
	var best *job.Job
	var bestQ *labelQueue
	var bestH *jobHeap
	for _, q := range s.queues {
		if q.size == 0 || !matches(q.labels, ss.w.labels) {
			continue
		}
		for g, h := range q.groups {
			for h.Len() > 0 && (*h)[0].State != job.Queued {
				heap.Pop(h) // cancelled while queued
			}
			if h.Len() == 0 {
				delete(q.groups, g)
				continue
			}
			c := (*h)[0]
			if best == nil || s.better(c, best) {
				best, bestQ, bestH = c, q, h
			}
		}
	}
	if best == nil {
		return nil
	}
	heap.Pop(bestH)
	bestQ.size--
	return best
}

func (s *Scheduler) better(a, b *job.Job) bool {
	if a.Spec.Priority != b.Spec.Priority {
		return a.Spec.Priority > b.Spec.Priority
	}
	if ga, gb := s.served[a.Spec.FairnessGroup], s.served[b.Spec.FairnessGroup]; a.Spec.FairnessGroup != b.Spec.FairnessGroup && ga != gb {
		return ga < gb
	}
	return a.Seq < b.Seq
}

// matches reports whether a worker's labels satisfy a job's. A worker label
// may list alternatives separated by "|" (target=bookworm|centos7): a worker
// with several buildroots offers each.
func matches(want, have map[string]string) bool {
	for k, v := range want {
		if !hasValue(have[k], v) {
			return false
		}
	}
	return true
}

func hasValue(have, v string) bool {
	if have == v {
		return true
	}
	for have != "" {
		var alt string
		alt, have, _ = strings.Cut(have, "|")
		if alt == v {
			return true
		}
	}
	return false
}

// Pull hands the session a job, waiting up to wait for one. It returns nil
// when none came.
func (s *Scheduler) Pull(ctx context.Context, id string, wait time.Duration) (*job.Job, error) {
	s.mu.Lock()
	ss := s.sessions[id]
	if ss == nil {
		s.mu.Unlock()
		return nil, ErrUnknownSession
	}
	now := s.clock.Now()
	ss.lastSeen, ss.w.lastSeen = now, now
	if !s.canRun(ss) {
		s.mu.Unlock()
		return nil, nil
	}
	if j := s.next(ss); j != nil {
		s.assign(ss, j, now)
		c := s.snap(j)
		s.mu.Unlock()
		return c, nil
	}
	if wait <= 0 {
		s.mu.Unlock()
		return nil, nil
	}
	w := &waiter{s: ss, ch: make(chan *job.Job, 1)}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()

	fired, stop := s.clock.NewTimer(wait)
	defer stop()
	select {
	case j := <-w.ch:
		return j, nil
	case <-fired:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeWaiter(w)
	select {
	case j, ok := <-w.ch:
		if !ok {
			// The session was dropped (goodbye, drain, lost) while waiting.
			return nil, ctx.Err()
		}
		if ctx.Err() != nil {
			// The puller is gone: give the job back, unless it was
			// cancelled meanwhile.
			delete(ss.running, j.ID)
			delete(ss.assigned, j.ID)
			if lj := s.live[j.ID]; lj != nil && lj.State == job.Running {
				lj.Attempt--
				lj.State = job.Queued
				lj.Worker = ""
				s.push(lj, s.clock.Now())
			}
			return nil, ctx.Err()
		}
		return j, nil
	default:
		return nil, ctx.Err()
	}
}

func (s *Scheduler) removeWaiter(w *waiter) {
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return
		}
	}
}

func (s *Scheduler) dropWaiters(ss *session) {
	out := s.waiters[:0]
	for _, w := range s.waiters {
		if w.s != ss {
			out = append(out, w)
		} else {
			close(w.ch)
		}
	}
	s.waiters = out
}

// CheckAttempt reports whether the attempt is the one running on the
// session, for uploads and logs that precede completion.
func (s *Scheduler) CheckAttempt(id, jobID string, attempt int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return ErrUnknownSession
	}
	j, ok := ss.running[jobID]
	if !ok || j.Attempt != attempt {
		return fmt.Errorf("job %s attempt %d: %w", jobID, attempt, ErrStale)
	}
	return nil
}

// Complete records the end of an attempt, exactly once. An infrastructure
// error re-queues the job unless it has used up its retries.
func (s *Scheduler) Complete(id, jobID string, attempt int, o Outcome) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil, ErrUnknownSession
	}
	j, ok := ss.running[jobID]
	if !ok || j.Attempt != attempt {
		return nil, fmt.Errorf("job %s attempt %d: %w", jobID, attempt, ErrStale)
	}
	delete(ss.running, jobID)
	delete(ss.assigned, jobID)
	now := s.clock.Now()
	if o.InfraErr {
		return s.requeue(j, fmt.Sprintf("worker %s: %s", ss.w.name, o.Reason)), nil
	}
	j.ExitCode = o.ExitCode
	j.Reason = o.Reason
	j.Artifacts = o.Artifacts
	j.Record = o.Record
	if o.Failed || o.ExitCode != 0 {
		j.State = job.Failed
		if j.Reason == "" {
			j.Reason = fmt.Sprintf("exit status %d", o.ExitCode)
		}
	} else {
		j.State = job.Succeeded
	}
	s.finish(j, now)
	return s.snap(j), nil
}

// requeue puts a job back in the queue after an infrastructure failure, or
// ends it with Error when it has used up its attempts.
func (s *Scheduler) requeue(j *job.Job, reason string) *job.Job {
	now := s.clock.Now()
	if j.Attempt >= s.cfg.RetryCap {
		j.State = job.Error
		j.Reason = fmt.Sprintf("%s; gave up after %d attempts (retry cap)", reason, j.Attempt)
		s.finish(j, now)
		return s.snap(j)
	}
	if s.cfg.Requeue != nil {
		spec := cloneSpec(j.Spec)
		changed, err := s.cfg.Requeue(&spec)
		if err != nil {
			j.State = job.Failed
			j.Reason = fmt.Sprintf("%s; not run again: %v", reason, err)
			s.finish(j, now)
			return s.snap(j)
		}
		if changed {
			j.Spec = spec
		}
	}
	j.State = job.Queued
	j.Reason = reason
	j.Worker = ""
	if !s.handOff(j, now) {
		s.push(j, now)
	}
	return s.snap(j)
}

func (s *Scheduler) finish(j *job.Job, now time.Time) {
	j.FinishedAt = now
	delete(s.live, j.ID)
	delete(s.orphans, j.ID)
	delete(s.enqueued, j.ID)
	if key := j.Spec.SupersedeKey; key != "" {
		delete(s.supersede[key], j.ID)
		if len(s.supersede[key]) == 0 {
			delete(s.supersede, key)
		}
	}
}

// Cancel cancels a live job.
func (s *Scheduler) Cancel(jobID, reason string) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.live[jobID]
	if j == nil {
		return nil, ErrNotFound
	}
	return s.cancelLocked(j, reason), nil
}

// CancelBySupersedeKey cancels every live job, queued or running, whose
// supersede key is key: what a change's builds share once the change is
// closed and no newer build will supersede them. It returns the cancelled
// jobs, oldest first; none when no live job has the key.
func (s *Scheduler) CancelBySupersedeKey(key, reason string) []*job.Job {
	if key == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	live := make([]*job.Job, 0, len(s.supersede[key]))
	for _, j := range s.supersede[key] {
		live = append(live, j)
	}
	sort.Slice(live, func(i, k int) bool { return live[i].Seq < live[k].Seq })
	changed := make([]*job.Job, 0, len(live))
	for _, j := range live {
		changed = append(changed, s.cancelLocked(j, reason))
	}
	return changed
}

// SetLabels replaces the labels of a session's worker (a chroot made or
// removed while it runs). Its waiting long polls return empty, so that the
// worker polls again and finds what the new labels match.
func (s *Scheduler) SetLabels(id string, labels map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return ErrUnknownSession
	}
	ss.w.labels = labels
	s.dropWaiters(ss)
	return nil
}

// ShareLive marks a live package build as wanted beyond the request that
// started it: by another change's review build or, with publish, by a
// build with publishing (a merge), which publishes it when it succeeds.
// The build leaves its supersede key, so that the first change's next patch
// set or its abandonment no longer cancels it. It returns the changed job
// to persist, or ErrNotFound when the job is not live.
func (s *Scheduler) ShareLive(jobID string, publish bool) (*job.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.live[jobID]
	if j == nil || j.Spec.Build == nil {
		return nil, ErrNotFound
	}
	if publish {
		// Clones share the Build: replace it rather than change it.
		b := *j.Spec.Build
		b.Publish = true
		j.Spec.Build = &b
	}
	if key := j.Spec.SupersedeKey; key != "" {
		delete(s.supersede[key], j.ID)
		if len(s.supersede[key]) == 0 {
			delete(s.supersede, key)
		}
		j.Spec.SupersedeKey = ""
	}
	return s.snap(j), nil
}

func (s *Scheduler) cancelLocked(j *job.Job, reason string) *job.Job {
	if j.State == job.Queued {
		if q := s.queues[label.String(j.Spec.Labels)]; q != nil {
			q.size-- // the heap drops it lazily
		}
	}
	if j.State == job.Running {
		for _, ss := range s.sessions {
			if _, ok := ss.running[j.ID]; ok {
				delete(ss.running, j.ID)
				delete(ss.assigned, j.ID)
				ss.cancel = append(ss.cancel, RunningJob{JobID: j.ID, Attempt: j.Attempt})
			}
		}
	}
	j.State = job.Canceled
	j.Reason = reason
	s.finish(j, s.clock.Now())
	return s.snap(j)
}

// Goodbye ends a session; its running jobs are re-queued.
func (s *Scheduler) Goodbye(id string) []*job.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil
	}
	delete(s.sessions, id)
	s.dropWaiters(ss)
	ss.w.state = WorkerOffline
	ss.w.session = nil
	var changed []*job.Job
	for _, j := range ss.running {
		changed = append(changed, s.requeue(j, fmt.Sprintf("worker %s shut down before finishing", ss.w.name)))
	}
	return changed
}

// Expire declares lost the sessions that missed heartbeats and re-queues
// their jobs, and re-queues running jobs restored after a restart whose
// worker did not come back.
func (s *Scheduler) Expire() []*job.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var changed []*job.Job
	for id, ss := range s.sessions {
		if now.Sub(ss.lastSeen) <= s.cfg.LostAfter {
			continue
		}
		delete(s.sessions, id)
		s.dropWaiters(ss)
		ss.w.state = WorkerLost
		ss.w.session = nil
		ids := make([]string, 0, len(ss.running))
		for jid := range ss.running {
			ids = append(ids, jid)
		}
		sort.Strings(ids)
		for _, jid := range ids {
			changed = append(changed, s.requeue(ss.running[jid], fmt.Sprintf("worker %s lost (no heartbeat for %s)", ss.w.name, now.Sub(ss.lastSeen).Round(time.Second))))
		}
	}
	for id, o := range s.orphans {
		if now.After(o.deadline) {
			delete(s.orphans, id)
			changed = append(changed, s.requeue(o.j, fmt.Sprintf("worker %s did not reclaim it after a coordinator restart", o.j.Worker)))
		}
	}
	return changed
}

// Stats is a snapshot for metrics.
type Stats struct {
	// QueueDepth by label set (k=v,k=v).
	QueueDepth map[string]int
	Running    int
	Workers    map[WorkerState]int
}

// Stats returns counts for metrics.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{QueueDepth: map[string]int{}, Workers: map[WorkerState]int{}}
	for k, q := range s.queues {
		st.QueueDepth[k] = q.size
	}
	for _, j := range s.live {
		if j.State == job.Running {
			st.Running++
		}
	}
	for _, w := range s.workers {
		st.Workers[s.info(w).State]++
	}
	return st
}

type labelQueue struct {
	labels map[string]string
	groups map[string]*jobHeap
	size   int
}

type jobHeap []*job.Job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if h[i].Spec.Priority != h[j].Spec.Priority {
		return h[i].Spec.Priority > h[j].Spec.Priority
	}
	return h[i].Seq < h[j].Seq
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job.Job)) }
func (h *jobHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

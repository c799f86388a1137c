package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// Peer is who registers: the worker process's instance (kept in its work
// dir, so the same after a restart) and its network address.
type Peer struct {
	Instance string
	Addr     string
}

// ErrNameInUse means another worker process is connected under the name.
var ErrNameInUse = errors.New("worker name in use")

// Register is RegisterAs for a worker that gives no instance.
func (s *Scheduler) Register(name string, labels map[string]string, slots int, running []RunningJob) (id string, abandon []RunningJob, changed []*job.Job) {
	id, abandon, changed, _ = s.RegisterAs(Peer{}, name, labels, slots, running)
	return id, abandon, changed
}

// SessionWorker names the worker a live session belongs to.
func (s *Scheduler) SessionWorker(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok {
		return "", false
	}
	return ss.w.name, true
}

// RegisterAs starts a session for a worker. While the worker's session
// is alive (heard from within LostAfter), a registration from another
// instance is a second process with the same name: it is refused with
// ErrNameInUse, and the first keeps its session. The same instance (the
// worker restarted after a crash) takes the session over at once, and
// anyone may once the old session is known dead. Jobs the worker says it still
// runs are re-attached when the scheduler also has them running on this
// worker with the same attempt; the others are returned to be abandoned.
// Jobs the scheduler had running on an earlier session of the same worker
// and that the worker no longer reports are re-queued (returned as changed).
func (s *Scheduler) RegisterAs(p Peer, name string, labels map[string]string, slots int, running []RunningJob) (id string, abandon []RunningJob, changed []*job.Job, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	w := s.workers[name]
	if w != nil && w.session != nil && w.session.instance != p.Instance && now.Sub(w.session.lastSeen) <= s.cfg.LostAfter {
		from := w.session.addr
		if from == "" {
			from = "an unknown address"
		}
		return "", nil, nil, fmt.Errorf("worker %s is already connected from %s (another process with this name; give each worker its own --name, or stop the other one): %w",
			name, from, ErrNameInUse)
	}
	if w == nil {
		w = &worker{name: name}
		s.workers[name] = w
	}
	w.labels, w.slots, w.lastSeen = labels, slots, now
	w.state = WorkerOnline
	if w.drained {
		w.state = WorkerDraining
	}
	ss := &session{id: s.cfg.NewID(), instance: p.Instance, addr: p.Addr, w: w, lastSeen: now, running: map[string]*job.Job{}, assigned: map[string]time.Time{}}
	old := w.session
	w.session = ss
	s.sessions[ss.id] = ss
	// By attempt: an abandoned attempt of a job may still be ending beside
	// the attempt the worker runs now.
	reported := map[RunningJob]bool{}
	for _, r := range running {
		reported[r] = true
	}
	claim := func(j *job.Job) bool {
		r := RunningJob{JobID: j.ID, Attempt: j.Attempt}
		if reported[r] && j.State == job.Running && j.Worker == name {
			ss.running[j.ID] = j
			ss.assigned[j.ID] = now
			delete(reported, r)
			return true
		}
		return false
	}
	if old != nil {
		delete(s.sessions, old.id)
		s.dropWaiters(old)
		for _, j := range old.running {
			if !claim(j) {
				changed = append(changed, s.requeue(j, fmt.Sprintf("worker %s restarted without it", name)))
			}
		}
	}
	for id, o := range s.orphans {
		switch {
		case claim(o.j):
			delete(s.orphans, id)
		case o.j.Worker == name:
			// Back without it: the assignment never reached it.
			delete(s.orphans, id)
			changed = append(changed, s.requeue(o.j, fmt.Sprintf("worker %s came back without it after a coordinator restart", name)))
		}
	}
	for r := range reported {
		abandon = append(abandon, r)
	}
	sort.Slice(abandon, func(i, k int) bool {
		if abandon[i].JobID != abandon[k].JobID {
			return abandon[i].JobID < abandon[k].JobID
		}
		return abandon[i].Attempt < abandon[k].Attempt
	})
	return ss.id, abandon, changed, nil
}

// Heartbeat records that a session is alive. It returns the attempts the
// worker must stop and whether an operator asked it to drain. Jobs handed to
// the session that it does not report running after LostAfter are re-queued
// (the assignment never arrived).
func (s *Scheduler) Heartbeat(id string, running []RunningJob, draining bool) (cancel []RunningJob, drain bool, changed []*job.Job, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil, false, nil, ErrUnknownSession
	}
	now := s.clock.Now()
	ss.lastSeen, ss.w.lastSeen = now, now
	ss.draining = draining
	if draining {
		s.dropWaiters(ss)
	}
	reported := map[RunningJob]bool{}
	for _, r := range running {
		reported[r] = true
		if j, ok := ss.running[r.JobID]; !ok || j.Attempt != r.Attempt {
			cancel = append(cancel, r)
		}
	}
	for jid, j := range ss.running {
		if !reported[RunningJob{JobID: jid, Attempt: j.Attempt}] && now.Sub(ss.assigned[jid]) > s.cfg.LostAfter {
			delete(ss.running, jid)
			delete(ss.assigned, jid)
			changed = append(changed, s.requeue(j, fmt.Sprintf("worker %s never started attempt %d", ss.w.name, j.Attempt)))
		}
	}
	cancel = append(cancel, ss.cancel...)
	ss.cancel = nil
	return dedupe(cancel), ss.w.drained, changed, nil
}

func dedupe(in []RunningJob) []RunningJob {
	seen := map[RunningJob]bool{}
	out := in[:0]
	for _, r := range in {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

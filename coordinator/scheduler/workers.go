package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
)

// Drain stops (or resumes) giving jobs to a worker.
func (s *Scheduler) Drain(name string, on bool) (WorkerInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.workers[name]
	if w == nil {
		return WorkerInfo{}, fmt.Errorf("worker %q: %w", name, ErrNoWorker)
	}
	w.drained = on
	if w.state == WorkerOnline || w.state == WorkerDraining {
		w.state = WorkerOnline
		if on {
			w.state = WorkerDraining
		}
	}
	if on && w.session != nil {
		s.dropWaiters(w.session)
	}
	return s.info(w), nil
}

// RestoreDrained marks workers drained before they register (after a
// restart); they show as offline until they do.
func (s *Scheduler) RestoreDrained(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		w := s.workers[n]
		if w == nil {
			w = &worker{name: n, state: WorkerOffline}
			s.workers[n] = w
		}
		w.drained = true
	}
}

// ErrNoWorker means no worker has that name.
var ErrNoWorker = errors.New("no such worker")

func (s *Scheduler) info(w *worker) WorkerInfo {
	wi := WorkerInfo{Name: w.name, Labels: w.labels, Slots: w.slots, State: w.state, LastSeen: w.lastSeen}
	if w.session != nil {
		for id := range w.session.running {
			wi.Running = append(wi.Running, id)
		}
		sort.Strings(wi.Running)
		if w.session.draining && wi.State == WorkerOnline {
			wi.State = WorkerDraining
		}
	}
	return wi
}

// Workers lists the known workers by name.
func (s *Scheduler) Workers() []WorkerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerInfo, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, s.info(w))
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

// Live returns a copy of a live job, or nil.
func (s *Scheduler) Live(jobID string) *job.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.live[jobID]; j != nil {
		return j.Clone()
	}
	return nil
}

// WaitingReason says why a queued job is not running yet.
func (s *Scheduler) WaitingReason(jobID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.live[jobID]
	if j == nil || j.State != job.Queued {
		return ""
	}
	return s.waitingLocked(j)
}

// waitingLocked is WaitingReason for a queued job; callers hold s.mu.
func (s *Scheduler) waitingLocked(j *job.Job) string {
	var matching, online, busy []*worker
	var draining []string
	for _, w := range s.workers {
		if !matches(j.Spec.Labels, w.labels) {
			continue
		}
		matching = append(matching, w)
		if w.session == nil {
			continue
		}
		online = append(online, w)
		switch {
		case w.drained || w.session.draining:
			draining = append(draining, w.name)
		case len(w.session.running) >= w.slots:
			busy = append(busy, w)
		}
	}
	sort.Strings(draining)
	switch {
	case len(matching) == 0:
		return "no worker has " + s.missingLabel(j.Spec.Labels)
	case len(online) == 0:
		names := make([]string, 0, len(matching))
		for _, w := range matching {
			names = append(names, fmt.Sprintf("%s (%s)", w.name, w.state))
		}
		sort.Strings(names)
		return "no matching worker online: " + strings.Join(names, ", ")
	case len(draining) == len(online):
		return "matching workers draining: " + strings.Join(draining, ", ")
	case len(busy)+len(draining) == len(online):
		msg := fmt.Sprintf("all %d matching workers busy", len(busy))
		if len(draining) > 0 {
			msg += "; draining: " + strings.Join(draining, ", ")
		}
		return msg
	}
	return "a matching worker has a free slot; waiting for its next pull"
}

// missingLabel names the first label (in key order) that no worker has with
// the wanted value, or all labels when only their combination is missing.
func (s *Scheduler) missingLabel(want map[string]string) string {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		found := false
		for _, w := range s.workers {
			if hasValue(w.labels[k], want[k]) {
				found = true
				break
			}
		}
		if !found {
			return "label " + k + "=" + want[k]
		}
	}
	return "labels " + label.String(want) + " together"
}

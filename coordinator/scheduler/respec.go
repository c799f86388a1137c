package scheduler

import (
	"container/heap"
	"maps"
	"sort"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
)

// Respecced is what Respec did: the jobs it changed, to persist, and the
// running jobs pick selected, which it left as they are.
type Respecced struct {
	// Changed are the queued jobs whose spec changed (still queued, or
	// already handed to a waiting worker) and those whose respec failed
	// (now Failed, with the error as their reason), oldest first.
	Changed []*job.Job
	// Failed counts the changed jobs that respec refused.
	Failed int
	// Running are copies of the running jobs pick selected, oldest first.
	Running []*job.Job
}

// Respec rewrites the spec of every live job that pick selects and that is
// still queued: respec gets a copy of the spec (its Build and Labels may be
// replaced or changed freely) and says whether it changed it. A changed job
// keeps its place in line, filed under its new labels; a job respec refuses
// ends Failed with the error as its reason. Jobs already running are not
// touched, only returned. Everything happens under the scheduler's lock:
// no worker is handed a job between its old spec and its new one, and
// once Respec returns every assignment carries the new spec.
func (s *Scheduler) Respec(pick func(*job.Job) bool, respec func(*job.Spec) (bool, error)) Respecced {
	s.mu.Lock()
	defer s.mu.Unlock()
	var picked []*job.Job
	for _, j := range s.live {
		if pick(j) {
			picked = append(picked, j)
		}
	}
	sort.Slice(picked, func(a, b int) bool { return picked[a].Seq < picked[b].Seq })
	var out Respecced
	now := s.clock.Now()
	for _, j := range picked {
		if j.State != job.Queued {
			out.Running = append(out.Running, j.Clone())
			continue
		}
		spec := cloneSpec(j.Spec)
		changed, err := respec(&spec)
		if err != nil {
			if q := s.queues[label.String(j.Spec.Labels)]; q != nil {
				q.size-- // the heap drops it lazily, as a cancelled job
			}
			j.State = job.Failed
			j.Reason = err.Error()
			s.finish(j, now)
			out.Changed = append(out.Changed, s.snap(j))
			out.Failed++
			continue
		}
		if !changed {
			continue
		}
		at, queued := s.enqueued[j.ID]
		if !queued {
			at = j.QueuedAt
		}
		s.unqueue(j)
		j.Spec = spec
		if !s.handOff(j, now) {
			s.push(j, at)
		}
		out.Changed = append(out.Changed, s.snap(j))
	}
	return out
}

// cloneSpec returns a copy of spec whose Build and Labels may be changed
// without changing spec's (job clones share them).
func cloneSpec(spec job.Spec) job.Spec {
	if spec.Build != nil {
		b := *spec.Build
		spec.Build = &b
	}
	spec.Labels = maps.Clone(spec.Labels)
	return spec
}

// unqueue takes a queued job out of the queue of its labels.
func (s *Scheduler) unqueue(j *job.Job) {
	q := s.queues[label.String(j.Spec.Labels)]
	if q == nil {
		return
	}
	h := q.groups[j.Spec.FairnessGroup]
	if h == nil {
		return
	}
	for i, x := range *h {
		if x == j {
			heap.Remove(h, i)
			q.size--
			return
		}
	}
}

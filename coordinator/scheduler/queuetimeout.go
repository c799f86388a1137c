package scheduler

import (
	"sort"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
)

// ExpireQueued ends as errors the queued jobs that no worker has started
// since they were submitted longer than after ago, each with the reason it
// waited ("no worker has label target=bookworm-arm64 for 1h0m0s"): a target
// no worker serves does not keep a pipeline waiting forever. A job that
// ran and was re-queued is left to the retry cap. A zero after expires
// nothing. It returns the changed jobs, oldest first.
func (s *Scheduler) ExpireQueued(after time.Duration) []*job.Job {
	if after <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var old []*job.Job
	for _, j := range s.live {
		if j.State == job.Queued && j.Attempt == 0 && now.Sub(j.CreatedAt) >= after {
			old = append(old, j)
		}
	}
	sort.Slice(old, func(a, b int) bool { return old[a].Seq < old[b].Seq })
	var changed []*job.Job
	for _, j := range old {
		why := s.waitingLocked(j)
		if q := s.queues[label.String(j.Spec.Labels)]; q != nil {
			q.size-- // the heap drops it lazily, as a cancelled job
		}
		j.State = job.Error
		j.Reason = why + " for " + after.String()
		s.finish(j, now)
		changed = append(changed, s.snap(j))
	}
	return changed
}

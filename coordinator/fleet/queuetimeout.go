package fleet

import (
	"context"
	"time"

	"github.com/kiln-build/kiln/coordinator/store"
)

// ExpireQueued ends the jobs that have waited in the queue, never started,
// for longer than after (see scheduler.ExpireQueued), durably and with a
// log note giving the reason. A zero after does nothing.
func (f *Fleet) ExpireQueued(ctx context.Context, after time.Duration) error {
	changed := f.sched.ExpireQueued(after)
	if len(changed) == 0 {
		return nil
	}
	notes := make([]store.Note, 0, len(changed))
	for _, j := range changed {
		f.logger.Warn("job waited too long in the queue", "job_id", j.ID, "reason", j.Reason)
		notes = append(notes, f.note(ctx, j.ID, "not started: "+j.Reason))
	}
	return f.persist(ctx, changed, notes...)
}

package scheduler

import (
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// A job that no worker ever started ends as an error after the queue
// timeout, saying why it waited; one that ran once and was re-queued does
// not (its attempts are capped by the retry cap instead).
func TestExpireQueued(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	stuck := f.submit(map[string]string{"target": "bookworm-arm64"}, 0, "", "")
	f.clock.Advance(30 * time.Minute)
	young := f.submit(map[string]string{"target": "bookworm-arm64"}, 0, "", "")
	if got := f.s.ExpireQueued(time.Hour); len(got) != 0 {
		t.Fatalf("expired before the timeout: %v", got)
	}
	f.clock.Advance(31 * time.Minute)
	got := f.s.ExpireQueued(time.Hour)
	if len(got) != 1 || got[0].ID != stuck.ID {
		t.Fatalf("expired %v, want only %s", got, stuck.ID)
	}
	if got[0].State != job.Error || got[0].Reason != "no worker has label target=bookworm-arm64 for 1h0m0s" {
		t.Fatalf("expired job: %s %q", got[0].State, got[0].Reason)
	}
	if f.s.Live(stuck.ID) != nil {
		t.Fatal("the expired job is still live")
	}
	// A worker for the target now gets the young job, not the expired one.
	sid, _, _ := f.s.Register("w1", map[string]string{"target": "bookworm-arm64"}, 2, nil)
	if id := f.pull(sid); id != young.ID {
		t.Fatalf("pulled %q, want %s", id, young.ID)
	}
	if id := f.pull(sid); id != "" {
		t.Fatalf("pulled %q after the queue emptied", id)
	}
	if got := f.s.ExpireQueued(0); got != nil {
		t.Fatalf("a zero timeout expired %v", got)
	}
}

package fleet

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
)

// stepClock moves when the test says; its timers are real.
type stepClock struct {
	scheduler.RealClock
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// A job past the queue timeout ends as an error durably, with the reason
// in its log, and its followers are told.
func TestExpireQueuedIsDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := &stepClock{now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Minute, Clock: clock}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan *job.Job, 1)
	f.OnFinished(func(_ context.Context, j *job.Job) { finished <- j })
	j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: map[string]string{"target": "bookworm-arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ExpireQueued(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Hour)
	if err := f.ExpireQueued(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	const want = "no worker has label target=bookworm-arm64 for 1h0m0s"
	got, err := st.Get(ctx, j.ID)
	if err != nil || got.State != job.Error || got.Reason != want {
		t.Fatalf("stored %+v (%v), want error %q", got, err, want)
	}
	select {
	case fin := <-finished:
		if fin.ID != j.ID || fin.State != job.Error {
			t.Fatalf("listener told %+v", fin)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listeners not told")
	}
	var log strings.Builder
	if _, err := f.StreamLog(ctx, j.ID, 0, false, func(b []byte) error { log.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "not started: "+want) {
		t.Fatalf("log %q lacks the reason", log.String())
	}
}

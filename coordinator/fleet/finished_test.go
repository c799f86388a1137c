package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// WaitFinished returns only once the OnFinished calls under way have
// returned; when its ctx ends first, their ctx ends, and it still waits
// for them.
func TestWaitFinishedOwnsTheCallbacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, _ := openFleet(t, t.TempDir())
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	var returned atomic.Int32
	f.OnFinished(func(cctx context.Context, j *job.Job) {
		started <- struct{}{}
		if j.Spec.Command[0] == "slow" {
			<-release
		} else {
			<-cctx.Done() // ends only when WaitFinished gives up
		}
		returned.Add(1)
	})
	for _, cmd := range []string{"slow", "stuck"} {
		j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{cmd}, Labels: map[string]string{"os": "linux"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Cancel(ctx, j.ID, "test"); err != nil {
			t.Fatal(err)
		}
		<-started
	}
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan struct{})
	go func() { f.WaitFinished(wctx); close(waited) }()
	close(release)
	cancel()
	select {
	case <-waited:
	case <-time.After(20 * time.Second):
		t.Fatal("WaitFinished did not return after its ctx ended")
	}
	if n := returned.Load(); n != 2 {
		t.Fatalf("%d callbacks had returned when WaitFinished did, want 2", n)
	}
}

package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// relabel is a respec that moves a job from label target to sealed-target,
// as sealing its release does, and refuses the jobs refuse names.
func relabel(refuse string) func(*job.Spec) (bool, error) {
	return func(spec *job.Spec) (bool, error) {
		if spec.Command[0] == refuse {
			return false, errors.New("cannot be built sealed")
		}
		spec.Labels["sealed-target"] = spec.Labels["target"]
		delete(spec.Labels, "target")
		return true, nil
	}
}

// Respec changes the queued jobs it picks, filed under their new labels
// and in their old order; a running one is only returned, a refused one
// ends failed and is never handed out.
func TestRespecRefilesQueuedJobs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	running := f.submit(bookworm(), 0, "r", "")
	plain, _, _ := f.s.Register("plain", bookworm(), 4, nil)
	sealed, _, _ := f.s.Register("sealed", map[string]string{"sealed-target": "bookworm"}, 4, nil)
	if id := f.pull(plain); id != running.ID {
		t.Fatalf("pulled %q, want %s", id, running.ID)
	}
	older := f.submit(bookworm(), 0, "r", "")
	refused := f.submit(bookworm(), 0, "r", "")
	refused.Spec.Command = []string{"refuse"}
	newer := f.submit(bookworm(), 0, "r", "")
	other := f.submit(bookworm(), 0, "other", "")
	queuedAt := older.QueuedAt
	f.clock.Advance(time.Minute)

	res := f.s.Respec(func(j *job.Job) bool { return j.Spec.FairnessGroup == "r" }, relabel("refuse"))
	var changed []string
	for _, j := range res.Changed {
		changed = append(changed, j.ID+"="+j.State.String())
	}
	if got := strings.Join(changed, " "); got != older.ID+"=queued "+refused.ID+"=failed "+newer.ID+"=queued" || res.Failed != 1 {
		t.Fatalf("changed %s (%d failed), want the queued jobs of group r, the refused one failed", got, res.Failed)
	}
	if len(res.Running) != 1 || res.Running[0].ID != running.ID {
		t.Fatalf("running %v, want %s", res.Running, running.ID)
	}
	if j := f.s.Live(refused.ID); j != nil {
		t.Fatalf("refused job still live: %+v", j)
	}
	if r := res.Changed[1].Reason; r != "cannot be built sealed" {
		t.Fatalf("refused job's reason %q", r)
	}
	if l := f.s.Live(running.ID).Spec.Labels; l["target"] != "bookworm" {
		t.Fatalf("running job's labels changed: %v", l)
	}
	if j := f.s.Live(older.ID); !j.QueuedAt.Equal(queuedAt) {
		t.Fatalf("re-filed job queued at %v, want %v: it keeps its place", j.QueuedAt, queuedAt)
	}
	// The worker with the old labels gets only the job not picked; the
	// one with the new labels the re-filed ones, oldest first.
	if got := []string{f.pull(plain), f.pull(plain)}; got[0] != other.ID || got[1] != "" {
		t.Fatalf("plain worker pulled %v, want only %s", got, other.ID)
	}
	if got := []string{f.pull(sealed), f.pull(sealed), f.pull(sealed)}; got[0] != older.ID || got[1] != newer.ID || got[2] != "" {
		t.Fatalf("sealed worker pulled %v, want %s then %s and nothing more", got, older.ID, newer.ID)
	}
	if d := f.s.Stats().QueueDepth; d["target=bookworm"] != 0 || d["sealed-target=bookworm"] != 0 {
		t.Fatalf("queue depths %v, want empty queues", d)
	}
}

// A worker already waiting for what the new labels match gets the
// re-filed job at once, not when its long poll ends.
func TestRespecHandsToAWaitingWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	j := f.submit(bookworm(), 0, "r", "")
	sealed, _, _ := f.s.Register("sealed", map[string]string{"sealed-target": "bookworm"}, 1, nil)
	got := make(chan *job.Job, 1)
	go func() {
		j, _ := f.s.Pull(context.Background(), sealed, time.Hour)
		got <- j
	}()
	f.waitForWaiter()
	res := f.s.Respec(func(*job.Job) bool { return true }, relabel(""))
	if len(res.Changed) != 1 || res.Changed[0].State != job.Running || res.Changed[0].Worker != "sealed" {
		t.Fatalf("changed %+v, want the job running on the waiting worker", res.Changed)
	}
	if p := <-got; p == nil || p.ID != j.ID || p.Spec.Labels["sealed-target"] != "bookworm" {
		t.Fatalf("waiting worker got %+v, want %s with its new labels", p, j.ID)
	}
}

package fleet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/coordinator/job"
)

// A submission repeated with its request id queues nothing and gets the
// first job back, also when both arrive together and after a restart; the
// same id with another spec is refused naming the job; no id queues anew.
func TestSubmitRequestID(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, dir string) {
		ctx := context.Background()
		f, st := openFleet(t, dir)
		spec := func(cmd string) job.Spec {
			return job.Spec{Kind: job.Command, Command: []string{cmd}, Labels: map[string]string{"os": "linux"}}
		}
		var wg sync.WaitGroup
		got := make([]*job.Job, 4)
		reps := make([]bool, 4)
		for i := range got {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				j, dedup, rep, err := f.SubmitRequest(ctx, spec("make"), "req-1")
				if err != nil || dedup {
					t.Errorf("submit %d: %v dedup %v", i, err, dedup)
					return
				}
				got[i], reps[i] = j, rep
			}(i)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		first := 0
		for i, j := range got {
			if j.ID != got[0].ID {
				t.Fatalf("submission %d got job %s, submission 0 job %s: want one job", i, j.ID, got[0].ID)
			}
			if !reps[i] {
				first++
			}
		}
		if first != 1 {
			t.Fatalf("%d submissions not marked repeated, want exactly 1", first)
		}
		if q, err := f.List(ctx, []job.State{job.Queued}, 0); err != nil || len(q) != 1 {
			t.Fatalf("queued jobs %v %v, want 1", q, err)
		}

		_, _, _, err := f.SubmitRequest(ctx, spec("make check"), "req-1")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"req-1"`) || !strings.Contains(err.Error(), "job "+got[0].ID) {
			t.Fatalf("same id, other spec: %v, want ErrInvalid naming the id and job %s", err, got[0].ID)
		}
		if _, _, _, err := f.SubmitRequest(ctx, spec("make"), "bad\nid"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("id with a newline: %v, want ErrInvalid", err)
		}
		other, _, rep, err := f.SubmitRequest(ctx, spec("make"), "")
		if err != nil || rep || other.ID == got[0].ID {
			t.Fatalf("no id: job %v repeated %v %v, want a new job", other, rep, err)
		}

		// The new leader (here: the restarted coordinator) knows the id.
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		f, st = openFleet(t, dir)
		again, _, rep, err := f.SubmitRequest(ctx, spec("make"), "req-1")
		if err != nil || !rep || again.ID != got[0].ID || again.State != job.Queued {
			t.Fatalf("after restart: %+v repeated %v %v, want job %s still queued", again, rep, err, got[0].ID)
		}

		// Once the job has ended in an infrastructure error, the same
		// submission is a retry: a new job, which the id names from then.
		ended := again.Clone()
		ended.State, ended.Reason = job.Error, "worker lost"
		if err := st.Put(ctx, ended); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		f, st = openFleet(t, dir)
		defer st.Close()
		retry, _, rep, err := f.SubmitRequest(ctx, spec("make"), "req-1")
		if err != nil || rep || retry.ID == again.ID || retry.State != job.Queued {
			t.Fatalf("retry after an error: %+v repeated %v %v, want a new queued job", retry, rep, err)
		}
		if j, _, rep, err := f.SubmitRequest(ctx, spec("make"), "req-1"); err != nil || !rep || j.ID != retry.ID {
			t.Fatalf("after the retry: %+v repeated %v %v, want job %s repeated", j, rep, err, retry.ID)
		}
	})
}

package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// BenchmarkSubmitPull is a command job's way through the fleet on each
// store: submitted (written as queued), pulled by a worker session
// (written as running, with its note) and completed (written as
// finished, with its note), every write durable before the call
// returns. Workers is how many sessions submit and pull at once, as many
// clients and workers do through the gRPC handlers. Run it with
//
//	go test -run '^$' -bench SubmitPull -benchtime 300x -count 3 ./coordinator/fleet/
func BenchmarkSubmitPull(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/workers=%d", backend, workers), func(b *testing.B) {
				benchSubmitPull(b, backend, workers)
			})
		}
	}
}

func benchSubmitPull(b *testing.B, backend string, workers int) {
	ctx := context.Background()
	dir := b.TempDir()
	where := filepath.Join(dir, "coordinator.db")
	if backend == "postgres" {
		where = storetest.Postgres(b)
	}
	st, err := store.Open(ctx, where)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	// A coordinator on PostgreSQL leads before it writes.
	lease, err := st.Lead(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(lease.Release)
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Hour}, st, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	labels := map[string]string{"os": "linux"}
	sessions := make([]string, workers)
	for i := range sessions {
		if sessions[i], _, err = f.Register(ctx, "w"+strconv.Itoa(i), labels, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, sess := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"true"}, Labels: labels, Origin: "cli"}); err != nil {
					b.Error(err)
					return
				}
				// Another session may take this job: each pulls one.
				j, err := f.Pull(ctx, sess, time.Minute)
				if err != nil || j == nil {
					b.Errorf("pull: %v %v", j, err)
					return
				}
				if err := f.Complete(ctx, sess, j.ID, j.Attempt, scheduler.Outcome{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	counts, err := st.CountByState(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if counts[job.Succeeded] != b.N {
		b.Fatalf("%d jobs succeeded, want %d (%v)", counts[job.Succeeded], b.N, counts)
	}
}

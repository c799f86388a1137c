package scheduler

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// Benchmarks of the in-memory scheduler with a fleet of 200 worker
// sessions (one slot each) spread over a few label sets, as in the fleet
// benchmark (bench/fleet). Run with:
//
//	go test -run '^$' -bench . -benchmem ./coordinator/scheduler/

const benchSessions = 200

var benchLabels = []map[string]string{
	{"target": "bookworm", "arch": "amd64"},
	{"target": "jammy", "arch": "amd64"},
	{"target": "centos7", "arch": "x86_64"},
	{"target": "bookworm", "arch": "arm64"},
}

var benchGroups = []string{"mos-9.0", "mos-10.0", "mos-11.0"}

type benchFleet struct {
	s        *Scheduler
	sessions [][]string // by label set
	seq      int64
}

func newBenchFleet(b *testing.B) *benchFleet {
	b.Helper()
	var ids atomic.Int64
	f := &benchFleet{sessions: make([][]string, len(benchLabels))}
	f.s = New(Config{LostAfter: time.Hour, NewID: func() string { return "s" + strconv.FormatInt(ids.Add(1), 10) }}, RealClock{})
	for i := range benchSessions {
		ls := i % len(benchLabels)
		id, _, _ := f.s.Register("w"+strconv.Itoa(i), benchLabels[ls], 1, nil)
		f.sessions[ls] = append(f.sessions[ls], id)
	}
	return f
}

func (f *benchFleet) job() *job.Job {
	f.seq++
	i := int(f.seq)
	return &job.Job{ID: strconv.FormatInt(f.seq, 10), Seq: f.seq, CreatedAt: time.Now(), Spec: job.Spec{
		Kind: job.Command, Command: []string{"true"}, Labels: benchLabels[i%len(benchLabels)],
		FairnessGroup: benchGroups[i%len(benchGroups)], Priority: int32(i % 2 * 50),
	}}
}

// BenchmarkEnqueuePullComplete is one job's way through an idle fleet: it
// is queued, a worker of its label set pulls it and completes it.
func BenchmarkEnqueuePullComplete(b *testing.B) {
	f := newBenchFleet(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		j := f.job()
		f.s.Enqueue(j)
		ls := int(f.seq) % len(benchLabels)
		sess := f.sessions[ls][int(f.seq/int64(len(benchLabels)))%len(f.sessions[ls])]
		got, err := f.s.Pull(ctx, sess, 0)
		if err != nil || got == nil {
			b.Fatalf("pull: %v %v", got, err)
		}
		if _, err := f.s.Complete(sess, got.ID, got.Attempt, Outcome{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPullFromBacklog keeps 10,000 jobs queued over the label sets,
// fairness groups and priorities: each iteration pulls the best job for a
// worker, completes it and queues a new one.
func BenchmarkPullFromBacklog(b *testing.B) {
	f := newBenchFleet(b)
	ctx := context.Background()
	for range 10000 {
		f.s.Enqueue(f.job())
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ls := i % len(benchLabels)
		sess := f.sessions[ls][(i/len(benchLabels))%len(f.sessions[ls])]
		i++
		got, err := f.s.Pull(ctx, sess, 0)
		if err != nil || got == nil {
			b.Fatalf("pull: %v %v", got, err)
		}
		if _, err := f.s.Complete(sess, got.ID, got.Attempt, Outcome{}); err != nil {
			b.Fatal(err)
		}
		f.s.Enqueue(f.job())
	}
}

// BenchmarkHandOff has every session long-polling in its own goroutine, as
// the gRPC handlers do; each enqueued job goes straight to a waiting
// worker, which completes it and polls again. It measures enqueue to
// completion throughput with real goroutine wake-ups.
func BenchmarkHandOff(b *testing.B) {
	f := newBenchFleet(b)
	ctx, cancel := context.WithCancel(context.Background())
	var done atomic.Int64
	var wg sync.WaitGroup
	for _, ss := range f.sessions {
		for _, sess := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					j, err := f.s.Pull(ctx, sess, time.Minute)
					if err != nil || j == nil {
						continue
					}
					if _, err := f.s.Complete(sess, j.ID, j.Attempt, Outcome{}); err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			}()
		}
	}
	// Let the pollers reach the scheduler.
	for {
		f.s.mu.Lock()
		n := len(f.s.waiters)
		f.s.mu.Unlock()
		if n == benchSessions {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		f.s.Enqueue(f.job())
		n++
	}
	for done.Load() < n {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	cancel()
	wg.Wait()
}

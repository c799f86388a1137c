package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// Benchmarks of the store on both databases, side by side in one run:
//
//	go test -run '^$' -bench Write -benchtime 200x -count 3 ./coordinator/store/
//	go test -run '^$' -bench Read -benchtime 30x -count 3 ./coordinator/store/
//
// "postgres" is a store that leads (as a coordinator on PostgreSQL
// does), "postgres-nofence" the same without the fence's triggers, which
// only a benchmark drops: the difference is what the fence costs.

// benchBackends opens a store on each backend for b.Run.
var benchBackends = []struct {
	name string
	open func(b *testing.B) *Store
}{
	{"sqlite", func(b *testing.B) *Store { return openBench(b, filepath.Join(b.TempDir(), "state.db"), true) }},
	{"postgres", func(b *testing.B) *Store { return openBench(b, storetest.Postgres(b), true) }},
	{"postgres-nofence", func(b *testing.B) *Store { return openBench(b, storetest.Postgres(b), false) }},
}

func openBench(b *testing.B, where string, fenced bool) *Store {
	b.Helper()
	ctx := context.Background()
	st, err := Open(ctx, where)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if !st.Shared() {
		return st
	}
	lease, err := st.Lead(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(lease.Release)
	if !fenced {
		dropFence(b, st)
	}
	return st
}

// dropFence drops the fence's triggers from a PostgreSQL store.
func dropFence(b *testing.B, st *Store) {
	b.Helper()
	for _, t := range fenced {
		if _, err := st.db.Exec(`DROP TRIGGER ` + t + `_fence ON ` + t); err != nil {
			b.Fatalf("drop the fence of %s: %v", t, err)
		}
	}
}

// benchJob is job n of a farm's history: three in five command jobs, the
// rest review builds of 200 packages in 10 releases, each its own Gerrit
// change; one in seven failed.
func benchJob(n int) *job.Job {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Minute)
	j := &job.Job{ID: "j" + strconv.Itoa(n), Seq: int64(n), State: job.Succeeded, CreatedAt: at, StartedAt: at.Add(time.Second),
		FinishedAt: at.Add(time.Minute), Worker: "w" + strconv.Itoa(n%20), Attempt: 1}
	if n%7 == 0 {
		j.State, j.ExitCode, j.Reason = job.Failed, 2, "exit status 2"
	}
	if n%5 < 3 {
		j.Spec = job.Spec{Kind: job.Command, Command: []string{"make", "check", strconv.Itoa(n)}, Origin: "cli",
			Labels: map[string]string{"os": "linux"}}
		return j
	}
	rel, pkg := "r"+strconv.Itoa(n%10), "pkg"+strconv.Itoa(n%200)
	j.Spec = job.Spec{Kind: job.PackageBuild, Origin: fmt.Sprintf("gerrit g: review build of change %d patch set 1 (team/%s main)", n, pkg),
		Labels: map[string]string{"target": "bookworm"},
		Build: &job.Build{Release: rel, Target: "bookworm", Package: pkg, Revision: int64(n),
			Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: fmt.Sprintf("%040x", n), Role: "combined"}}}}
	return j
}

// fill puts jobs 1 to n in the store, 5,000 per write.
func fill(b *testing.B, st *Store, n int) {
	b.Helper()
	ctx := context.Background()
	batch := make([]*job.Job, 0, 5000)
	for i := 1; i <= n; i++ {
		batch = append(batch, benchJob(i))
		if len(batch) == cap(batch) || i == n {
			if err := st.Put(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// parallel runs op(k) for k from 0 to b.N-1 on writers goroutines, as the
// coordinator's gRPC handlers call the store at once.
func parallel(b *testing.B, writers int, op func(k int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= b.N {
					return
				}
				if err := op(k); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// BenchmarkWrite measures the group-committed writes of the dispatch
// path, each a caller's Put of one job that returns once durable: insert
// is a job's submission (a new queued command job), update a state change
// of one of 10,000 jobs (assigned to a worker). Writers is how many
// callers write at once; their writes share transactions.
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	// The backends are the innermost loop: on a shared machine whose load
	// drifts, the figures to compare are measured one after another.
	for _, kind := range []string{"insert", "update"} {
		for _, writers := range []int{1, 8, 64} {
			for _, be := range benchBackends {
				b.Run(fmt.Sprintf("%s/writers=%d/%s", kind, writers, be.name), func(b *testing.B) {
					st := be.open(b)
					base := 0
					if kind == "update" {
						base = 10_000
						fill(b, st, base)
					}
					var seq atomic.Int64
					seq.Store(int64(base))
					parallel(b, writers, func(k int) error {
						var j *job.Job
						if kind == "insert" {
							n := seq.Add(1)
							j = &job.Job{ID: "n" + strconv.FormatInt(n, 10), Seq: n, State: job.Queued, CreatedAt: time.Now(),
								Spec: job.Spec{Kind: job.Command, Command: []string{"make", "check"}, Origin: "cli",
									Labels: map[string]string{"os": "linux"}}}
						} else {
							j = benchJob(k%base + 1)
							j.State, j.Worker, j.Attempt, j.Version = job.Running, "w"+strconv.Itoa(k%200), 2, int64(k+1)
							j.FinishedAt = time.Time{}
						}
						return st.Put(ctx, j)
					})
				})
			}
		}
	}
}

// benchReads are the store's reads behind the job pages and the CLI's
// job list.
var benchReads = []struct {
	name string
	f    Filter
}{
	{"list", Filter{Limit: 50}},
	{"list-failed", Filter{States: []job.State{job.Failed}, Limit: 50}},
	{"list-release-package", Filter{Release: "r3", Package: "pkg3", Limit: 50}},
	{"origin-common", Filter{Origin: "cli", Limit: 50}},            // 60 % of the jobs
	{"origin-rare", Filter{Origin: "team/pkg8 ", Limit: 50}},       // 0.5 %
	{"origin-absent", Filter{Origin: "no such origin", Limit: 50}}, // none
}

// BenchmarkRead measures the reads of the web pages and the CLI at 10,000
// and 100,000 jobs: a page of the job list, filtered or not, with an
// origin search, and one job by id. With -v it logs PostgreSQL's plans
// of the list queries.
func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	for _, be := range benchBackends[:2] {
		for _, size := range []int{10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/jobs=%d", be.name, size), func(b *testing.B) {
				st := be.open(b)
				fill(b, st, size)
				if st.Shared() {
					if _, err := st.db.Exec(`ANALYZE`); err != nil {
						b.Fatal(err)
					}
				}
				// The first origin search on SQLite indexes every job's
				// origin; later ones only the jobs since.
				if _, _, err := st.Query(ctx, Filter{Origin: "absent", Limit: 1}); err != nil {
					b.Fatal(err)
				}
				if testing.Verbose() && st.Shared() && size == 100_000 {
					logPlans(b, st)
				}
				for _, r := range benchReads {
					b.Run(r.name, func(b *testing.B) {
						for b.Loop() {
							jobs, _, err := st.Query(ctx, r.f)
							if err != nil {
								b.Fatal(err)
							}
							if r.name != "origin-absent" && len(jobs) != 50 {
								b.Fatalf("%s: %d jobs, want 50", r.name, len(jobs))
							}
						}
					})
				}
				b.Run("get", func(b *testing.B) {
					k := 0
					for b.Loop() {
						k++
						if _, err := st.Get(ctx, "j"+strconv.Itoa(k%size+1)); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// logPlans logs PostgreSQL's plans of the list queries.
func logPlans(b *testing.B, st *Store) {
	b.Helper()
	explain := func(name, q string, args ...any) {
		rows, err := st.db.Query(`EXPLAIN (ANALYZE, BUFFERS) `+q, args...)
		if err != nil {
			b.Fatalf("explain %s: %v", name, err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				b.Fatal(err)
			}
			plan = append(plan, line)
		}
		b.Logf("%s:\n%s", name, strings.Join(plan, "\n"))
	}
	for _, r := range benchReads {
		if r.f.Origin != "" {
			explain(r.name+" (origin)", st.d.originSeqs(false)+` LIMIT 51`, st.d.originPattern(r.f.Origin))
			continue
		}
		q, args := r.f.query(st.d)
		explain(r.name, q, args...)
	}
	explain("get", `SELECT `+columns+` FROM jobs WHERE id = ?`, "j5000")
}

package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// benchJobs is the store's size the issue asks the pages to stay fast at.
const benchJobs = 100_000

// bigStore fills a store with benchJobs finished jobs, as a farm's
// history: three in five command jobs, the rest review builds of 80
// packages in 10 releases (each its own Gerrit change), one in seven
// failed.
func bigStore(b *testing.B) (*fleet.Fleet, *store.Store) {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]*job.Job, 0, 5000)
	for i := 1; i <= benchJobs; i++ {
		at := start.Add(time.Duration(i) * time.Minute)
		j := &job.Job{ID: strconv.Itoa(i), Seq: int64(i), State: job.Succeeded, CreatedAt: at, StartedAt: at.Add(time.Second),
			FinishedAt: at.Add(time.Minute), Worker: "w" + strconv.Itoa(i%20), Attempt: 1}
		if i%7 == 0 {
			j.State, j.ExitCode, j.Reason = job.Failed, 2, "exit status 2"
		}
		if i%5 < 3 {
			j.Spec = job.Spec{Kind: job.Command, Command: []string{"make", "check", strconv.Itoa(i)}, Origin: "cli",
				Labels: map[string]string{"os": "linux"}}
		} else {
			rel, pkg := "r"+strconv.Itoa(i%10), "pkg"+strconv.Itoa(i%200)
			j.Spec = job.Spec{Kind: job.PackageBuild, Origin: fmt.Sprintf("gerrit g: review build of change %d patch set 1 (team/%s main)", i, pkg),
				Labels: map[string]string{"target": "bookworm"},
				Build: &job.Build{Release: rel, Target: "bookworm", Package: pkg, Revision: int64(i),
					Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: fmt.Sprintf("%040x", i), Role: "combined"}}}}
		}
		batch = append(batch, j)
		if len(batch) == cap(batch) {
			if err := st.Put(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Hour}, st, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	return f, st
}

// BenchmarkJobList measures the server time of the overview and of job
// list pages with 100,000 jobs in the store, reporting the p50 and p95,
// and the p95 of the CPU time the process spent on a request (steadier
// than the time on a shared machine).
// The store's plans for these queries are checked by
// coordinator/store's TestQueryPlansUseIndexes. Run it with
//
//	go test ./coordinator/web -run '^$' -bench JobList -benchtime 200x
func BenchmarkJobList(b *testing.B) {
	f, st := bigStore(b)
	// The first origin search indexes every job's origin (later ones only
	// the jobs since): its cost once, apart from the pages' times.
	t0 := time.Now()
	if _, _, err := st.Query(context.Background(), store.Filter{Origin: "absent", Limit: 1}); err != nil {
		b.Fatal(err)
	}
	b.Logf("first origin search, indexing %d jobs' origins: %s", benchJobs, time.Since(t0).Round(time.Millisecond))
	s := New(Config{}, f)
	mux := http.NewServeMux()
	s.Register(mux)
	for _, page := range []string{
		"/",
		"/jobs",
		"/jobs?page=50000",
		"/jobs?state=failed",
		"/jobs?state=failed&page=50000",
		"/jobs?release=r3",
		"/jobs?release=r3&package=pkg3",
		"/jobs?package=pkg8&state=failed",
		"/jobs?change=99993",
		"/jobs?change=12",
		"/jobs?package=absent",
		"/jobs?origin=cli",
		"/jobs?origin=team/pkg8+",
		"/jobs?origin=absent",
	} {
		b.Run(page, func(b *testing.B) {
			times := make([]time.Duration, 0, b.N)
			cpus := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				t0, c0 := time.Now(), cpuTime()
				mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, page, nil))
				times, cpus = append(times, time.Since(t0)), append(cpus, cpuTime()-c0)
				if rec.Code != http.StatusOK && rec.Code != http.StatusSeeOther {
					b.Fatalf("%s: %d\n%s", page, rec.Code, rec.Body)
				}
			}
			for _, d := range [][]time.Duration{times, cpus} {
				sort.Slice(d, func(i, k int) bool { return d[i] < d[k] })
			}
			b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(times[len(times)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(cpus[len(cpus)*95/100].Microseconds())/1000, "cpu-p95-ms")
		})
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var r syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r)
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

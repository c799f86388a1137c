package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// Query filters in the database and pages by job sequence: every job
// matching the filter is seen exactly once across the pages, newest first.
func TestQueryFiltersAndPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	now := time.Now().UTC()
	var want []string
	for i := 1; i <= 25; i++ {
		rel, pkg, origin, state := "mos-9.0", "nova", "jenkins https://ci/job/7/", job.Succeeded
		if i%2 == 0 {
			rel = "mos-10.0"
		}
		if i%3 == 0 {
			pkg, origin = "glance", "gerrit review: change 5"
		}
		if i%5 == 0 {
			state = job.Failed
		}
		j := &job.Job{ID: fmt.Sprint(i), Seq: int64(i), State: state, CreatedAt: now, Spec: job.Spec{Kind: job.PackageBuild, Origin: origin,
			Build: &job.Build{Release: rel, Target: "bookworm-amd64", Package: pkg}}}
		if err := s.Put(ctx, j); err != nil {
			t.Fatal(err)
		}
		if rel == "mos-9.0" && pkg == "nova" && state == job.Succeeded {
			want = append([]string{j.ID}, want...)
		}
	}
	cmd := &job.Job{ID: "26", Seq: 26, State: job.Succeeded, CreatedAt: now, Spec: job.Spec{Kind: job.Command, Command: []string{"make"}, Origin: "jenkins x"}}
	if err := s.Put(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	var got []string
	f := Filter{States: []job.State{job.Succeeded}, Release: "mos-9.0", Package: "nova", Origin: "jenkins", Limit: 2}
	for page := 0; ; page++ {
		jobs, next, err := s.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 2 {
			t.Fatalf("page %d has %d jobs, limit 2", page, len(jobs))
		}
		for _, j := range jobs {
			got = append(got, j.ID)
		}
		if next == 0 {
			break
		}
		f.Before = next
		if page > 20 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged %v, want %v", got, want)
	}
	all, next, err := s.Query(ctx, Filter{Origin: "gerrit"})
	if err != nil || next != 0 || len(all) != 8 {
		t.Fatalf("origin gerrit: %d jobs, next %d, %v; want 8", len(all), next, err)
	}
}

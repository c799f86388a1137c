package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// Query filters in the database and pages by job sequence: every job
// matching the filter is seen exactly once across the pages, newest first.
func TestQueryFiltersAndPages(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
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
	})
}

// Every filter of the job list but the origin text reads its jobs from an
// index in the order of sequence numbers: no scan of the table, no sort,
// so that a page costs the same with 100,000 jobs as with ten. SQLite's
// plan does not depend on the number of rows here (no ANALYZE), so an
// empty store shows it.
func TestQueryPlansUseIndexes(t *testing.T) {
	t.Parallel()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer s.Close()
	for _, tc := range []struct {
		name  string
		f     Filter
		index string
	}{
		{"newest", Filter{Limit: 100}, "sqlite_autoindex_jobs_2"},
		{"newest, older page", Filter{Before: 500, Limit: 100}, "sqlite_autoindex_jobs_2"},
		{"state", Filter{States: []job.State{job.Failed}, Limit: 100}, "jobs_state_seq"},
		{"state, older page", Filter{States: []job.State{job.Failed}, Before: 500, Limit: 100}, "jobs_state_seq"},
		{"release", Filter{Release: "mos-9.0", Limit: 100}, "jobs_release_seq"},
		{"package", Filter{Package: "nova", Limit: 100}, "jobs_package_seq"},
		{"package and state", Filter{Package: "nova", States: []job.State{job.Failed}, Before: 500, Limit: 100}, ""},
		{"release and package", Filter{Release: "mos-9.0", Package: "nova", Limit: 100}, ""},
		{"change", Filter{Change: 4711, Limit: 100}, "jobs_change_seq"},
		{"change, older page", Filter{Change: 4711, Before: 500, Limit: 100}, "jobs_change_seq"},
		{"origin's chunk", Filter{States: []job.State{job.Failed}, seqs: []int64{7, 5, 3}}, ""},
	} {
		q, args := tc.f.query(sqliteDialect)
		rows, err := s.DB().Query(`EXPLAIN QUERY PLAN `+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		t.Logf("%s: %s", tc.name, p)
		if strings.Contains(p, "TEMP B-TREE") || (strings.HasPrefix(p, "SCAN jobs") && !strings.Contains(p, "USING INDEX")) {
			t.Errorf("%s: the plan scans or sorts: %s", tc.name, p)
		}
		if tc.index != "" && !strings.Contains(p, "INDEX "+tc.index) {
			t.Errorf("%s: the plan does not use %s: %s", tc.name, tc.index, p)
		}
	}
}

// Change finds the review builds of a Gerrit change by the origin the
// intake gives them, in the intake's present and earlier wording, and no
// other job that mentions a change.
func TestQueryChange(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		for i, origin := range []string{
			"gerrit review: review build of change 4711 patch set 2 (team/nova master)",
			"gerrit review: review build of change 47110 patch set 1 (team/nova master)",
			"gerrit review review: change 4711 patch set 1 (team/nova master)",
			"jenkins https://ci/job/7/ change 4711 ",
			"gerrit review: review build of change 12 patch set 1 (team/change 4711)",
			"cli",
		} {
			j := &job.Job{ID: fmt.Sprint(i + 1), Seq: int64(i + 1), State: job.Succeeded, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.PackageBuild, Origin: origin,
				Build: &job.Build{Release: "mos-9.0", Target: "bookworm", Package: "nova"}}}
			if err := s.Put(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		jobs, _, err := s.Query(ctx, Filter{Change: 4711})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, j := range jobs {
			got = append(got, j.ID)
		}
		if strings.Join(got, ",") != "3,1" {
			t.Errorf("change 4711: jobs %v, want 3,1", got)
		}
	})
}

// Origin finds the jobs whose origin holds a text, however short and
// whatever characters it has, through the origin search's index: jobs
// inserted after a search are found by the next one, their updates add
// nothing, and a store made before the index has its jobs indexed.
func TestQueryOrigin(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		path := where
		s := open(t, path)
		origins := []string{"jenkins https://ci/job/7/", "gerrit g: review build of change 5 patch set 1 (a*b main)", "cli", "Jenkins [x] 50%_", ""}
		put := func(s *Store, i int) {
			t.Helper()
			j := &job.Job{ID: fmt.Sprint(i + 1), Seq: int64(i + 1), State: job.Queued, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}, Origin: origins[i]}}
			if err := s.Put(ctx, j); err != nil {
				t.Fatal(err)
			}
			j.State = job.Succeeded // an update: no second entry
			if err := s.Put(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		check := func(s *Store, when string, n int) {
			t.Helper()
			for text, want := range map[string]string{
				"jenkins": "1", "Jenkins": "4", "enkins": "4,1", "i": "4,3,2,1", "li": "3", "a*b": "2", "*": "2", "[x]": "4", "50%_": "4",
				"?": "", "review build of change 5 ": "2", "nothing": "",
			} {
				jobs, _, err := s.Query(ctx, Filter{Origin: text})
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, j := range jobs {
					if j.Seq <= int64(n) {
						got = append(got, j.ID)
					}
				}
				if len(got) != len(jobs) {
					t.Errorf("%s: origin %q found jobs not yet written: %v", when, text, jobs)
				}
				var exp []string
				for _, id := range strings.Split(want, ",") {
					if id != "" && id <= fmt.Sprint(n) {
						exp = append(exp, id)
					}
				}
				if strings.Join(got, ",") != strings.Join(exp, ",") {
					t.Errorf("%s: origin %q: jobs %v, want %v", when, text, got, exp)
				}
			}
			if !s.d.indexesOrigins {
				return
			}
			var indexed int
			if err := s.DB().QueryRow(`SELECT count(*) FROM job_origins`).Scan(&indexed); err != nil || indexed != n {
				t.Errorf("%s: %d origins indexed (%v), want %d", when, indexed, err, n)
			}
		}
		for i := range 3 {
			put(s, i)
		}
		check(s, "three jobs", 3)
		for i := 3; i < len(origins); i++ {
			put(s, i)
		}
		check(s, "two more", len(origins))
		// A store from before the origin index (and schema versions).
		if s.d.indexesOrigins {
			if _, err := s.DB().Exec(`DROP TABLE job_origins; DROP TABLE job_origins_upto; DROP TABLE schema_version`); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = open(t, path)
		defer s.Close()
		check(s, "reopened store made before the index", len(origins))
	})
}

// An origin text with other filters pages through every match exactly
// once, newest first, across the origin search's chunks.
func TestQueryOriginPagesAcrossChunks(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		n := originCatchUp + 17 // two catch-ups, and several chunks: a page of 40 and 1 in 10 of the jobs matching
		var batch []*job.Job
		var want []string
		for i := 1; i <= n; i++ {
			origin, state := "cli", job.Succeeded
			if i%3 != 0 {
				origin = fmt.Sprintf("jenkins build %d", i)
			}
			if i%7 == 0 {
				state = job.Failed
			}
			batch = append(batch, &job.Job{ID: fmt.Sprint(i), Seq: int64(i), State: state, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}, Origin: origin}})
			if origin != "cli" && state == job.Failed {
				want = append([]string{fmt.Sprint(i)}, want...)
			}
		}
		if err := s.Put(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		f := Filter{Origin: "jenkins", States: []job.State{job.Failed}, Limit: 40}
		var got []string
		for page := 0; ; page++ {
			jobs, next, err := s.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				got = append(got, j.ID)
			}
			if next == 0 {
				break
			}
			f.Before = next
			if page > 100 {
				t.Fatal("paging does not end")
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("paged %d jobs %v, want %d %v", len(got), got, len(want), want)
		}
	})
}

// On PostgreSQL, each filter's query can be answered from its index in the
// order of sequence numbers (the planner is told to avoid scans and sorts
// where it can: with an empty table it would choose them anyway).
func TestQueryPlansUseIndexesOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.Postgres(t))
	defer s.Close()
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		f     Filter
		index string
	}{
		{"newest", Filter{Limit: 100}, "jobs_seq_key"},
		{"state", Filter{States: []job.State{job.Failed}, Limit: 100}, "jobs_state_seq"},
		{"release", Filter{Release: "mos-9.0", Limit: 100}, "jobs_release_seq"},
		{"package", Filter{Package: "nova", Limit: 100}, "jobs_package_seq"},
		{"change", Filter{Change: 4711, Before: 500, Limit: 100}, "jobs_change_seq"},
	} {
		q, args := tc.f.query(postgresDialect)
		rows, err := conn.QueryContext(ctx, `EXPLAIN `+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, strings.TrimSpace(line))
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		t.Logf("%s: %s", tc.name, p)
		if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Sort") || !strings.Contains(p, tc.index) {
			t.Errorf("%s: the plan does not read %s in order: %s", tc.name, tc.index, p)
		}
	}
}

// On PostgreSQL the origin search reads the origin column, not the spec
// (whose JSON costs a parse per job read), and can read it through the
// trigram index.
func TestOriginSearchReadsColumnOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.Postgres(t))
	defer s.Close()
	conn, err := s.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET enable_seqscan = off; SET enable_indexscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, before := range []bool{false, true} {
		args := []any{postgresDialect.originPattern("team/pkg8 ")}
		if before {
			args = append(args, 500)
		}
		rows, err := conn.QueryContext(ctx, `EXPLAIN `+postgresDialect.originSeqs(before)+` LIMIT 51`, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, strings.TrimSpace(line))
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		t.Logf("before %v: %s", before, p)
		if strings.Contains(p, "spec") {
			t.Errorf("before %v: the plan reads the spec: %s", before, p)
		}
		if !before && !strings.Contains(p, "jobs_origin_trgm") {
			t.Errorf("the plan does not read jobs_origin_trgm: %s", p)
		}
	}
}

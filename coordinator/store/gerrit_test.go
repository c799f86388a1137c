package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// TestGerritUpgradesJobsTable: a database made when gerrit_jobs held one
// event per job keeps its rows and, once opened, records a job for a
// second event.
func TestGerritUpgradesJobsTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	old, err := os.ReadFile(filepath.Join("testdata", "gerrit_jobs-one-event.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(old)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // the second open finds the table upgraded
		s := open(t, path)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, path)
	defer s.Close()
	db = s.DB()
	st, err := s.Gerrit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.CommitQueued(ctx, record.Queued{
		Event: record.Event{Server: "review", Type: event.TypeCommentAdded, Change: 32, PatchSet: 1, ReceivedAt: time.Now(), Action: decide.ActionBuilt},
		Jobs:  []record.Job{{JobID: "7", Server: "review", Kind: record.KindReview, Change: 32, PatchSet: 1, Release: "mos-9.0", Target: "trusty-amd64", Package: "nginx"}},
	}, time.Now())
	if err != nil {
		t.Fatalf("record job 7 for a second event: %v", err)
	}
	known, err := st.KnownResults(ctx, []string{"7"}, record.KindReview)
	if err != nil || len(known) != 1 || known[0].State != "succeeded" {
		t.Fatalf("known results %+v (%v), want job 7 succeeded from before the upgrade", known, err)
	}
	ok, err := st.FinishJob(ctx, record.Result{JobID: "7", State: "failed"})
	if err != nil || !ok {
		t.Fatalf("finishJob: %v %v, want job 7 recorded", ok, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_jobs WHERE job_id = '7' AND state = ? AND change_num IN (31, 32)`, "failed").Scan(&n); err != nil || n != 2 {
		t.Fatalf("job 7 failed for %d events (%v), want both", n, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'gerrit_jobs_event'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("index gerrit_jobs_event: %d %v", n, err)
	}
}

// Pruning the event log removes what belonged to the events gone: jobs,
// reports, attached changes.
func TestGerritPruneRemovesWhatBelongedToOldEvents(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		db := s.DB()
		st, err := s.Gerrit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		var ids []int64
		for i := range 3 {
			id, err := st.CommitQueued(ctx, record.Queued{
				Event:   record.Event{Server: "review", Type: event.TypeChangeMerged, Project: "nginx", Branch: "9.0", Change: int64(10 + i), PatchSet: 1, Revision: fmt.Sprintf("%040d", i), ReceivedAt: now, Action: decide.ActionBuilt},
				Jobs:    []record.Job{{JobID: fmt.Sprint(i), Server: "review", Kind: record.KindRelease, Change: int64(10 + i), PatchSet: 1, Release: "mos-9.0", Target: "trusty-amd64", Package: "nginx"}},
				Release: true,
			}, now)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.MarkReported(ctx, id, int64(10+i), now); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := st.Prune(ctx, 1, time.Hour, now); err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			table string
			want  int
		}{{"gerrit_events", 1}, {"gerrit_jobs", 1}, {"gerrit_reports", 1}, {"gerrit_event_changes", 1}} {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+q.table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != q.want {
				t.Errorf("%s has %d rows after pruning to one event, want %d", q.table, n, q.want)
			}
		}
		var left int64
		if err := db.QueryRowContext(ctx, `SELECT event_id FROM gerrit_jobs`).Scan(&left); err != nil || left != ids[2] {
			t.Errorf("the job left belongs to event %d (%v), want the newest, %d", left, err, ids[2])
		}
	})
}

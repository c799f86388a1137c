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

// The Gerrit intake's storage from an event's acceptance to its report,
// on both databases: the inbox, a failed attempt, the decision with its
// queued jobs, heads and release revisions, results early and on time,
// the report due and made (a closed change's, then the merged change's).
func TestGerritEventLifecycle(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		defer s.Close()
		st, err := s.Gerrit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		ev := record.Event{Server: "review", Type: event.TypePatchsetCreated, Project: "nginx", Branch: "master", Change: 7, PatchSet: 1, ReceivedAt: now}
		ids, err := st.Accept(ctx, []record.Accepted{
			{Event: ev, Via: "stream", Body: []byte(`{"type":"patchset-created"}`), OrderKey: "review/7"},
			{Event: record.Event{Server: "review", Type: "ref-updated", ReceivedAt: now, Action: decide.ActionNoise}, Via: "stream", Body: []byte("{}")},
		})
		if err != nil || len(ids) != 2 || ids[1] <= ids[0] {
			t.Fatalf("accept: %v %v", ids, err)
		}
		if n, err := st.PendingCount(ctx); err != nil || n != 1 {
			t.Fatalf("pending %d %v, want the event that is not noise", n, err)
		}
		if err := st.FailAttempt(ctx, ids[0], 1, now.Add(time.Minute), "gerrit down"); err != nil {
			t.Fatal(err)
		}
		pend, err := st.Pending(ctx, 10)
		if err != nil || len(pend) != 1 || pend[0].EventID != ids[0] || pend[0].Attempts != 1 || pend[0].OrderKey != "review/7" {
			t.Fatalf("pending %+v %v", pend, err)
		}
		if body, via, ok, err := st.Body(ctx, ids[0]); err != nil || !ok || via != "stream" || string(body) != `{"type":"patchset-created"}` {
			t.Fatalf("body %q %q %v %v", body, via, ok, err)
		}
		ev.ID, ev.Action, ev.JobIDs = ids[0], decide.ActionBuilt, []string{"1"}
		id, err := st.CommitQueued(ctx, record.Queued{Event: ev, DedupKey: "review/7/1",
			Jobs:  []record.Job{{JobID: "1", Server: "review", Kind: record.KindReview, Change: 7, PatchSet: 1, Release: "mos-9.0", Target: "bookworm", Package: "nginx"}},
			Heads: []record.Head{{Project: "nginx", Branch: "master", Revision: "abc"}}, Release: true}, now)
		if err != nil || id != ids[0] {
			t.Fatalf("commit queued: %d %v", id, err)
		}
		if _, _, ok, _ := st.Body(ctx, ids[0]); ok {
			t.Error("a decided event is still in the inbox")
		}
		if seen, err := st.Seen(ctx, "review/7/1"); err != nil || !seen {
			t.Errorf("dedup key seen %v %v", seen, err)
		}
		if err := st.AddDedup(ctx, "review/7/1", now); err != nil {
			t.Errorf("the same dedup key again: %v", err)
		}
		if ev, ok, err := st.ReleaseQueued(ctx, "review", "nginx", "master", "abc"); err != nil || !ok || ev != ids[0] {
			t.Errorf("release queued %d %v %v", ev, ok, err)
		}
		if heads, err := st.Heads(ctx, "review"); err != nil || len(heads) != 1 || heads[0].Revision != "abc" {
			t.Errorf("heads %+v %v", heads, err)
		}
		if err := st.SetHead(ctx, "review", "nginx", "master", "def", now); err != nil {
			t.Fatal(err)
		}
		if heads, _ := st.Heads(ctx, "review"); len(heads) != 1 || heads[0].Revision != "def" {
			t.Errorf("heads after a move %+v", heads)
		}
		if ps, err := st.LatestPatchSet(ctx, "review", 7); err != nil || ps != 1 {
			t.Errorf("latest patch set %d %v", ps, err)
		}
		if targets, err := st.ReviewTargets(ctx, "review", 7); err != nil || len(targets) != 1 || targets[0] != "bookworm" {
			t.Errorf("review targets %v %v", targets, err)
		}
		// A result before its job is recorded is kept, replaced by a
		// newer one, and taken once.
		for _, state := range []string{record.StateFailed, record.StateSucceeded} {
			if err := st.SaveEarly(ctx, record.Result{JobID: "2", State: state}, now); err != nil {
				t.Fatal(err)
			}
		}
		if early, err := st.TakeEarly(ctx, []string{"2", "3"}); err != nil || len(early) != 1 || early[0].State != record.StateSucceeded {
			t.Errorf("early results %+v %v", early, err)
		}
		if early, _ := st.TakeEarly(ctx, []string{"2"}); len(early) != 0 {
			t.Errorf("early result taken twice: %+v", early)
		}
		if due, err := st.Unreported(ctx, now.Add(-time.Hour), 0, 10); err != nil || len(due) != 0 {
			t.Errorf("due before the job finished: %v %v", due, err)
		}
		if ok, err := st.FinishJob(ctx, record.Result{JobID: "1", State: record.StateSucceeded, LogURL: "https://kiln/logs/1"}); err != nil || !ok {
			t.Fatalf("finish job 1: %v %v", ok, err)
		}
		if due, err := st.Unreported(ctx, now.Add(-time.Hour), 0, 10); err != nil || len(due) != 1 || due[0] != ids[0] {
			t.Errorf("due %v %v, want event %d", due, err, ids[0])
		}
		if n, err := st.CountUnreported(ctx, now.Add(-time.Hour)); err != nil || n["review"] != 1 {
			t.Errorf("count unreported %v %v", n, err)
		}
		if err := st.CloseReports(ctx, "review", 7, now); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseReports(ctx, "review", 7, now); err != nil {
			t.Errorf("close the reports twice: %v", err)
		}
		if ok, err := st.Reported(ctx, ids[0], 0); err != nil || !ok {
			t.Errorf("reported after close %v %v", ok, err)
		}
		// The release build's merged change is told on its own.
		if ch, err := st.EventChanges(ctx, ids[0]); err != nil || len(ch) != 1 || ch[0] != [2]int64{7, 1} {
			t.Errorf("event changes %v %v", ch, err)
		}
		if due, _ := st.Unreported(ctx, now.Add(-time.Hour), 0, 10); len(due) != 1 {
			t.Errorf("due before its change was told: %v", due)
		}
		for range 2 {
			if err := st.MarkReported(ctx, ids[0], 7, now); err != nil {
				t.Fatal(err)
			}
		}
		if due, _ := st.Unreported(ctx, now.Add(-time.Hour), 0, 10); len(due) != 0 {
			t.Errorf("due after everything was told: %v", due)
		}
		evs, err := st.ListEvents(ctx, 10, false)
		if err != nil || len(evs) != 1 || evs[0].Action != decide.ActionBuilt || len(evs[0].JobIDs) != 1 || !evs[0].ReceivedAt.Equal(now) {
			t.Errorf("events %+v %v, want the built one without the noise", evs, err)
		}
		if all, _ := st.ListEvents(ctx, 10, true); len(all) != 2 {
			t.Errorf("all events %+v, want the noise too", all)
		}
	})
}

package gerrit

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStoreUpgradesJobsTable: a database made when gerrit_jobs held one
// event per job keeps its rows and, once opened, records a job for a
// second event.
func TestStoreUpgradesJobsTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	old, err := os.ReadFile(filepath.Join("testdata", "gerrit_jobs-one-event.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, string(old)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second open finds the table upgraded
		if _, err := openStore(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	st, err := openStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.commitQueued(ctx, queued{
		event: EventRecord{Server: "review", Type: TypeCommentAdded, Change: 32, PatchSet: 1, ReceivedAt: time.Now(), Action: ActionBuilt},
		jobs:  []jobRow{{JobID: "7", Server: "review", Kind: kindReview, Change: 32, PatchSet: 1, Release: "mos-9.0", Target: "trusty-amd64", Package: "nginx"}},
	}, time.Now())
	if err != nil {
		t.Fatalf("record job 7 for a second event: %v", err)
	}
	known, err := st.knownResults(ctx, []string{"7"}, kindReview)
	if err != nil || len(known) != 1 || known[0].State != StateSucceeded {
		t.Fatalf("known results %+v (%v), want job 7 succeeded from before the upgrade", known, err)
	}
	ok, err := st.finishJob(ctx, BuildResult{JobID: "7", State: StateFailed})
	if err != nil || !ok {
		t.Fatalf("finishJob: %v %v, want job 7 recorded", ok, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_jobs WHERE job_id = '7' AND state = ? AND change_num IN (31, 32)`, StateFailed).Scan(&n); err != nil || n != 2 {
		t.Fatalf("job 7 failed for %d events (%v), want both", n, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'gerrit_jobs_event'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("index gerrit_jobs_event: %d %v", n, err)
	}
}

package store

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// A SQLite database written by the coordinator before schema versions
// (testdata/before-schema-version.db.gz: two jobs, a revision, a seal and
// a Gerrit event with its job) opens at the newest version with its
// contents, and takes new writes.
func TestOpenMigratesDatabaseOfBeforeSchemaVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "coordinator.db")
	gunzip(t, filepath.Join("testdata", "before-schema-version.db.gz"), path)
	for range 2 { // the second open finds nothing to do
		s := open(t, path)
		var v int
		if err := s.DB().QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(sqliteMigrations) {
			t.Fatalf("schema version %d (%v), want %d", v, err, len(sqliteMigrations))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, path)
	defer s.Close()
	j, err := s.Get(ctx, "1")
	if err != nil || j.State != job.Succeeded || j.Version != 3 || j.Spec.Build.Package != "hello" {
		t.Fatalf("job 1: %+v %v", j, err)
	}
	for _, f := range []Filter{{Change: 4711}, {Origin: "review build"}, {Release: "mos-9.0"}} {
		jobs, _, err := s.Query(ctx, f)
		if err != nil || len(jobs) != 1 || jobs[0].ID != "1" {
			t.Errorf("query %+v: %v %v, want job 1", f, jobs, err)
		}
	}
	if n, err := s.NextRevision(ctx, "mos-9.0", "hello"); err != nil || n != 2 {
		t.Errorf("next revision %d %v, want 2", n, err)
	}
	if seal, err := s.Sealed(ctx, "mos-9.0"); err != nil || !seal.Sealed || seal.By != "alice" {
		t.Errorf("seal %+v %v", seal, err)
	}
	if err := s.Put(ctx, &job.Job{ID: "3", Seq: 3, State: job.Queued, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}, Origin: "cli"}}); err != nil {
		t.Fatal(err)
	}
	if jobs, _, err := s.Query(ctx, Filter{Origin: "cli"}); err != nil || len(jobs) != 2 {
		t.Errorf("origin cli: %v %v, want jobs 3 and 2", jobs, err)
	}
	g, err := s.Gerrit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := g.LatestPatchSet(ctx, "review", 4711); err != nil || ps != 2 {
		t.Errorf("latest patch set %d %v, want 2", ps, err)
	}
	if _, err := g.CommitQueued(ctx, record.Queued{Event: record.Event{Server: "review", Type: "comment-added", Change: 4711, PatchSet: 3, ReceivedAt: time.Now(), Action: "built"},
		Jobs: []record.Job{{JobID: "1", Server: "review", Kind: record.KindReview, Change: 4711, PatchSet: 3, Release: "mos-9.0", Target: "bookworm", Package: "hello"}}}, time.Now()); err != nil {
		t.Errorf("a second event for job 1: %v", err)
	}
}

// A database whose schema is newer than the coordinator's is refused with
// a message that says so, on both databases.
func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		ctx := context.Background()
		s := open(t, where)
		if _, err := s.DB().ExecContext(ctx, `UPDATE schema_version SET version = 1000`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := Open(ctx, where)
		if err == nil || !strings.Contains(err.Error(), "version 1000, newer than this coordinator knows") {
			t.Fatalf("open: %v, want the schema refused as newer", err)
		}
	})
}

// On PostgreSQL the origin search has its trigram index (pg_trgm comes
// with Debian's postgresql package).
func TestPostgresOriginTrigramIndex(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, where string) {
		s := open(t, where)
		defer s.Close()
		if s.d != postgresDialect {
			return
		}
		var n int
		if err := s.DB().QueryRow(`SELECT count(*) FROM pg_indexes WHERE indexname = 'jobs_origin_trgm'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("index jobs_origin_trgm: %d %v", n, err)
		}
	})
}

func TestRebind(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`SELECT 1`: `SELECT 1`,
		`SELECT a FROM t WHERE b = ? AND c IN (?,?)`:       `SELECT a FROM t WHERE b = $1 AND c IN ($2,$3)`,
		`SELECT '?' , x LIKE ? ESCAPE '\' AND y = ?`:       `SELECT '?' , x LIKE $1 ESCAPE '\' AND y = $2`,
		`INSERT INTO t VALUES ('it''s ?', ?)`:              `INSERT INTO t VALUES ('it''s ?', $1)`,
		`SELECT ((spec::jsonb) #>> '{build,release}') = ?`: `SELECT ((spec::jsonb) #>> '{build,release}') = $1`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsFull(t *testing.T) {
	t.Parallel()
	if !IsFull(fmt.Errorf("write job 1: %w", &pgconn.PgError{Code: "53100"})) {
		t.Error("PostgreSQL's disk_full is not full")
	}
	if IsFull(fmt.Errorf("write job 1: %w", &pgconn.PgError{Code: "23505"})) {
		t.Error("a unique violation is full")
	}
}

func gunzip(t *testing.T, from, to string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A PostgreSQL database of the schema before the origin column, with
// jobs, migrates to the newest version, and its jobs are found by origin.
func TestPostgresOriginColumnMigratesJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	where := storetest.Postgres(t)
	var epoch atomic.Int64
	db, _, err := openDB(where, &epoch)
	if err != nil {
		t.Fatal(err)
	}
	old := *postgresDialect
	old.migrations = postgresMigrations[:len(postgresMigrations)-1]
	if old.migrations[len(old.migrations)-1].name != "fence once per transaction" {
		t.Fatalf("migration before the origin column: %q", old.migrations[len(old.migrations)-1].name)
	}
	if err := migrate(ctx, db, &old); err != nil {
		t.Fatal(err)
	}
	for i, origin := range []string{"cli", "gerrit g: review build of change 7 patch set 1 (team/hello main)"} {
		args, err := row(&job.Job{ID: fmt.Sprint(i + 1), Seq: int64(i + 1), CreatedAt: time.Now(),
			Spec: job.Spec{Kind: job.Command, Command: []string{"true"}, Origin: origin}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, upsert, args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := open(t, where)
	defer s.Close()
	jobs, _, err := s.Query(ctx, Filter{Origin: "team/hello", Limit: 10})
	if err != nil || len(jobs) != 1 || jobs[0].ID != "2" {
		t.Fatalf("jobs of origin team/hello after the migration: %v %v, want job 2", jobs, err)
	}
}

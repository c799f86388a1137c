// Package store keeps the coordinator's state in an embedded SQLite
// database or, for coordinators that share it, in PostgreSQL (dialect.go
// holds what differs). Writes are group-committed: many callers' changes
// go into one transaction, and each caller returns only once its change is
// durable.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// ErrNotFound means no job has that id.
var ErrNotFound = errors.New("job not found")

// Store is safe for concurrent use.
type Store struct {
	db      *sql.DB
	d       *dialect
	upsert  *sql.Stmt // prepared once; every batch commit uses it
	addNote *sql.Stmt
	writes  chan writeReq
	closed  chan struct{}
	// epoch is the leader epoch this coordinator writes with (Lead).
	epoch atomic.Int64
}

type writeReq struct {
	jobs     []*job.Job
	notes    []Note
	requests []Request
	done     chan error
}

// Note is a line the coordinator adds to a job's log ("attempt 2 on worker
// w1", "finished: succeeded"). Notes are kept here rather than in the log
// file so that a job whose worker prints nothing needs no file at all
// (creating one costs more than the rest of a dispatch on some file
// systems). At is the length of the worker's output when the note was
// added: it places the note in the log. Seq orders a job's notes.
type Note struct {
	JobID string
	Seq   int
	At    int64
	Line  string
}

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	id TEXT PRIMARY KEY,
	seq INTEGER NOT NULL UNIQUE,
	state INTEGER NOT NULL,
	spec TEXT NOT NULL,
	build_key TEXT NOT NULL DEFAULT '',
	rebuild INTEGER NOT NULL DEFAULT 0,
	rebuild_of TEXT NOT NULL DEFAULT '',
	verify INTEGER NOT NULL DEFAULT 0,
	attempt INTEGER NOT NULL DEFAULT 0,
	worker TEXT NOT NULL DEFAULT '',
	exit_code INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	artifacts TEXT NOT NULL DEFAULT '[]',
	record TEXT NOT NULL DEFAULT '',
	differing TEXT NOT NULL DEFAULT '[]',
	publish TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	started_at INTEGER NOT NULL DEFAULT 0,
	finished_at INTEGER NOT NULL DEFAULT 0
);
-- Only package builds have a build key: command jobs, most of the traffic,
-- need not update this index on every state change.
DROP INDEX IF EXISTS jobs_build_key;
CREATE INDEX IF NOT EXISTS jobs_build_key_set ON jobs(build_key, state) WHERE build_key != '';
CREATE TABLE IF NOT EXISTS job_notes (
	job_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	at INTEGER NOT NULL,
	line TEXT NOT NULL,
	PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drained_workers (
	name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS revisions (
	release TEXT NOT NULL,
	package TEXT NOT NULL,
	last INTEGER NOT NULL,
	PRIMARY KEY (release, package)
);
`

// Open opens (creating if needed) the store at where: a SQLite database
// file, or a PostgreSQL database given by its URL (postgres://...). Its
// schema is migrated to the newest version.
func Open(ctx context.Context, where string) (*Store, error) {
	s := &Store{writes: make(chan writeReq, 1024), closed: make(chan struct{})}
	db, d, err := openDB(where, &s.epoch)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", redact(where), err)
	}
	if err := migrate(ctx, db, d); err != nil {
		db.Close()
		return nil, fmt.Errorf("state database %s: %w", redact(where), err)
	}
	up, err := db.PrepareContext(ctx, upsert)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare job upsert in %s: %w", redact(where), err)
	}
	an, err := db.PrepareContext(ctx, insertNote)
	if err != nil {
		up.Close()
		db.Close()
		return nil, fmt.Errorf("prepare note insert in %s: %w", redact(where), err)
	}
	s.db, s.d, s.upsert, s.addNote = db, d, up, an
	go s.writer()
	return s, nil
}

// DB returns the database for packages that keep tables of their own.
func (s *Store) DB() *sql.DB { return s.db }

// Close waits for pending writes and closes the database.
func (s *Store) Close() error {
	close(s.writes)
	<-s.closed
	s.upsert.Close()
	s.addNote.Close()
	return s.db.Close()
}

// Put writes jobs (insert or update) and returns when they are durable.
func (s *Store) Put(ctx context.Context, jobs ...*job.Job) error {
	return s.Write(ctx, jobs, nil)
}

// Write writes jobs (insert or update) and log notes in one transaction and
// returns when they are durable. A note that was already written (same job
// and seq) is replaced.
func (s *Store) Write(ctx context.Context, jobs []*job.Job, notes []Note) error {
	if len(jobs) == 0 && len(notes) == 0 {
		return nil
	}
	return s.send(ctx, writeReq{jobs: jobs, notes: notes, done: make(chan error, 1)})
}

// send hands req to the writer and returns once its batch is durable
// (or ctx ends).
func (s *Store) send(ctx context.Context, req writeReq) error {
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) writer() {
	defer close(s.closed)
	for first := range s.writes {
		batch := []writeReq{first}
	drain:
		for len(batch) < 512 {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		err := s.commit(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

const insertNote = `INSERT INTO job_notes (job_id, seq, at, line) VALUES (?,?,?,?)
ON CONFLICT (job_id, seq) DO UPDATE SET at = excluded.at, line = excluded.line`

// upsert writes a job unless the store already has a newer version of it:
// two writers racing (an assignment and a cancel, say) cannot put an older
// state back.
const upsert = `INSERT INTO jobs (id, seq, state, spec, build_key, rebuild, rebuild_of, verify, attempt, worker,
	exit_code, reason, artifacts, record, differing, publish, created_at, started_at, finished_at, version)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(id) DO UPDATE SET state=excluded.state, attempt=excluded.attempt, worker=excluded.worker,
	exit_code=excluded.exit_code, reason=excluded.reason, artifacts=excluded.artifacts, record=excluded.record,
	differing=excluded.differing, publish=excluded.publish, started_at=excluded.started_at,
	finished_at=excluded.finished_at, spec=excluded.spec, version=excluded.version
WHERE excluded.version >= jobs.version`

func (s *Store) commit(batch []writeReq) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	// The statement was prepared on the only connection, so the
	// transaction reuses it instead of parsing the upsert again for every
	// batch.
	stmt := tx.StmtContext(ctx, s.upsert)
	defer stmt.Close()
	var notes *sql.Stmt
	for _, r := range batch {
		for _, n := range r.notes {
			if notes == nil {
				notes = tx.StmtContext(ctx, s.addNote)
				defer notes.Close()
			}
			if _, err := notes.ExecContext(ctx, n.JobID, n.Seq, n.At, n.Line); err != nil {
				return fmt.Errorf("write note %d of job %s: %w", n.Seq, n.JobID, err)
			}
		}
		for _, j := range r.jobs {
			args, err := row(j)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("write job %s: %w", j.ID, err)
			}
		}
		if err := writeRequests(ctx, tx, r.requests); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func row(j *job.Job) ([]any, error) {
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode job %s spec: %w", j.ID, err)
	}
	arts, _ := json.Marshal(nonNil(j.Artifacts))
	diff, _ := json.Marshal(nonNilS(j.Differing))
	rec := ""
	if j.Record != nil {
		b, err := json.Marshal(j.Record)
		if err != nil {
			return nil, fmt.Errorf("encode job %s record: %w", j.ID, err)
		}
		rec = string(b)
	}
	return []any{j.ID, j.Seq, int(j.State), string(spec), j.BuildKey, b2i(j.Rebuild), j.RebuildOf, b2i(j.Verify),
		j.Attempt, j.Worker, j.ExitCode, j.Reason, string(arts), rec, string(diff), j.Publish,
		unix(j.CreatedAt), unix(j.StartedAt), unix(j.FinishedAt), j.Version}, nil
}

func nonNil(a []job.Artifact) []job.Artifact {
	if a == nil {
		return []job.Artifact{}
	}
	return a
}

func nonNilS(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const columns = `id, seq, state, spec, build_key, rebuild, rebuild_of, verify, attempt, worker, exit_code, reason,
	artifacts, record, differing, publish, created_at, started_at, finished_at, version`

type scanner interface{ Scan(dest ...any) error }

func scan(r scanner) (*job.Job, error) {
	var j job.Job
	var state, rebuild, verify int
	var spec, arts, rec, diff string
	var c, st, f int64
	if err := r.Scan(&j.ID, &j.Seq, &state, &spec, &j.BuildKey, &rebuild, &j.RebuildOf, &verify, &j.Attempt,
		&j.Worker, &j.ExitCode, &j.Reason, &arts, &rec, &diff, &j.Publish, &c, &st, &f, &j.Version); err != nil {
		return nil, err
	}
	j.State, j.Rebuild, j.Verify = job.State(state), rebuild == 1, verify == 1
	j.CreatedAt, j.StartedAt, j.FinishedAt = fromUnix(c), fromUnix(st), fromUnix(f)
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return nil, fmt.Errorf("decode job %s spec: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(arts), &j.Artifacts); err != nil {
		return nil, fmt.Errorf("decode job %s artifacts: %w", j.ID, err)
	}
	if err := json.Unmarshal([]byte(diff), &j.Differing); err != nil {
		return nil, fmt.Errorf("decode job %s differing: %w", j.ID, err)
	}
	if rec != "" {
		j.Record = &job.Record{}
		if err := json.Unmarshal([]byte(rec), j.Record); err != nil {
			return nil, fmt.Errorf("decode job %s record: %w", j.ID, err)
		}
	}
	return &j, nil
}

// Get returns one job.
func (s *Store) Get(ctx context.Context, id string) (*job.Job, error) {
	j, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return j, nil
}

// List returns jobs in the given states (all when none), newest first.
func (s *Store) List(ctx context.Context, states []job.State, limit int) ([]*job.Job, error) {
	q := `SELECT ` + columns + ` FROM jobs`
	var args []any
	if len(states) > 0 {
		ph := make([]string, len(states))
		for i, st := range states {
			ph[i] = "?"
			args = append(args, int(st))
		}
		q += ` WHERE state IN (` + strings.Join(ph, ",") + `)`
	}
	q += ` ORDER BY seq DESC`
	if limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []*job.Job
	for rows.Next() {
		j, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Live returns the queued and running jobs, oldest first.
func (s *Store) Live(ctx context.Context) ([]*job.Job, error) {
	jobs, err := s.List(ctx, []job.State{job.Queued, job.Running}, 0)
	for i, k := 0, len(jobs)-1; i < k; i, k = i+1, k-1 {
		jobs[i], jobs[k] = jobs[k], jobs[i]
	}
	return jobs, err
}

// Notes returns a job's log notes in order.
func (s *Store) Notes(ctx context.Context, jobID string) ([]Note, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, at, line FROM job_notes WHERE job_id = ? ORDER BY seq`, jobID)
	if err != nil {
		return nil, fmt.Errorf("read notes of job %s: %w", jobID, err)
	}
	defer rows.Close()
	var out []Note
	for rows.Next() {
		n := Note{JobID: jobID}
		if err := rows.Scan(&n.Seq, &n.At, &n.Line); err != nil {
			return nil, fmt.Errorf("read notes of job %s: %w", jobID, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// LastSeq returns the highest job sequence number used.
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM jobs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read last job number: %w", err)
	}
	return n.Int64, nil
}

// ByBuildKey returns the newest job with the build key that succeeded or is
// still live, or nil.
func (s *Store) ByBuildKey(ctx context.Context, key string) (*job.Job, error) {
	j, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM jobs WHERE build_key = ? AND build_key != '' AND state IN (?,?,?)
		ORDER BY seq DESC LIMIT 1`, key, int(job.Queued), int(job.Running), int(job.Succeeded)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find build key %s: %w", key, err)
	}
	return j, nil
}

// NextRevision returns the next release revision for a package in a
// release, starting at 1, durable before it returns.
func (s *Store) NextRevision(ctx context.Context, release, pkg string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO revisions (release, package, last) VALUES (?, ?, 1)
		ON CONFLICT(release, package) DO UPDATE SET last = revisions.last + 1 RETURNING last`, release, pkg).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("next revision of %s in %s: %w", pkg, release, err)
	}
	return n, nil
}

// CountByState counts all jobs by state.
func (s *Store) CountByState(ctx context.Context) (map[job.State]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := map[job.State]int{}
	for rows.Next() {
		var st, n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[job.State(st)] = n
	}
	return out, rows.Err()
}

// SetDrained records that an operator drained (or undrained) a worker, so
// that a coordinator restart keeps it drained.
func (s *Store) SetDrained(ctx context.Context, name string, on bool) error {
	q := `DELETE FROM drained_workers WHERE name = ?`
	if on {
		q = `INSERT INTO drained_workers (name) VALUES (?) ON CONFLICT(name) DO NOTHING`
	}
	if _, err := s.db.ExecContext(ctx, q, name); err != nil {
		return fmt.Errorf("record drain of worker %s: %w", name, err)
	}
	return nil
}

// Drained lists the drained workers.
func (s *Store) Drained(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM drained_workers ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list drained workers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// gerritSchema holds the Gerrit intake's tables; all are prefixed gerrit_.
const gerritSchema = `
CREATE TABLE IF NOT EXISTS gerrit_events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	server      TEXT NOT NULL,
	type        TEXT NOT NULL,
	project     TEXT NOT NULL DEFAULT '',
	branch      TEXT NOT NULL DEFAULT '',
	change_num  INTEGER NOT NULL DEFAULT 0,
	patch_set   INTEGER NOT NULL DEFAULT 0,
	revision    TEXT NOT NULL DEFAULT '',
	received_at INTEGER NOT NULL,
	action      TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	job_ids     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS gerrit_events_change ON gerrit_events (server, change_num);
CREATE TABLE IF NOT EXISTS gerrit_dedup (
	key        TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gerrit_heads (
	server     TEXT NOT NULL,
	project    TEXT NOT NULL,
	branch     TEXT NOT NULL,
	revision   TEXT NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (server, project, branch)
);
CREATE TABLE IF NOT EXISTS gerrit_release_revs (
	server     TEXT NOT NULL,
	project    TEXT NOT NULL,
	branch     TEXT NOT NULL,
	revision   TEXT NOT NULL,
	event_id   INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (server, project, branch, revision)
);
CREATE TABLE IF NOT EXISTS gerrit_early_results (
	job_id     TEXT PRIMARY KEY,
	state      TEXT NOT NULL,
	log_url    TEXT NOT NULL,
	published  TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gerrit_event_changes (
	event_id   INTEGER NOT NULL,
	change_num INTEGER NOT NULL,
	patch_set  INTEGER NOT NULL,
	PRIMARY KEY (event_id, change_num)
);
CREATE TABLE IF NOT EXISTS gerrit_reports (
	event_id    INTEGER NOT NULL,
	change_num  INTEGER NOT NULL,
	reported_at INTEGER NOT NULL,
	PRIMARY KEY (event_id, change_num)
);
`

// gerritJobsTable is the gerrit_jobs table under a name: a job and an event that
// asked for it. One job serves several events when their builds have the
// same build key (a recheck of a running build, two changes at one commit).
const gerritJobsTable = `CREATE TABLE IF NOT EXISTS %s (
	job_id     TEXT NOT NULL,
	event_id   INTEGER NOT NULL,
	server     TEXT NOT NULL,
	kind       TEXT NOT NULL,
	change_num INTEGER NOT NULL DEFAULT 0,
	patch_set  INTEGER NOT NULL DEFAULT 0,
	revision   TEXT NOT NULL DEFAULT '',
	release    TEXT NOT NULL,
	target     TEXT NOT NULL,
	package    TEXT NOT NULL,
	state      TEXT NOT NULL DEFAULT '',
	log_url    TEXT NOT NULL DEFAULT '',
	published  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, event_id)
)`

// Gerrit keeps the Gerrit intake's tables (all prefixed gerrit_) in the
// coordinator's database; it implements gerrit.Store.
type Gerrit struct {
	db *sql.DB
}

// Gerrit returns the Gerrit intake's storage.
func (s *Store) Gerrit(ctx context.Context) (*Gerrit, error) {
	return &Gerrit{db: s.db}, nil
}

// createGerritTables makes the Gerrit intake's tables in a SQLite database
// of before schema_version, or brings those it has up to date.
func createGerritTables(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{gerritSchema, gerritInboxSchema, fmt.Sprintf(gerritJobsTable, "gerrit_jobs")} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create gerrit tables: %w", err)
		}
	}
	if err := shareJobs(ctx, tx); err != nil {
		return fmt.Errorf("upgrade gerrit_jobs: %w", err)
	}
	for _, q := range []string{
		`CREATE INDEX IF NOT EXISTS gerrit_jobs_event ON gerrit_jobs (event_id)`,
		`CREATE INDEX IF NOT EXISTS gerrit_jobs_change ON gerrit_jobs (server, change_num, kind)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create gerrit tables: %w", err)
		}
	}
	return nil
}

// shareJobs gives a gerrit_jobs table made when a job had one event its
// primary key of job and event. SQLite changes a primary key only by
// copying the table.
func shareJobs(ctx context.Context, tx *sql.Tx) error {
	var pk int
	if err := tx.QueryRowContext(ctx, `SELECT pk FROM pragma_table_info('gerrit_jobs') WHERE name = 'event_id'`).Scan(&pk); err != nil {
		return err
	}
	if pk > 0 {
		return nil
	}
	for _, q := range []string{
		fmt.Sprintf(gerritJobsTable, "gerrit_jobs_shared"),
		`INSERT INTO gerrit_jobs_shared (` + gerritJobColumns + `) SELECT ` + gerritJobColumns + ` FROM gerrit_jobs`,
		`DROP TABLE gerrit_jobs`,
		`ALTER TABLE gerrit_jobs_shared RENAME TO gerrit_jobs`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func insertEvent(ctx context.Context, x execer, r record.Event) (int64, error) {
	var id int64
	err := x.QueryRowContext(ctx, `INSERT INTO gerrit_events
		(server, type, project, branch, change_num, patch_set, revision, received_at, action, reason, job_ids)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Server, r.Type, r.Project, r.Branch, r.Change, r.PatchSet, r.Revision,
		r.ReceivedAt.UnixNano(), r.Action, r.Reason, joinIDs(r.JobIDs)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert gerrit event: %w", err)
	}
	return id, nil
}

func joinIDs(ids []string) string { return strings.Join(ids, ",") }

// recordEvent records a decision: on the accepted event's row when r.ID is
// set, on a new row otherwise (the reconciler's).
func (s *Gerrit) RecordEvent(ctx context.Context, r record.Event) (int64, error) {
	if r.ID == 0 {
		return insertEvent(ctx, s.db, r)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("record gerrit event: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	if err := recordDecision(ctx, tx, r); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("record gerrit event: commit: %w", err)
	}
	return r.ID, nil
}

// Prune keeps the newest keep events and every undecided one, noise for
// a day, dedup keys for dedupAge, and what belonged to the events kept.
func (s *Gerrit) Prune(ctx context.Context, keep int, dedupAge time.Duration, now time.Time) error {
	// Undecided events stay whatever their age.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_events WHERE id <= (SELECT MAX(id) FROM gerrit_events) - ?
		AND id NOT IN (SELECT event_id FROM gerrit_inbox)`, keep); err != nil {
		return fmt.Errorf("prune gerrit events: %w", err)
	}
	// Noise is kept a day, so that a flood of it does not push the events
	// that mattered out of the log.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_events WHERE action = ? AND received_at < ?`,
		decide.ActionNoise, now.Add(-noiseFor).UnixNano()); err != nil {
		return fmt.Errorf("prune gerrit events: %w", err)
	}
	// What belonged to the events gone: their jobs can no longer be
	// reported. (Release revisions stay: they keep a revision from being
	// built for release twice.)
	for _, table := range []string{"gerrit_jobs", "gerrit_reports", "gerrit_event_changes"} {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+table+` WHERE event_id NOT IN (SELECT id FROM gerrit_events)`); err != nil {
			return fmt.Errorf("prune %s: %w", table, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_dedup WHERE created_at < ?`, now.Add(-dedupAge).UnixNano()); err != nil {
		return fmt.Errorf("prune gerrit dedup keys: %w", err)
	}
	// Results of jobs that are not the intake's.
	if _, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_early_results WHERE created_at < ?`, now.Add(-24*time.Hour).UnixNano()); err != nil {
		return fmt.Errorf("prune early results: %w", err)
	}
	return nil
}

// Seen tells whether an event with the dedup key was decided.
func (s *Gerrit) Seen(ctx context.Context, key string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_dedup WHERE key = ?`, key).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up dedup key: %w", err)
	}
	return n > 0, nil
}

// ReleaseQueued tells whether a release build of the branch at rev was
// queued, and by which event.
func (s *Gerrit) ReleaseQueued(ctx context.Context, server, project, branch, rev string) (int64, bool, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT event_id FROM gerrit_release_revs
		WHERE server = ? AND project = ? AND branch = ? AND revision = ?`, server, project, branch, rev).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up release revision: %w", err)
	}
	return id, true, nil
}

// latestPatchSet is the newest patch set of change built so far.
func (s *Gerrit) LatestPatchSet(ctx context.Context, server string, change int64) (int64, error) {
	var ps sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(patch_set) FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ?`,
		server, change, record.KindReview).Scan(&ps)
	if err != nil {
		return 0, fmt.Errorf("look up patch sets of change %d: %w", change, err)
	}
	return ps.Int64, nil
}

// reviewTargets lists the targets of change's review builds.
func (s *Gerrit) ReviewTargets(ctx context.Context, server string, change int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT target FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ? ORDER BY target`,
		server, change, record.KindReview)
	if err != nil {
		return nil, fmt.Errorf("list review targets of change %d: %w", change, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("list review targets of change %d: %w", change, err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// closeReports marks the reports of all review builds of change complete,
// so that nothing is posted on a change that was closed: neither for
// builds cancelled with it nor for builds that finished meanwhile.
// Callers hold reportMu.
func (s *Gerrit) CloseReports(ctx context.Context, server string, change int64, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO gerrit_reports (event_id, change_num, reported_at)
		SELECT DISTINCT event_id, 0, CAST(? AS BIGINT) FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ?
		ON CONFLICT DO NOTHING`,
		now.UnixNano(), server, change, record.KindReview)
	if err != nil {
		return fmt.Errorf("close reports of change %d: %w", change, err)
	}
	return nil
}

// Heads lists the tracked branches of server.
func (s *Gerrit) Heads(ctx context.Context, server string) ([]record.Head, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT project, branch, revision FROM gerrit_heads WHERE server = ? ORDER BY project, branch`, server)
	if err != nil {
		return nil, fmt.Errorf("list tracked branches: %w", err)
	}
	defer rows.Close()
	var out []record.Head
	for rows.Next() {
		var h record.Head
		if err := rows.Scan(&h.Project, &h.Branch, &h.Revision); err != nil {
			return nil, fmt.Errorf("list tracked branches: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

func setHead(ctx context.Context, x execer, server, project, branch, rev string, now time.Time) error {
	_, err := x.ExecContext(ctx, `INSERT INTO gerrit_heads (server, project, branch, revision, updated_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (server, project, branch) DO UPDATE SET revision = excluded.revision, updated_at = excluded.updated_at`,
		server, project, branch, rev, now.UnixNano())
	if err != nil {
		return fmt.Errorf("set head of %s %s: %w", project, branch, err)
	}
	return nil
}

// SetHead records the head of a tracked branch.
func (s *Gerrit) SetHead(ctx context.Context, server, project, branch, rev string, now time.Time) error {
	return setHead(ctx, s.db, server, project, branch, rev, now)
}

// DropHead stops tracking a branch.
func (s *Gerrit) DropHead(ctx context.Context, server, project, branch string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_heads WHERE server = ? AND project = ? AND branch = ?`, server, project, branch)
	if err != nil {
		return fmt.Errorf("stop tracking %s %s: %w", project, branch, err)
	}
	return nil
}

// AddDedup records an event's dedup key.
func (s *Gerrit) AddDedup(ctx context.Context, key string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO gerrit_dedup (key, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, key, now.UnixNano())
	if err != nil {
		return fmt.Errorf("add dedup key: %w", err)
	}
	return nil
}

// CommitQueued writes down queued builds with their event in one
// transaction and returns the event's id.
func (s *Gerrit) CommitQueued(ctx context.Context, q record.Queued, now time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	if q.Supersede && q.Event.Change > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE gerrit_events SET action = ?, reason = ?
			WHERE server = ? AND change_num = ? AND patch_set < ? AND action = ? AND type IN (?, ?)`,
			decide.ActionSuperseded, fmt.Sprintf("patch set %d replaced it", q.Event.PatchSet),
			q.Event.Server, q.Event.Change, q.Event.PatchSet, decide.ActionBuilt, event.TypePatchsetCreated, event.TypeCommentAdded); err != nil {
			return 0, fmt.Errorf("mark superseded: %w", err)
		}
	}
	id := q.Event.ID
	if id == 0 {
		if id, err = insertEvent(ctx, tx, q.Event); err != nil {
			return 0, err
		}
	} else if err := recordDecision(ctx, tx, q.Event); err != nil {
		return 0, err
	}
	if q.DedupKey != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO gerrit_dedup (key, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, q.DedupKey, now.UnixNano()); err != nil {
			return 0, fmt.Errorf("add dedup key: %w", err)
		}
	}
	for _, h := range q.Heads {
		if err := setHead(ctx, tx, q.Event.Server, h.Project, h.Branch, h.Revision, now); err != nil {
			return 0, err
		}
		if q.Release {
			if _, err := tx.ExecContext(ctx, `INSERT INTO gerrit_release_revs
				(server, project, branch, revision, event_id, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				q.Event.Server, h.Project, h.Branch, h.Revision, id, now.UnixNano()); err != nil {
				return 0, fmt.Errorf("record release revision: %w", err)
			}
		}
	}
	if q.Release && q.Event.Change > 0 {
		if err := attachChange(ctx, tx, id, q.Event.Change, q.Event.PatchSet); err != nil {
			return 0, err
		}
	}
	for _, j := range q.Jobs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO gerrit_jobs
			(job_id, event_id, server, kind, change_num, patch_set, revision, release, target, package)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			j.JobID, id, j.Server, j.Kind, j.Change, j.PatchSet, j.Revision, j.Release, j.Target, j.Package); err != nil {
			return 0, fmt.Errorf("record job %s: %w", j.JobID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return id, nil
}

// attachChange adds a merged change to those told about a release build.
func attachChange(ctx context.Context, x execer, eventID, change, patchSet int64) error {
	_, err := x.ExecContext(ctx, `INSERT INTO gerrit_event_changes (event_id, change_num, patch_set)
		VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, eventID, change, patchSet)
	if err != nil {
		return fmt.Errorf("attach change %d to event %d: %w", change, eventID, err)
	}
	return nil
}

// AttachChange adds a merged change to those told about a release build.
func (s *Gerrit) AttachChange(ctx context.Context, eventID, change, patchSet int64) error {
	return attachChange(ctx, s.db, eventID, change, patchSet)
}

// eventChanges lists the merged changes a release build reports to.
func (s *Gerrit) EventChanges(ctx context.Context, eventID int64) ([][2]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT change_num, patch_set FROM gerrit_event_changes WHERE event_id = ? ORDER BY change_num`, eventID)
	if err != nil {
		return nil, fmt.Errorf("list changes of event %d: %w", eventID, err)
	}
	defer rows.Close()
	var out [][2]int64
	for rows.Next() {
		var c [2]int64
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			return nil, fmt.Errorf("list changes of event %d: %w", eventID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// dueWhere selects the events received since a time (the argument) whose
// jobs have all finished but whose report is not complete. Only the events
// still in the log are read.
const dueWhere = `e.received_at > ?
	AND EXISTS (SELECT 1 FROM gerrit_jobs j WHERE j.event_id = e.id)
	AND NOT EXISTS (SELECT 1 FROM gerrit_jobs j WHERE j.event_id = e.id AND j.state = '')
	AND (NOT EXISTS (SELECT 1 FROM gerrit_reports r WHERE r.event_id = e.id AND r.change_num = 0)
		OR EXISTS (SELECT 1 FROM gerrit_event_changes c WHERE c.event_id = e.id
			AND NOT EXISTS (SELECT 1 FROM gerrit_reports r WHERE r.event_id = e.id AND r.change_num = c.change_num)))`

// unreported lists, oldest first, up to limit events after the event id
// after, received since since, whose report is due.
func (s *Gerrit) Unreported(ctx context.Context, since time.Time, after int64, limit int) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT e.id FROM gerrit_events e
		WHERE `+dueWhere+` AND e.id > ? ORDER BY e.id LIMIT ?`, since.UnixNano(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list unreported events: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list unreported events: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// countUnreported counts, by server, the events received since since whose
// report is due.
func (s *Gerrit) CountUnreported(ctx context.Context, since time.Time) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT e.server, COUNT(*) FROM gerrit_events e
		WHERE `+dueWhere+` GROUP BY e.server`, since.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("count unreported events: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var server string
		var n int
		if err := rows.Scan(&server, &n); err != nil {
			return nil, fmt.Errorf("count unreported events: %w", err)
		}
		out[server] = n
	}
	return out, rows.Err()
}

// EventJobs lists the jobs submitted for an event.
func (s *Gerrit) EventJobs(ctx context.Context, eventID int64) ([]record.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+gerritJobColumns+` FROM gerrit_jobs WHERE event_id = ? ORDER BY target, job_id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("read jobs of event %d: %w", eventID, err)
	}
	return scanJobs(rows)
}

func scanJobs(rows *sql.Rows) ([]record.Job, error) {
	defer rows.Close()
	var out []record.Job
	for rows.Next() {
		var j record.Job
		if err := rows.Scan(&j.JobID, &j.EventID, &j.Server, &j.Kind, &j.Change, &j.PatchSet, &j.Revision,
			&j.Release, &j.Target, &j.Package, &j.State, &j.LogURL, &j.Publish); err != nil {
			return nil, fmt.Errorf("read jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

const gerritJobColumns = `job_id, event_id, server, kind, change_num, patch_set, revision, release, target, package, state, log_url, published`

// finishJob records a job's result; ok is false when the job is not one
// of the intake's.
func (s *Gerrit) FinishJob(ctx context.Context, res record.Result) (ok bool, err error) {
	r, err := s.db.ExecContext(ctx, `UPDATE gerrit_jobs SET state = ?, log_url = ?, published = ? WHERE job_id = ?`,
		res.State, res.LogURL, res.Published, res.JobID)
	if err != nil {
		return false, fmt.Errorf("record result of job %s: %w", res.JobID, err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record result of job %s: %w", res.JobID, err)
	}
	return n > 0, nil
}

// knownResults returns the results recorded for ids, for the jobs among
// them that finished while serving another event.
func (s *Gerrit) KnownResults(ctx context.Context, ids []string, kind string) ([]record.Result, error) {
	var out []record.Result
	for _, id := range ids {
		r := record.Result{JobID: id}
		err := s.db.QueryRowContext(ctx, `SELECT state, log_url, published FROM gerrit_jobs WHERE job_id = ? AND kind = ? AND state != '' LIMIT 1`, id, kind).
			Scan(&r.State, &r.LogURL, &r.Published)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read result of job %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// saveEarly keeps the result of a job not (yet) recorded: the coordinator
// may finish a job before the intake has written down that it submitted it.
func (s *Gerrit) SaveEarly(ctx context.Context, res record.Result, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO gerrit_early_results (job_id, state, log_url, published, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, log_url = excluded.log_url,
		published = excluded.published, created_at = excluded.created_at`, res.JobID, res.State, res.LogURL, res.Published, now.UnixNano())
	if err != nil {
		return fmt.Errorf("keep result of job %s: %w", res.JobID, err)
	}
	return nil
}

// takeEarly removes and returns the early results of ids.
func (s *Gerrit) TakeEarly(ctx context.Context, ids []string) ([]record.Result, error) {
	var out []record.Result
	for _, id := range ids {
		var r record.Result
		err := s.db.QueryRowContext(ctx, `SELECT job_id, state, log_url, published FROM gerrit_early_results WHERE job_id = ?`, id).
			Scan(&r.JobID, &r.State, &r.LogURL, &r.Published)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read early result of job %s: %w", id, err)
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_early_results WHERE job_id = ?`, id); err != nil {
			return nil, fmt.Errorf("drop early result of job %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// reported tells whether change (0: the whole event) was reported.
func (s *Gerrit) Reported(ctx context.Context, eventID, change int64) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_reports WHERE event_id = ? AND change_num = ?`, eventID, change).Scan(&n); err != nil {
		return false, fmt.Errorf("look up report: %w", err)
	}
	return n > 0, nil
}

// MarkReported records that change (0: the whole event) was told.
func (s *Gerrit) MarkReported(ctx context.Context, eventID, change int64, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO gerrit_reports (event_id, change_num, reported_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		eventID, change, now.UnixNano()); err != nil {
		return fmt.Errorf("mark event %d reported: %w", eventID, err)
	}
	return nil
}

// noiseFor is how long noise stays in the event log.
const noiseFor = 24 * time.Hour

// ListEvents returns up to limit events (100 when limit <= 0), newest
// first; noise only when all.
func (s *Gerrit) ListEvents(ctx context.Context, limit int, all bool) ([]record.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	hide := decide.ActionNoise
	if all {
		hide = ""
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, server, type, project, branch, change_num, patch_set, revision,
		received_at, action, reason, job_ids FROM gerrit_events WHERE action != ? ORDER BY id DESC LIMIT ?`, hide, limit)
	if err != nil {
		return nil, fmt.Errorf("list gerrit events: %w", err)
	}
	defer rows.Close()
	var out []record.Event
	for rows.Next() {
		var r record.Event
		var at int64
		var jobs string
		if err := rows.Scan(&r.ID, &r.Server, &r.Type, &r.Project, &r.Branch, &r.Change, &r.PatchSet, &r.Revision,
			&at, &r.Action, &r.Reason, &jobs); err != nil {
			return nil, fmt.Errorf("list gerrit events: %w", err)
		}
		r.ReceivedAt = time.Unix(0, at).UTC()
		if jobs != "" {
			r.JobIDs = strings.Split(jobs, ",")
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// gerritInboxSchema holds the events accepted and not decided yet: the event's
// row in gerrit_events (action received or failed) and, here, what it
// takes to decide it, until a decision replaces both.
const gerritInboxSchema = `
CREATE TABLE IF NOT EXISTS gerrit_inbox (
	event_id    INTEGER PRIMARY KEY,
	via         TEXT NOT NULL,
	body        BLOB NOT NULL,
	order_key   TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_try_at INTEGER NOT NULL DEFAULT 0
);
`

// accept writes events down, in one transaction, and returns their ids:
// with the action received and their inbox row, or, when the event comes
// decided (noise), as it is.
func (s *Gerrit) Accept(ctx context.Context, evs []record.Accepted) ([]int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("accept gerrit events: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	ids := make([]int64, len(evs))
	for i, a := range evs {
		if a.Event.Action == "" {
			a.Event.Action = decide.ActionReceived
		}
		id, err := insertEvent(ctx, tx, a.Event)
		if err != nil {
			return nil, err
		}
		ids[i] = id
		if a.Event.Action != decide.ActionReceived {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO gerrit_inbox (event_id, via, body, order_key) VALUES (?, ?, ?, ?)`,
			id, a.Via, a.Body, a.OrderKey); err != nil {
			return nil, fmt.Errorf("accept gerrit event: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("accept gerrit events: commit: %w", err)
	}
	return ids, nil
}

// pending lists up to limit undecided events, oldest first.
func (s *Gerrit) Pending(ctx context.Context, limit int) ([]record.Pending, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT i.event_id, e.server, i.order_key, i.attempts, i.next_try_at
		FROM gerrit_inbox i JOIN gerrit_events e ON e.id = i.event_id ORDER BY i.event_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list undecided gerrit events: %w", err)
	}
	defer rows.Close()
	var out []record.Pending
	for rows.Next() {
		var r record.Pending
		var next int64
		if err := rows.Scan(&r.EventID, &r.Server, &r.OrderKey, &r.Attempts, &next); err != nil {
			return nil, fmt.Errorf("list undecided gerrit events: %w", err)
		}
		r.NextTry = time.Unix(0, next)
		out = append(out, r)
	}
	return out, rows.Err()
}

// pendingCount counts the undecided events.
func (s *Gerrit) PendingCount(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_inbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count undecided gerrit events: %w", err)
	}
	return n, nil
}

// body reads an undecided event's payload; ok is false when it was
// decided meanwhile.
func (s *Gerrit) Body(ctx context.Context, eventID int64) (body []byte, via string, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT body, via FROM gerrit_inbox WHERE event_id = ?`, eventID).Scan(&body, &via)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("read gerrit event %d: %w", eventID, err)
	}
	return body, via, true, nil
}

// failAttempt records that deciding an event failed and when it is tried
// again; the event stays undecided.
func (s *Gerrit) FailAttempt(ctx context.Context, eventID int64, attempts int, next time.Time, reason string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record failed attempt: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	if _, err := tx.ExecContext(ctx, `UPDATE gerrit_inbox SET attempts = ?, next_try_at = ? WHERE event_id = ?`,
		attempts, next.UnixNano(), eventID); err != nil {
		return fmt.Errorf("record failed attempt of event %d: %w", eventID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE gerrit_events SET action = ?, reason = ? WHERE id = ?`,
		decide.ActionFailed, reason, eventID); err != nil {
		return fmt.Errorf("record failed attempt of event %d: %w", eventID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record failed attempt: commit: %w", err)
	}
	return nil
}

// recordDecision replaces an accepted event's row with its decision and takes it
// out of the inbox.
func recordDecision(ctx context.Context, x execer, r record.Event) error {
	if _, err := x.ExecContext(ctx, `UPDATE gerrit_events SET type = ?, project = ?, branch = ?, change_num = ?, patch_set = ?,
		revision = ?, action = ?, reason = ?, job_ids = ? WHERE id = ?`,
		r.Type, r.Project, r.Branch, r.Change, r.PatchSet, r.Revision, r.Action, r.Reason, joinIDs(r.JobIDs), r.ID); err != nil {
		return fmt.Errorf("record decision on gerrit event %d: %w", r.ID, err)
	}
	if _, err := x.ExecContext(ctx, `DELETE FROM gerrit_inbox WHERE event_id = ?`, r.ID); err != nil {
		return fmt.Errorf("record decision on gerrit event %d: %w", r.ID, err)
	}
	return nil
}

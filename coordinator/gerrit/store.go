package gerrit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// schema holds the intake's tables; all are prefixed gerrit_.
const schema = `
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

// jobsTable is the gerrit_jobs table under a name: a job and an event that
// asked for it. One job serves several events when their builds have the
// same build key (a recheck of a running build, two changes at one commit).
const jobsTable = `CREATE TABLE IF NOT EXISTS %s (
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

// EventRecord is one logged Gerrit event and what was done with it.
type EventRecord struct {
	ID         int64
	Server     string
	Type       string
	Project    string
	Branch     string
	Change     int64
	PatchSet   int64
	Revision   string
	ReceivedAt time.Time
	// Action is received or failed (not decided yet), or the decision:
	// built, superseded, canceled, ignored, duplicate, noise or error.
	Action string
	// Reason says why, for people.
	Reason string
	JobIDs []string
}

// Build kinds.
const (
	kindReview  = "review"
	kindRelease = "release"
)

type store struct {
	db *sql.DB
}

func openStore(ctx context.Context, db *sql.DB) (*store, error) {
	if db == nil {
		return nil, errors.New("gerrit store: no database")
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("create gerrit tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, inboxSchema); err != nil {
		return nil, fmt.Errorf("create gerrit tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf(jobsTable, "gerrit_jobs")); err != nil {
		return nil, fmt.Errorf("create gerrit tables: %w", err)
	}
	if err := shareJobs(ctx, db); err != nil {
		return nil, fmt.Errorf("upgrade gerrit_jobs: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS gerrit_jobs_event ON gerrit_jobs (event_id)`); err != nil {
		return nil, fmt.Errorf("create gerrit tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS gerrit_jobs_change ON gerrit_jobs (server, change_num, kind)`); err != nil {
		return nil, fmt.Errorf("create gerrit tables: %w", err)
	}
	return &store{db: db}, nil
}

// shareJobs gives a gerrit_jobs table made when a job had one event its
// primary key of job and event. SQLite changes a primary key only by
// copying the table.
func shareJobs(ctx context.Context, db *sql.DB) error {
	var pk int
	if err := db.QueryRowContext(ctx, `SELECT pk FROM pragma_table_info('gerrit_jobs') WHERE name = 'event_id'`).Scan(&pk); err != nil {
		return err
	}
	if pk > 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	for _, q := range []string{
		fmt.Sprintf(jobsTable, "gerrit_jobs_shared"),
		`INSERT INTO gerrit_jobs_shared (` + jobColumns + `) SELECT ` + jobColumns + ` FROM gerrit_jobs`,
		`DROP TABLE gerrit_jobs`,
		`ALTER TABLE gerrit_jobs_shared RENAME TO gerrit_jobs`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertEvent(ctx context.Context, x execer, r EventRecord) (int64, error) {
	res, err := x.ExecContext(ctx, `INSERT INTO gerrit_events
		(server, type, project, branch, change_num, patch_set, revision, received_at, action, reason, job_ids)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Server, r.Type, r.Project, r.Branch, r.Change, r.PatchSet, r.Revision,
		r.ReceivedAt.UnixNano(), r.Action, r.Reason, joinIDs(r.JobIDs))
	if err != nil {
		return 0, fmt.Errorf("insert gerrit event: %w", err)
	}
	return res.LastInsertId()
}

func joinIDs(ids []string) string { return strings.Join(ids, ",") }

// recordEvent records a decision: on the accepted event's row when r.ID is
// set, on a new row otherwise (the reconciler's).
func (s *store) recordEvent(ctx context.Context, r EventRecord) (int64, error) {
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

func (s *store) prune(ctx context.Context, keep int, dedupAge time.Duration, now time.Time) error {
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

func (s *store) seen(ctx context.Context, key string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_dedup WHERE key = ?`, key).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up dedup key: %w", err)
	}
	return n > 0, nil
}

func (s *store) releaseQueued(ctx context.Context, server, project, branch, rev string) (int64, bool, error) {
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
func (s *store) latestPatchSet(ctx context.Context, server string, change int64) (int64, error) {
	var ps sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(patch_set) FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ?`,
		server, change, kindReview).Scan(&ps)
	if err != nil {
		return 0, fmt.Errorf("look up patch sets of change %d: %w", change, err)
	}
	return ps.Int64, nil
}

// reviewTargets lists the targets of change's review builds.
func (s *store) reviewTargets(ctx context.Context, server string, change int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT target FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ? ORDER BY target`,
		server, change, kindReview)
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
func (s *store) closeReports(ctx context.Context, server string, change int64, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_reports (event_id, change_num, reported_at)
		SELECT DISTINCT event_id, 0, ? FROM gerrit_jobs WHERE server = ? AND change_num = ? AND kind = ?`,
		now.UnixNano(), server, change, kindReview)
	if err != nil {
		return fmt.Errorf("close reports of change %d: %w", change, err)
	}
	return nil
}

type head struct {
	Project, Branch, Revision string
}

func (s *store) heads(ctx context.Context, server string) ([]head, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT project, branch, revision FROM gerrit_heads WHERE server = ? ORDER BY project, branch`, server)
	if err != nil {
		return nil, fmt.Errorf("list tracked branches: %w", err)
	}
	defer rows.Close()
	var out []head
	for rows.Next() {
		var h head
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

func (s *store) setHead(ctx context.Context, server, project, branch, rev string, now time.Time) error {
	return setHead(ctx, s.db, server, project, branch, rev, now)
}

func (s *store) dropHead(ctx context.Context, server, project, branch string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM gerrit_heads WHERE server = ? AND project = ? AND branch = ?`, server, project, branch)
	if err != nil {
		return fmt.Errorf("stop tracking %s %s: %w", project, branch, err)
	}
	return nil
}

func (s *store) addDedup(ctx context.Context, key string, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_dedup (key, created_at) VALUES (?, ?)`, key, now.UnixNano())
	if err != nil {
		return fmt.Errorf("add dedup key: %w", err)
	}
	return nil
}

// jobRow is one submitted job and where to report it.
type jobRow struct {
	JobID    string
	EventID  int64
	Server   string
	Kind     string
	Change   int64
	PatchSet int64
	Revision string
	Release  string
	Target   string
	Package  string
	State    string
	LogURL   string
	Publish  string
}

// release is the outcome of queueing a release or review build, written in
// one transaction.
type queued struct {
	event     EventRecord
	dedupKey  string
	jobs      []jobRow
	finished  []BuildResult // reused jobs that had finished when submitted
	heads     []head        // new heads, all release revisions too when release
	release   bool
	supersede bool // mark older events of the same change superseded
}

func (s *store) commitQueued(ctx context.Context, q queued, now time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	if q.supersede && q.event.Change > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE gerrit_events SET action = ?, reason = ?
			WHERE server = ? AND change_num = ? AND patch_set < ? AND action = ? AND type IN (?, ?)`,
			decide.ActionSuperseded, fmt.Sprintf("patch set %d replaced it", q.event.PatchSet),
			q.event.Server, q.event.Change, q.event.PatchSet, decide.ActionBuilt, event.TypePatchsetCreated, event.TypeCommentAdded); err != nil {
			return 0, fmt.Errorf("mark superseded: %w", err)
		}
	}
	id := q.event.ID
	if id == 0 {
		if id, err = insertEvent(ctx, tx, q.event); err != nil {
			return 0, err
		}
	} else if err := recordDecision(ctx, tx, q.event); err != nil {
		return 0, err
	}
	if q.dedupKey != "" {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_dedup (key, created_at) VALUES (?, ?)`, q.dedupKey, now.UnixNano()); err != nil {
			return 0, fmt.Errorf("add dedup key: %w", err)
		}
	}
	for _, h := range q.heads {
		if err := setHead(ctx, tx, q.event.Server, h.Project, h.Branch, h.Revision, now); err != nil {
			return 0, err
		}
		if q.release {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_release_revs
				(server, project, branch, revision, event_id, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				q.event.Server, h.Project, h.Branch, h.Revision, id, now.UnixNano()); err != nil {
				return 0, fmt.Errorf("record release revision: %w", err)
			}
		}
	}
	if q.release && q.event.Change > 0 {
		if err := attachChange(ctx, tx, id, q.event.Change, q.event.PatchSet); err != nil {
			return 0, err
		}
	}
	for _, j := range q.jobs {
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
	_, err := x.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_event_changes (event_id, change_num, patch_set)
		VALUES (?, ?, ?)`, eventID, change, patchSet)
	if err != nil {
		return fmt.Errorf("attach change %d to event %d: %w", change, eventID, err)
	}
	return nil
}

func (s *store) attachChange(ctx context.Context, eventID, change, patchSet int64) error {
	return attachChange(ctx, s.db, eventID, change, patchSet)
}

// eventChanges lists the merged changes a release build reports to.
func (s *store) eventChanges(ctx context.Context, eventID int64) ([][2]int64, error) {
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
func (s *store) unreported(ctx context.Context, since time.Time, after int64, limit int) ([]int64, error) {
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
func (s *store) countUnreported(ctx context.Context, since time.Time) (map[string]int, error) {
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

func (s *store) eventJobs(ctx context.Context, eventID int64) ([]jobRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM gerrit_jobs WHERE event_id = ? ORDER BY target, job_id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("read jobs of event %d: %w", eventID, err)
	}
	return scanJobs(rows)
}

func scanJobs(rows *sql.Rows) ([]jobRow, error) {
	defer rows.Close()
	var out []jobRow
	for rows.Next() {
		var j jobRow
		if err := rows.Scan(&j.JobID, &j.EventID, &j.Server, &j.Kind, &j.Change, &j.PatchSet, &j.Revision,
			&j.Release, &j.Target, &j.Package, &j.State, &j.LogURL, &j.Publish); err != nil {
			return nil, fmt.Errorf("read jobs: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

const jobColumns = `job_id, event_id, server, kind, change_num, patch_set, revision, release, target, package, state, log_url, published`

// finishJob records a job's result; ok is false when the job is not one
// of the intake's.
func (s *store) finishJob(ctx context.Context, res BuildResult) (ok bool, err error) {
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
func (s *store) knownResults(ctx context.Context, ids []string, kind string) ([]BuildResult, error) {
	var out []BuildResult
	for _, id := range ids {
		r := BuildResult{JobID: id}
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
func (s *store) saveEarly(ctx context.Context, res BuildResult, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO gerrit_early_results (job_id, state, log_url, published, created_at)
		VALUES (?, ?, ?, ?, ?)`, res.JobID, res.State, res.LogURL, res.Published, now.UnixNano())
	if err != nil {
		return fmt.Errorf("keep result of job %s: %w", res.JobID, err)
	}
	return nil
}

// takeEarly removes and returns the early results of ids.
func (s *store) takeEarly(ctx context.Context, ids []string) ([]BuildResult, error) {
	var out []BuildResult
	for _, id := range ids {
		var r BuildResult
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
func (s *store) reported(ctx context.Context, eventID, change int64) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_reports WHERE event_id = ? AND change_num = ?`, eventID, change).Scan(&n); err != nil {
		return false, fmt.Errorf("look up report: %w", err)
	}
	return n > 0, nil
}

func (s *store) markReported(ctx context.Context, eventID, change int64, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO gerrit_reports (event_id, change_num, reported_at) VALUES (?, ?, ?)`,
		eventID, change, now.UnixNano()); err != nil {
		return fmt.Errorf("mark event %d reported: %w", eventID, err)
	}
	return nil
}

// noiseFor is how long noise stays in the event log.
const noiseFor = 24 * time.Hour

func (s *store) listEvents(ctx context.Context, limit int, all bool) ([]EventRecord, error) {
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
	var out []EventRecord
	for rows.Next() {
		var r EventRecord
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

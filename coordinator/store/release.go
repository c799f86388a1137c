package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// releaseSchema holds what the coordinator keeps about releases beyond
// their jobs: every seal and unseal (the newest row is the release's
// state), and the verifications of `release verify` with one row per
// package and target.
const releaseSchema = `
CREATE TABLE IF NOT EXISTS release_seals (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	release    TEXT NOT NULL,
	sealed     INTEGER NOT NULL,
	changed_by TEXT NOT NULL,
	changed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS release_seals_release ON release_seals (release, id);
CREATE TABLE IF NOT EXISTS release_verifications (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	release      TEXT NOT NULL,
	requested_by TEXT NOT NULL,
	created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS release_verification_items (
	verification_id INTEGER NOT NULL REFERENCES release_verifications (id),
	idx             INTEGER NOT NULL,
	release         TEXT NOT NULL,
	package         TEXT NOT NULL,
	target          TEXT NOT NULL,
	job_id          TEXT NOT NULL,
	version         TEXT NOT NULL,
	after           TEXT NOT NULL DEFAULT '[]',
	rebuild_job_id  TEXT NOT NULL DEFAULT '',
	result          TEXT NOT NULL,
	differing       TEXT NOT NULL DEFAULT '[]',
	detail          TEXT NOT NULL DEFAULT '',
	finished_at     INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (verification_id, idx)
);
CREATE INDEX IF NOT EXISTS release_verification_items_package ON release_verification_items (release, package, target, verification_id);
CREATE INDEX IF NOT EXISTS release_verification_items_rebuild ON release_verification_items (rebuild_job_id) WHERE rebuild_job_id != '';
`

// Seal is a release's sealed state and its last change; By and At are
// empty when the release was never sealed.
type Seal struct {
	Sealed bool
	By     string
	At     time.Time
}

// SetSealed records that by sealed (or unsealed) a release at at, and
// returns the new state.
func (s *Store) SetSealed(ctx context.Context, release string, sealed bool, by string, at time.Time) (Seal, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO release_seals (release, sealed, changed_by, changed_at) VALUES (?,?,?,?)`,
		release, b2i(sealed), by, unix(at)); err != nil {
		return Seal{}, fmt.Errorf("record seal of release %s: %w", release, err)
	}
	return Seal{Sealed: sealed, By: by, At: at.UTC()}, nil
}

// Sealed returns a release's seal state: the newest change recorded.
func (s *Store) Sealed(ctx context.Context, release string) (Seal, error) {
	var out Seal
	var sealed int
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT sealed, changed_by, changed_at FROM release_seals WHERE release = ? ORDER BY id DESC LIMIT 1`,
		release).Scan(&sealed, &out.By, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Seal{}, nil
	}
	if err != nil {
		return Seal{}, fmt.Errorf("read seal of release %s: %w", release, err)
	}
	out.Sealed, out.At = sealed == 1, fromUnix(at)
	return out, nil
}

// Verification results as the store keeps them. Waiting and Running are
// not final.
const (
	VerifyWaiting   = "waiting"
	VerifyRunning   = "running"
	VerifyIdentical = "identical"
	VerifyDifferent = "different"
	VerifyFailed    = "failed"
	VerifyError     = "error"
)

// VerifyItem is one package on one target of a verification.
type VerifyItem struct {
	VerificationID int64
	// Idx is the item's place in its verification, from 0.
	Idx             int
	Release         string
	Package, Target string
	JobID, Version  string
	After           []int
	RebuildJobID    string
	Result          string
	Differing       []string
	Detail          string
	FinishedAt      time.Time
}

// Final reports whether the item has its result.
func (it VerifyItem) Final() bool { return it.Result != VerifyWaiting && it.Result != VerifyRunning }

// Verification is one run of `release verify`.
type Verification struct {
	ID          int64
	Release     string
	RequestedBy string
	CreatedAt   time.Time
	Items       []VerifyItem
}

// AddVerification stores a new verification with its items and sets its
// ID (and the items').
func (s *Store) AddVerification(ctx context.Context, v *Verification) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store verification of %s: %w", v.Release, err)
	}
	defer tx.Rollback()
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO release_verifications (release, requested_by, created_at) VALUES (?,?,?) RETURNING id`,
		v.Release, v.RequestedBy, unix(v.CreatedAt)).Scan(&id); err != nil {
		return fmt.Errorf("store verification of %s: %w", v.Release, err)
	}
	for i := range v.Items {
		it := &v.Items[i]
		it.VerificationID, it.Idx, it.Release = id, i, v.Release
		after, _ := json.Marshal(nonNilI(it.After))
		diff, _ := json.Marshal(nonNilS(it.Differing))
		if _, err := tx.ExecContext(ctx, `INSERT INTO release_verification_items (verification_id, idx, release, package, target,
			job_id, version, after, rebuild_job_id, result, differing, detail, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			id, i, v.Release, it.Package, it.Target, it.JobID, it.Version, string(after), it.RebuildJobID, it.Result,
			string(diff), it.Detail, unix(it.FinishedAt)); err != nil {
			return fmt.Errorf("store verification of %s %s/%s: %w", v.Release, it.Package, it.Target, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store verification of %s: %w", v.Release, err)
	}
	v.ID = id
	return nil
}

// UpdateVerifyItem writes an item's rebuild job, result and detail.
func (s *Store) UpdateVerifyItem(ctx context.Context, it VerifyItem) error {
	diff, _ := json.Marshal(nonNilS(it.Differing))
	_, err := s.db.ExecContext(ctx, `UPDATE release_verification_items SET rebuild_job_id = ?, result = ?, differing = ?, detail = ?,
		finished_at = ? WHERE verification_id = ? AND idx = ?`,
		it.RebuildJobID, it.Result, string(diff), it.Detail, unix(it.FinishedAt), it.VerificationID, it.Idx)
	if err != nil {
		return fmt.Errorf("update verification %d of %s/%s: %w", it.VerificationID, it.Package, it.Target, err)
	}
	return nil
}

const itemColumns = `verification_id, idx, release, package, target, job_id, version, after, rebuild_job_id, result, differing, detail, finished_at`

func scanItem(r scanner) (VerifyItem, error) {
	var it VerifyItem
	var after, diff string
	var fin int64
	if err := r.Scan(&it.VerificationID, &it.Idx, &it.Release, &it.Package, &it.Target, &it.JobID, &it.Version, &after,
		&it.RebuildJobID, &it.Result, &diff, &it.Detail, &fin); err != nil {
		return it, err
	}
	it.FinishedAt = fromUnix(fin)
	if err := json.Unmarshal([]byte(after), &it.After); err != nil {
		return it, fmt.Errorf("decode verification %d item %d: %w", it.VerificationID, it.Idx, err)
	}
	if err := json.Unmarshal([]byte(diff), &it.Differing); err != nil {
		return it, fmt.Errorf("decode verification %d item %d: %w", it.VerificationID, it.Idx, err)
	}
	return it, nil
}

// Verification returns a verification with its items in order, or nil
// when there is none with that id.
func (s *Store) Verification(ctx context.Context, id int64) (*Verification, error) {
	v := &Verification{ID: id}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT release, requested_by, created_at FROM release_verifications WHERE id = ?`, id).
		Scan(&v.Release, &v.RequestedBy, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read verification %d: %w", id, err)
	}
	v.CreatedAt = fromUnix(created)
	rows, err := s.db.QueryContext(ctx, `SELECT `+itemColumns+` FROM release_verification_items WHERE verification_id = ? ORDER BY idx`, id)
	if err != nil {
		return nil, fmt.Errorf("read verification %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("read verification %d: %w", id, err)
		}
		v.Items = append(v.Items, it)
	}
	return v, rows.Err()
}

// VerificationOfRebuild returns the verification that submitted a rebuild
// job, or 0.
func (s *Store) VerificationOfRebuild(ctx context.Context, jobID string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT verification_id FROM release_verification_items WHERE rebuild_job_id = ? AND rebuild_job_id != ''`,
		jobID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find verification of job %s: %w", jobID, err)
	}
	return id, nil
}

// LastVerifications returns, per package and target of a release (keyed
// "package/target"), the item of the newest verification that has a final
// result.
func (s *Store) LastVerifications(ctx context.Context, release string) (map[string]VerifyItem, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+itemColumns+` FROM release_verification_items
		WHERE release = ? AND result NOT IN (?, ?) ORDER BY verification_id`, release, VerifyWaiting, VerifyRunning)
	if err != nil {
		return nil, fmt.Errorf("read verifications of %s: %w", release, err)
	}
	defer rows.Close()
	out := map[string]VerifyItem{}
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("read verifications of %s: %w", release, err)
		}
		out[it.Package+"/"+it.Target] = it
	}
	return out, rows.Err()
}

// ReleaseBuilds returns the successful package builds of a release that
// are not verified rebuilds, oldest first.
func (s *Store) ReleaseBuilds(ctx context.Context, release string) ([]*job.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM jobs WHERE build_key != '' AND state = ? AND verify = 0
		AND `+s.d.releaseExpr+` = ? ORDER BY seq`, int(job.Succeeded), release)
	if err != nil {
		return nil, fmt.Errorf("list builds of release %s: %w", release, err)
	}
	defer rows.Close()
	var out []*job.Job
	for rows.Next() {
		j, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list builds of release %s: %w", release, err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

func nonNilI(a []int) []int {
	if a == nil {
		return []int{}
	}
	return a
}

// UnfinishedVerifications returns the verifications that have an item
// without a final result, oldest first.
func (s *Store) UnfinishedVerifications(ctx context.Context) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT verification_id FROM release_verification_items WHERE result IN (?, ?)
		ORDER BY verification_id`, VerifyWaiting, VerifyRunning)
	if err != nil {
		return nil, fmt.Errorf("list unfinished verifications: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list unfinished verifications: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

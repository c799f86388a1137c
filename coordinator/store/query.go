package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
)

// listIndexes let the job list's filters read the newest matching jobs
// from an index in the order of sequence numbers, however many jobs there
// are: state with seq (which also serves what looks jobs up by state), and
// release, package and change each with seq. The last three are partial,
// holding only package builds and review builds, so that writing a command
// job's state, most of the traffic, does not touch them. Query repeats
// each index's condition so that the database sees the index applies. The
// expressions (the dialect's) read a package build's release and package,
// and the Gerrit change of a review build from the origin the Gerrit
// intake gives it ("gerrit NAME: review build of change N patch set M
// (...)").
func listIndexes(d exprs) string {
	return `
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_release_seq ON jobs(` + d.releaseExpr + `, seq) WHERE ` + d.releaseExpr + ` IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_package_seq ON jobs(` + d.packageExpr + `, seq) WHERE ` + d.packageExpr + ` IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_change_seq ON jobs(` + d.changeExpr + `, seq) WHERE ` + d.hasChange + `;
`
}

// originSearch is SQLite's origin text search index: every job's origin, by
// its sequence number, in an FTS5 table whose trigrams find a substring of
// three characters or more without reading every job. Writing a job does
// not add to it (tokenising an origin costs about as much as the rest of a
// job's writes): an origin search first indexes the jobs inserted since the
// last one (catchUpOrigins). job_origins_upto holds the last jobs rowid
// indexed; SQLite gives each inserted job the next rowid, an update keeps
// it, and jobs are never deleted, so the rowids above it are the jobs not
// yet indexed. A job's origin never changes.
const originSearch = `
DROP TRIGGER IF EXISTS jobs_origin_search;
CREATE VIRTUAL TABLE IF NOT EXISTS job_origins USING fts5(origin, tokenize='trigram case_sensitive 1', detail='none');
CREATE TABLE IF NOT EXISTS job_origins_upto (last INTEGER NOT NULL);
INSERT INTO job_origins_upto (last) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM job_origins_upto);
`

// originCatchUp bounds the jobs catchUpOrigins indexes in one
// transaction, which holds the store's connection: writers wait for it.
const originCatchUp = 2000

// catchUpOrigins adds the origins of the jobs inserted since the last
// origin search to its index, originCatchUp jobs per transaction.
func (s *Store) catchUpOrigins(ctx context.Context) error {
	for {
		done, err := s.catchUpOriginsOnce(ctx)
		if err != nil || done {
			return err
		}
	}
}

func (s *Store) catchUpOriginsOnce(ctx context.Context) (done bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var last, newest int64
	if err := tx.QueryRowContext(ctx, `SELECT last, (SELECT COALESCE(max(rowid), 0) FROM jobs) FROM job_origins_upto`).Scan(&last, &newest); err != nil {
		return false, fmt.Errorf("read the origin index's progress: %w", err)
	}
	if newest <= last {
		return true, nil
	}
	upto := min(newest, last+originCatchUp)
	if _, err := tx.ExecContext(ctx, `INSERT INTO job_origins (rowid, origin)
		SELECT seq, COALESCE(`+sqliteExprs.originExpr+`, '') FROM jobs WHERE rowid > ? AND rowid <= ? ORDER BY rowid`, last, upto); err != nil {
		return false, fmt.Errorf("index the origins of new jobs: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE job_origins_upto SET last = ?`, upto); err != nil {
		return false, err
	}
	return upto == newest, tx.Commit()
}

// Filter selects jobs for Query. Empty fields match everything.
type Filter struct {
	States []job.State
	// Release and Package match package builds exactly.
	Release, Package string
	// Change matches the review builds of a Gerrit change, by the origin
	// the Gerrit intake gives them.
	Change int64
	// Origin matches jobs whose origin contains it (case matters).
	Origin string
	// Before continues a listing: only jobs older than this sequence
	// number (Query's next).
	Before int64
	// Limit is the page size; 0 means no limit.
	Limit int

	// seqs, when set, are the only jobs to consider (queryOrigin's chunk).
	seqs []int64
}

// Query returns one page of the jobs matching f, newest first, and the
// Before of the next page, or 0 when this is the last. Filtering and
// paging happen in the database.
func (s *Store) Query(ctx context.Context, f Filter) ([]*job.Job, int64, error) {
	var out []*job.Job
	var err error
	if f.Origin == "" {
		out, err = s.query(ctx, f)
	} else {
		out, err = s.queryOrigin(ctx, f)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("query jobs: %w", err)
	}
	var next int64
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].Seq
	}
	return out, next, nil
}

// maxOriginChunk bounds how many matching jobs queryOrigin reads at a
// time.
const maxOriginChunk = 4096

// queryOrigin answers a filter with an origin text: it reads the matching
// jobs' sequence numbers from the origin search, newest first, a chunk at a
// time (a page's worth, then twice as many each time), and the jobs among
// them that match the other filters, until it has one more than a page. A
// common text ends after the first chunk and a rare one reads only its few
// matches.
func (s *Store) queryOrigin(ctx context.Context, f Filter) ([]*job.Job, error) {
	if s.d.indexesOrigins {
		if err := s.catchUpOrigins(ctx); err != nil {
			return nil, err
		}
	}
	pattern := s.d.originPattern(f.Origin)
	before := f.Before
	chunk := maxOriginChunk
	if f.Limit > 0 {
		chunk = min(f.Limit+1, maxOriginChunk)
	}
	var out []*job.Job
	for {
		args := []any{pattern}
		if before > 0 {
			args = append(args, before)
		}
		rows, err := s.db.QueryContext(ctx, s.d.originSeqs(before > 0)+` LIMIT `+strconv.Itoa(chunk), args...)
		if err != nil {
			return nil, err
		}
		var seqs []int64
		for rows.Next() {
			var n int64
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return nil, err
			}
			seqs = append(seqs, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if len(seqs) == 0 {
			return out, nil
		}
		g := f
		g.Origin, g.Before, g.Limit, g.seqs = "", 0, 0, seqs
		if f.Limit > 0 {
			g.Limit = f.Limit + 1 - len(out)
		}
		jobs, err := s.query(ctx, g)
		if err != nil {
			return nil, err
		}
		out = append(out, jobs...)
		if (f.Limit > 0 && len(out) > f.Limit) || len(seqs) < chunk {
			return out, nil
		}
		before = seqs[len(seqs)-1]
		chunk = min(2*chunk, maxOriginChunk)
	}
}

// query runs the filter's query.
func (s *Store) query(ctx context.Context, f Filter) ([]*job.Job, error) {
	q, args := f.query(s.d)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*job.Job
	for rows.Next() {
		j, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// query is the SQL for the filter, and its arguments.
func (f Filter) query(d *dialect) (string, []any) {
	var where []string
	var args []any
	if len(f.States) > 0 {
		ph := make([]string, len(f.States))
		for i, st := range f.States {
			ph[i] = "?"
			args = append(args, int(st))
		}
		where = append(where, `state IN (`+strings.Join(ph, ",")+`)`)
	}
	if f.Release != "" {
		where = append(where, d.releaseExpr+` = ?`, d.releaseExpr+` IS NOT NULL`)
		args = append(args, f.Release)
	}
	if f.Package != "" {
		where = append(where, d.packageExpr+` = ?`, d.packageExpr+` IS NOT NULL`)
		args = append(args, f.Package)
	}
	if f.Change != 0 {
		where = append(where, d.changeExpr+` = ?`, d.hasChange, d.gerritOrigin)
		args = append(args, f.Change)
	}
	if len(f.seqs) > 0 {
		ph := make([]string, len(f.seqs))
		for i, n := range f.seqs {
			ph[i] = "?"
			args = append(args, n)
		}
		where = append(where, `seq IN (`+strings.Join(ph, ",")+`)`)
	}
	if f.Before > 0 {
		where = append(where, `seq < ?`)
		args = append(args, f.Before)
	}
	q := `SELECT ` + columns + ` FROM jobs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY seq DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(f.Limit+1) // one more says whether a next page exists
	}
	return q, args
}

package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
)

// The expressions the job list filters on and its indexes hold (see
// listIndexes): a package build's release and package, and the Gerrit
// change of a review build, read from the origin the Gerrit intake gives
// it ("gerrit NAME: review build of change N patch set M (...)").
const (
	releaseExpr  = `json_extract(spec, '$.build.release')`
	packageExpr  = `json_extract(spec, '$.build.package')`
	originExpr   = `json_extract(spec, '$.origin')`
	hasChange    = `instr(` + originExpr + `, ' change ') > 0`
	changeExpr   = `CAST(substr(` + originExpr + `, instr(` + originExpr + `, ' change ') + 8) AS INTEGER)`
	gerritOrigin = `substr(` + originExpr + `, 1, 7) = 'gerrit '`
)

// listIndexes let the job list's filters read the newest matching jobs
// from an index in the order of sequence numbers, however many jobs there
// are: state with seq (which also serves what looks jobs up by state), and
// release, package and change each with seq. The last three are partial,
// holding only package builds and review builds, so that writing a command
// job's state, most of the traffic, does not touch them. Query repeats
// each index's condition so that SQLite sees the index applies.
const listIndexes = `
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX IF NOT EXISTS jobs_state_seq ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_release_seq ON jobs(` + releaseExpr + `, seq) WHERE ` + releaseExpr + ` IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_package_seq ON jobs(` + packageExpr + `, seq) WHERE ` + packageExpr + ` IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_change_seq ON jobs(` + changeExpr + `, seq) WHERE ` + hasChange + `;
`

// Filter selects jobs for Query. Empty fields match everything.
type Filter struct {
	States []job.State
	// Release and Package match package builds exactly.
	Release, Package string
	// Change matches the review builds of a Gerrit change, by the origin
	// the Gerrit intake gives them.
	Change int64
	// Origin matches jobs whose origin contains it. It is a text search:
	// no index serves it, and a rare text makes the query read every job
	// (see BENCHMARKS.md).
	Origin string
	// Before continues a listing: only jobs older than this sequence
	// number (Query's next).
	Before int64
	// Limit is the page size; 0 means no limit.
	Limit int
}

// Query returns one page of the jobs matching f, newest first, and the
// Before of the next page, or 0 when this is the last. Filtering and
// paging happen in the database.
func (s *Store) Query(ctx context.Context, f Filter) ([]*job.Job, int64, error) {
	q, args := f.query()
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("query jobs: %w", err)
	}
	defer rows.Close()
	var out []*job.Job
	for rows.Next() {
		j, err := scan(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("query jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("query jobs: %w", err)
	}
	var next int64
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].Seq
	}
	return out, next, nil
}

// query is the SQL for the filter, and its arguments.
func (f Filter) query() (string, []any) {
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
		where = append(where, releaseExpr+` = ?`, releaseExpr+` IS NOT NULL`)
		args = append(args, f.Release)
	}
	if f.Package != "" {
		where = append(where, packageExpr+` = ?`, packageExpr+` IS NOT NULL`)
		args = append(args, f.Package)
	}
	if f.Change != 0 {
		where = append(where, changeExpr+` = ?`, hasChange, gerritOrigin)
		args = append(args, f.Change)
	}
	if f.Origin != "" {
		where = append(where, `instr(COALESCE(`+originExpr+`, ''), ?) > 0`)
		args = append(args, f.Origin)
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

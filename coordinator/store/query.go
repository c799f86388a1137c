package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
)

// Filter selects jobs for Query. Empty fields match everything.
type Filter struct {
	States []job.State
	// Release and Package match package builds exactly.
	Release, Package string
	// Origin matches jobs whose origin contains it.
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
		where = append(where, `json_extract(spec, '$.build.release') = ?`)
		args = append(args, f.Release)
	}
	if f.Package != "" {
		where = append(where, `json_extract(spec, '$.build.package') = ?`)
		args = append(args, f.Package)
	}
	if f.Origin != "" {
		where = append(where, `instr(COALESCE(json_extract(spec, '$.origin'), ''), ?) > 0`)
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

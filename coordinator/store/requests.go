package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
)

// RequestRetention is how long a submission's request id is kept: a
// submission repeated with the same id within it gets the job the first
// one queued; after it, the id is forgotten and may queue a new job.
const RequestRetention = 7 * 24 * time.Hour

// Request is a client's id for one submission (SubmitJobRequest's
// request_id), recorded with the job it queued so that the submission,
// sent again after its answer was lost, queues nothing more.
type Request struct {
	ID    string
	JobID string
	// SpecHash identifies the spec submitted with the id: the same id
	// with another spec is a client's mistake, not a repetition.
	SpecHash  string
	CreatedAt time.Time
	// Replaces is the job the id named until now, when it is given a new
	// one (the earlier job ended in an infrastructure error and the
	// submission is a retry).
	Replaces string
}

// requestsSchema is the table of request ids, the same in both dialects
// but for the fence, which PostgreSQL's migration adds. It may run again
// on a SQLite database taken for one from before schema versions.
const requestsSchema = `
CREATE TABLE IF NOT EXISTS submit_requests (
	request_id TEXT PRIMARY KEY,
	job_id     TEXT NOT NULL,
	spec_hash  TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS submit_requests_created ON submit_requests (created_at);
`

// insertRequest keeps the job recorded for an id unless the request says
// it replaces that one: the fleet looks an id up before it submits, so
// any other conflict is a race the fleet lost, and the batch's other
// writes must not fail for it.
const insertRequest = `INSERT INTO submit_requests (request_id, job_id, spec_hash, created_at) VALUES (?,?,?,?)
ON CONFLICT (request_id) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at
WHERE submit_requests.job_id = ?`

// PutRequest writes a new job together with the request id it was
// submitted with, in one transaction: either both are durable or
// neither. A nil j records only the id (for a submission answered with an
// earlier job).
func (s *Store) PutRequest(ctx context.Context, j *job.Job, r Request) error {
	req := writeReq{requests: []Request{r}, done: make(chan error, 1)}
	if j != nil {
		req.jobs = []*job.Job{j}
	}
	return s.send(ctx, req)
}

// writeRequests inserts a batch's request ids in its transaction.
func writeRequests(ctx context.Context, tx *sql.Tx, rs []Request) error {
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, insertRequest, r.ID, r.JobID, r.SpecHash, unix(r.CreatedAt), r.Replaces); err != nil {
			return fmt.Errorf("record request id %q of job %s: %w", r.ID, r.JobID, err)
		}
	}
	return nil
}

// RequestByID returns the submission recorded under id, or nil when there
// is none younger than RequestRetention (as of now).
func (s *Store) RequestByID(ctx context.Context, id string, now time.Time) (*Request, error) {
	r := Request{ID: id}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT job_id, spec_hash, created_at FROM submit_requests WHERE request_id = ? AND created_at >= ?`,
		id, now.Add(-RequestRetention).UnixNano()).Scan(&r.JobID, &r.SpecHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up request id %q: %w", id, err)
	}
	r.CreatedAt = fromUnix(created)
	return &r, nil
}

// ForgetRequests deletes the request ids older than RequestRetention (as
// of now) and returns how many.
func (s *Store) ForgetRequests(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM submit_requests WHERE created_at < ?`, now.Add(-RequestRetention).UnixNano())
	if err != nil {
		return 0, fmt.Errorf("forget old request ids: %w", err)
	}
	return res.RowsAffected()
}

package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// MaxRequestID bounds a submission's request id.
const MaxRequestID = 200

// requestLocks serialise submissions that carry the same request id, so
// that of two arriving together only one queues a job.
type requestLocks struct {
	mu   sync.Mutex
	busy map[string]chan struct{}
}

// lock waits until no other submission holds id, then holds it; the
// returned function lets it go.
func (l *requestLocks) lock(ctx context.Context, id string) (func(), error) {
	for {
		l.mu.Lock()
		if l.busy == nil {
			l.busy = map[string]chan struct{}{}
		}
		ch, held := l.busy[id]
		if !held {
			ch = make(chan struct{})
			l.busy[id] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.busy, id)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// SubmitRequest is Submit for a submission that carries the client's
// request id: the id is recorded with the job in the same transaction, and
// a submission repeated with it (because the first one's answer was lost,
// or a pipeline step ran again) within store.RequestRetention gets that
// job back with repeated true and queues nothing -- unless that job ended
// in an infrastructure error, when the repetition is a retry: it is
// submitted anew and the id names the new job. The same id with another
// spec is refused. An empty id is a plain Submit.
func (f *Fleet) SubmitRequest(ctx context.Context, spec job.Spec, requestID string) (j *job.Job, dedup, repeated bool, err error) {
	if requestID == "" {
		j, dedup, err = f.Submit(ctx, spec)
		return j, dedup, false, err
	}
	if err := checkRequestID(requestID); err != nil {
		return nil, false, false, err
	}
	hash, err := specHash(spec)
	if err != nil {
		return nil, false, false, err
	}
	unlock, err := f.reqLocks.lock(ctx, requestID)
	if err != nil {
		return nil, false, false, err
	}
	defer unlock()
	now := f.cfg.Clock.Now()
	f.forgetRequests(ctx, now)
	prev, err := f.st.RequestByID(ctx, requestID, now)
	if err != nil {
		return nil, false, false, err
	}
	if prev != nil {
		if prev.SpecHash != hash {
			return nil, false, false, fmt.Errorf("%w: request id %q was used for job %s with another spec: "+
				"give each different submission its own request id", ErrInvalid, requestID, prev.JobID)
		}
		if live := f.sched.Live(prev.JobID); live != nil {
			return live, false, true, nil
		}
		j, err := f.settled(ctx, prev.JobID)
		if err != nil {
			return nil, false, false, fmt.Errorf("job %s of request id %q: %w", prev.JobID, requestID, err)
		}
		if j.State != job.Error {
			return j, false, true, nil
		}
		// The infrastructure failed it (the client's exit code 3, worth a
		// retry): the same submission again is that retry.
	}
	req := &store.Request{ID: requestID, SpecHash: hash, CreatedAt: now}
	if prev != nil {
		req.Replaces = prev.JobID
		f.logger.Info("request id's job ended in error: queued again", "request_id", requestID, "job_id", prev.JobID)
	}
	j, dedup, err = f.submit(ctx, spec, "", req)
	if err != nil {
		return nil, false, false, err
	}
	if dedup {
		// Answered with an earlier job: the id now names that one.
		req.JobID = j.ID
		if err := f.wrote(f.st.PutRequest(ctx, nil, *req)); err != nil {
			return nil, false, false, f.writeError("record request id", err)
		}
	}
	return j, dedup, false, nil
}

// checkRequestID refuses an id a client cannot have meant.
func checkRequestID(id string) error {
	if len(id) > MaxRequestID {
		return fmt.Errorf("%w: request id %.40q... is %d bytes long: at most %d", ErrInvalid, id, len(id), MaxRequestID)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("%w: request id %q has a control character or is not UTF-8: use printable text", ErrInvalid, id)
		}
	}
	return nil
}

// specHash identifies a submitted spec, as the client sent it.
func specHash(spec job.Spec) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// forgetRequests deletes expired request ids, at most once an hour.
func (f *Fleet) forgetRequests(ctx context.Context, now time.Time) {
	last := f.reqForgot.Load()
	if now.UnixNano()-last < int64(time.Hour) || !f.reqForgot.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if n, err := f.st.ForgetRequests(ctx, now); err != nil {
		f.logger.Warn("forget old request ids", "error", err)
	} else if n > 0 {
		f.logger.Debug("forgot old request ids", "count", n)
	}
}

package gerrit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
)

// inboxSchema holds the events accepted and not decided yet: the event's
// row in gerrit_events (action received or failed) and, here, what it
// takes to decide it, until a decision replaces both.
const inboxSchema = `
CREATE TABLE IF NOT EXISTS gerrit_inbox (
	event_id    INTEGER PRIMARY KEY,
	via         TEXT NOT NULL,
	body        BLOB NOT NULL,
	order_key   TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_try_at INTEGER NOT NULL DEFAULT 0
);
`

// inboxRow is an accepted event waiting for its decision.
type inboxRow struct {
	EventID  int64
	Server   string
	OrderKey string
	Attempts int
	NextTry  time.Time
}

// accepted is one event to write down before it is decided.
type accepted struct {
	rec      EventRecord
	via      string
	body     []byte
	orderKey string
}

// accept writes events down, in one transaction, and returns their ids:
// with the action received and their inbox row, or, when the event comes
// decided (noise), as it is.
func (s *store) accept(ctx context.Context, evs []accepted) ([]int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("accept gerrit events: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	ids := make([]int64, len(evs))
	for i, a := range evs {
		if a.rec.Action == "" {
			a.rec.Action = decide.ActionReceived
		}
		id, err := insertEvent(ctx, tx, a.rec)
		if err != nil {
			return nil, err
		}
		ids[i] = id
		if a.rec.Action != decide.ActionReceived {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO gerrit_inbox (event_id, via, body, order_key) VALUES (?, ?, ?, ?)`,
			id, a.via, a.body, a.orderKey); err != nil {
			return nil, fmt.Errorf("accept gerrit event: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("accept gerrit events: commit: %w", err)
	}
	return ids, nil
}

// pending lists up to limit undecided events, oldest first.
func (s *store) pending(ctx context.Context, limit int) ([]inboxRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT i.event_id, e.server, i.order_key, i.attempts, i.next_try_at
		FROM gerrit_inbox i JOIN gerrit_events e ON e.id = i.event_id ORDER BY i.event_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list undecided gerrit events: %w", err)
	}
	defer rows.Close()
	var out []inboxRow
	for rows.Next() {
		var r inboxRow
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
func (s *store) pendingCount(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_inbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count undecided gerrit events: %w", err)
	}
	return n, nil
}

// body reads an undecided event's payload; ok is false when it was
// decided meanwhile.
func (s *store) body(ctx context.Context, eventID int64) (body []byte, via string, ok bool, err error) {
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
func (s *store) failAttempt(ctx context.Context, eventID int64, attempts int, next time.Time, reason string) error {
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
func recordDecision(ctx context.Context, x execer, r EventRecord) error {
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

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Coordinators sharing a PostgreSQL database make one leader; the others
// are standbys. The leader holds a session advisory lock (leaderLock) on a
// connection of its own for as long as it leads: a standby waits for it,
// and PostgreSQL frees it when the leader's session ends, whichever way.
// On taking the lock a coordinator counts up the epoch in the leader row
// and writes with it from then on. Fencing: a trigger on every table
// refuses a write whose connection's epoch (kiln.epoch) is not the
// leader row's, and reads that row FOR
// SHARE, so that the epoch changes only between write transactions (a
// connection takes up its store's epoch before its next statement or
// transaction: pgConn). A transaction is checked at its first write and
// holds the row until it ends (fenceOnce). A deposed leader whose other connections still work cannot write once the
// new leader has counted up the epoch.
const leaderLock = 0x6b696c6e02 // "kiln" 2

// ErrDeposed is a write refused because another coordinator leads now.
var ErrDeposed = errors.New("another coordinator leads now: this one's writes are refused")

// deposedCode is the SQLSTATE kiln_fence raises.
const deposedCode = "KL001"

// fenced lists the tables kiln_fence guards when it is made: all but
// schema_version and leader. A later migration that adds a table adds its
// trigger (fence), as the one of submit_requests does.
var fenced = []string{
	"jobs", "job_notes", "drained_workers", "revisions", "release_seals", "release_verifications",
	"release_verification_items", "gerrit_events", "gerrit_dedup", "gerrit_heads", "gerrit_release_revs",
	"gerrit_early_results", "gerrit_event_changes", "gerrit_reports", "gerrit_jobs", "gerrit_inbox",
}

// leaderSchema is the leader row and the fence. Until a coordinator first
// leads (epoch 0) every connection may write: a store opened by a program
// that does not lead (tests, tools) works as before.
const leaderSchema = `
CREATE TABLE leader (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	epoch   BIGINT NOT NULL,
	address TEXT NOT NULL DEFAULT '',
	since   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO leader (id, epoch) VALUES (1, 0);
CREATE FUNCTION kiln_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	current BIGINT;
BEGIN
	SELECT epoch INTO current FROM leader WHERE id = 1 FOR SHARE;
	IF current <> 0 AND current_setting('kiln.epoch', true) IS DISTINCT FROM current::text THEN
		RAISE EXCEPTION 'write with leader epoch % refused: epoch % leads now', current_setting('kiln.epoch', true), current
			USING ERRCODE = 'KL001';
	END IF;
	RETURN NULL;
END
$$;
`

// fenceOnce makes kiln_fence check a transaction's first write only: it
// then holds the leader row FOR SHARE until the transaction ends, so the
// epoch cannot change under its later writes, and it notes that
// (kiln.fenced, a setting local to the transaction) so that they skip the
// lock and the comparison, which cost a group commit's statements more
// than their own inserts. A savepoint rolled back undoes the lock and the
// note together.
const fenceOnce = `
CREATE OR REPLACE FUNCTION kiln_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	current BIGINT;
BEGIN
	IF current_setting('kiln.fenced', true) = 'yes' THEN
		RETURN NULL;
	END IF;
	SELECT epoch INTO current FROM leader WHERE id = 1 FOR SHARE;
	IF current <> 0 AND current_setting('kiln.epoch', true) IS DISTINCT FROM current::text THEN
		RAISE EXCEPTION 'write with leader epoch % refused: epoch % leads now', current_setting('kiln.epoch', true), current
			USING ERRCODE = 'KL001';
	END IF;
	PERFORM set_config('kiln.fenced', 'yes', true);
	RETURN NULL;
END
$$;
`

// fence is the SQL that puts kiln_fence on tables.
func fence(tables ...string) string {
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "CREATE TRIGGER %s_fence BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION kiln_fence();\n", t, t)
	}
	return b.String()
}

// IsDeposed reports whether err is a write refused because another
// coordinator leads now.
func IsDeposed(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, ErrDeposed) || (errors.As(err, &pe) && pe.Code == deposedCode)
}

// Shared reports whether several coordinators can share the store
// (PostgreSQL): they must then Lead before writing.
func (s *Store) Shared() bool { return s.d == postgresDialect }

// Lease is a coordinator's leadership.
type Lease struct {
	conn  *sql.Conn
	Epoch int64
	// PID is the PostgreSQL backend process of the lock's session.
	PID int64
}

// Lead waits until this coordinator leads, then records address (where
// workers and clients reach it) and the new epoch in the leader row. On
// SQLite, which one coordinator uses alone, it returns at once.
func (s *Store) Lead(ctx context.Context, address string) (*Lease, error) {
	if !s.Shared() {
		return &Lease{}, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect for the leader lock: %w", err)
	}
	// Should the leader's host vanish without closing its connection,
	// PostgreSQL ends the session (and frees the lock) after this long
	// without the pings of Hold.
	if _, err := conn.ExecContext(ctx, `SET idle_session_timeout = '10s'`); err != nil {
		conn.Close()
		return nil, fmt.Errorf("set up the leader lock's connection: %w", err)
	}
	var pid int64
	if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		conn.Close()
		return nil, fmt.Errorf("set up the leader lock's connection: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, int64(leaderLock)); err != nil {
		drop(conn)
		return nil, fmt.Errorf("wait for the leader lock: %w", err)
	}
	var epoch int64
	if err := conn.QueryRowContext(ctx, `UPDATE leader SET epoch = epoch + 1, address = ?, since = ? WHERE id = 1 RETURNING epoch`,
		address, time.Now().UnixNano()).Scan(&epoch); err != nil {
		drop(conn)
		return nil, fmt.Errorf("count up the leader epoch: %w", err)
	}
	s.epoch.Store(epoch) // every connection carries it from its next statement
	return &Lease{conn: conn, Epoch: epoch, PID: pid}, nil
}

// drop closes the session of conn rather than giving it back to the pool
// with the lock it may hold.
func drop(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// Hold keeps the lease until ctx ends, and returns an error as soon as
// the lock's connection fails: the lock is then gone, and another
// coordinator may lead.
func (l *Lease) Hold(ctx context.Context) error {
	if l.conn == nil {
		<-ctx.Done()
		return nil
	}
	defer drop(l.conn)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.conn.PingContext(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("lost the leader lock (epoch %d): %w", l.Epoch, err)
		}
	}
}

// Release gives the lease up (for a lease Hold does not keep).
func (l *Lease) Release() {
	if l.conn != nil {
		drop(l.conn)
	}
}

// Leader returns the leader row: the epoch and where the leader said it
// is reached ("" before any leader).
func (s *Store) Leader(ctx context.Context) (epoch int64, address string, err error) {
	if !s.Shared() {
		return 0, "", nil
	}
	if err := s.db.QueryRowContext(ctx, `SELECT epoch, address FROM leader WHERE id = 1`).Scan(&epoch, &address); err != nil {
		return 0, "", fmt.Errorf("read the leader: %w", err)
	}
	return epoch, address, nil
}

// epochSetting is what a new PostgreSQL connection runs to carry epoch.
func epochSetting(epoch int64) string {
	return `SELECT set_config('kiln.epoch', '` + strconv.FormatInt(epoch, 10) + `', false)`
}

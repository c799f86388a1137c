package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// A migration moves the schema one version on, inside the transaction
// that records the new version. Each dialect has its list: migration i
// (from 0) makes version i+1. A change to the schema is a new migration
// at the end of both lists, never an edit of one that shipped.
type migration struct {
	name string
	up   func(ctx context.Context, tx *sql.Tx) error
}

// execAll is a migration that runs statements.
func execAll(stmts ...string) func(ctx context.Context, tx *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
}

// migrateLock is the advisory lock key under which coordinators sharing a
// PostgreSQL database migrate it one at a time.
const migrateLock = 0x6b696c6e01 // "kiln" 1

// migrate brings the database's schema to the newest version.
func migrate(ctx context.Context, db *sql.DB, d *dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after commit this is a no-op
	if d == postgresDialect {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("wait for other coordinators' migrations: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var have int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("start schema_version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	if have > len(d.migrations) {
		return fmt.Errorf("the database's schema is version %d, newer than this coordinator knows (%d): run a newer coordinator", have, len(d.migrations))
	}
	for i := have; i < len(d.migrations); i++ {
		m := d.migrations[i]
		if err := m.up(ctx, tx); err != nil {
			return fmt.Errorf("migrate schema to version %d (%s): %w", i+1, m.name, err)
		}
	}
	if have == len(d.migrations) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(d.migrations)); err != nil {
		return fmt.Errorf("record schema version: %w", err)
	}
	return tx.Commit()
}

// sqliteMigrations are the SQLite schema's versions. The first takes a
// database from before schema_version, in whichever shape the coordinator
// left it, to the schema of then.
var sqliteMigrations = []migration{
	{"tables before schema versions", func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range []string{schema, listIndexes(sqliteExprs), originSearch, releaseSchema} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if err := addVersionColumn(ctx, tx); err != nil {
			return err
		}
		return createGerritTables(ctx, tx)
	}},
	{"submission request ids", execAll(requestsSchema)},
}

// addVersionColumn adds the version column to a database made before it
// existed.
func addVersionColumn(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info('jobs') WHERE name = 'version'`)
	if err != nil {
		return err
	}
	found := rows.Next()
	rows.Close()
	if found {
		return nil
	}
	_, err = tx.ExecContext(ctx, `ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0`)
	return err
}

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is what differs between the two databases the store runs on:
// how to open one, its schema migrations, and the SQL of the expressions
// the job list filters on and of the origin search. Everything else is
// SQL both accept: the store writes `?` placeholders, which the
// PostgreSQL connection rewrites (rebind), INSERT ... ON CONFLICT, and
// RETURNING for generated ids.
type dialect struct {
	name       string
	migrations []migration
	exprs
	// originSeqs selects, newest first, the sequence numbers of jobs whose
	// origin matches the pattern (the first argument) and, when before is
	// set, are older than the second argument.
	originSeqs func(before bool) string
	// originPattern makes the pattern originSeqs matches an origin text
	// against.
	originPattern func(text string) string
	// indexesOrigins tells that origins are indexed apart from the jobs
	// and must be caught up before a search (catchUpOrigins).
	indexesOrigins bool
}

// exprs are expressions over a job row: a package build's release and
// package, the origin, whether the origin names a Gerrit change and its
// number, and whether the origin is the Gerrit intake's.
type exprs struct {
	releaseExpr, packageExpr, originExpr, hasChange, changeExpr, gerritOrigin string
}

func jsonExtract(path string) string { return `json_extract(spec, '$.` + path + `')` }

var sqliteExprs = exprs{
	releaseExpr:  jsonExtract("build.release"),
	packageExpr:  jsonExtract("build.package"),
	originExpr:   jsonExtract("origin"),
	hasChange:    `instr(` + jsonExtract("origin") + `, ' change ') > 0`,
	changeExpr:   `CAST(substr(` + jsonExtract("origin") + `, instr(` + jsonExtract("origin") + `, ' change ') + 8) AS INTEGER)`,
	gerritOrigin: `substr(` + jsonExtract("origin") + `, 1, 7) = 'gerrit '`,
}

var sqliteDialect = &dialect{
	name:       "sqlite",
	migrations: sqliteMigrations,
	exprs:      sqliteExprs,
	originSeqs: func(before bool) string {
		q := `SELECT rowid FROM job_origins WHERE origin GLOB ?`
		if before {
			q += ` AND rowid < ?`
		}
		return q + ` ORDER BY rowid DESC`
	},
	originPattern:  func(text string) string { return "*" + globEscape(text) + "*" },
	indexesOrigins: true,
}

// pgOrigin is a job's origin on PostgreSQL.
const pgOrigin = `((spec::jsonb) ->> 'origin')`

var postgresExprs = exprs{
	releaseExpr:  `((spec::jsonb) #>> '{build,release}')`,
	packageExpr:  `((spec::jsonb) #>> '{build,package}')`,
	originExpr:   pgOrigin,
	hasChange:    `strpos(` + pgOrigin + `, ' change ') > 0`,
	changeExpr:   `(CAST(substring(` + pgOrigin + ` FROM ' change ([0-9]+)') AS BIGINT))`,
	gerritOrigin: `substr(` + pgOrigin + `, 1, 7) = 'gerrit '`,
}

var postgresDialect = &dialect{
	name:       "postgres",
	migrations: postgresMigrations,
	exprs:      postgresExprs,
	originSeqs: func(before bool) string {
		q := `SELECT seq FROM jobs WHERE origin LIKE ? ESCAPE '\'`
		if before {
			q += ` AND seq < ?`
		}
		return q + ` ORDER BY seq DESC`
	},
	originPattern: func(text string) string { return "%" + likeEscape(text) + "%" },
}

// IsPostgres tells whether a store location is a PostgreSQL URL rather
// than a SQLite file.
func IsPostgres(where string) bool {
	return strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://")
}

// maxConns bounds a PostgreSQL store's connections.
const maxConns = 16

// openDB opens the database at where: a PostgreSQL URL or a SQLite file.
// PostgreSQL connections carry the leader epoch epoch holds (leader.go).
func openDB(where string, epoch *atomic.Int64) (*sql.DB, *dialect, error) {
	if IsPostgres(where) {
		cfg, err := pgx.ParseConfig(where)
		if err != nil {
			return nil, nil, fmt.Errorf("parse PostgreSQL URL %s: %w", redact(where), err)
		}
		boundPartitions(cfg)
		db := sql.OpenDB(pgConnector{Connector: stdlib.GetConnector(*cfg), epoch: epoch})
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(maxConns)
		return db, postgresDialect, nil
	}
	dsn := "file:" + where + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	return db, sqliteDialect, nil
}

// redact drops the password from a PostgreSQL URL for messages.
func redact(where string) string {
	cfg, err := pgconn.ParseConfig(where)
	if err != nil || cfg.Password == "" {
		return where
	}
	return strings.Replace(where, ":"+cfg.Password+"@", ":xxxxx@", 1)
}

// IsFull reports whether err is a write that failed for lack of space:
// the disk, or the database's size limit, is full.
func IsFull(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "53100" { // disk_full
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// rebind rewrites the store's `?` placeholders as PostgreSQL's $1, $2...,
// leaving quoted text alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
		case c == '?' && !quoted:
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// pgConnector gives pgx's database/sql connections that rebind every
// query they are handed, so that the store's SQL is the same on both
// databases, and that carry the store's leader epoch (leader.go): before
// a statement or a transaction, a connection whose session carries an
// older epoch sets the new one.
type pgConnector struct {
	driver.Connector
	epoch *atomic.Int64
}

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{Conn: conn.(*stdlib.Conn), epoch: c.epoch, carried: -1}, nil
}

// pgConn is used by one goroutine at a time (database/sql's rule).
type pgConn struct {
	*stdlib.Conn
	epoch   *atomic.Int64
	carried int64
	inTx    bool
}

// carry sets the session's epoch to the store's, outside transactions
// (a setting made in one is undone by its rollback).
func (c *pgConn) carry(ctx context.Context) error {
	e := c.epoch.Load()
	if c.inTx || e == c.carried {
		return nil
	}
	if _, err := c.Conn.ExecContext(ctx, epochSetting(e), nil); err != nil {
		return fmt.Errorf("carry leader epoch %d: %w", e, err)
	}
	c.carried = e
	return nil
}

func (c *pgConn) Prepare(q string) (driver.Stmt, error) { return c.Conn.Prepare(rebind(q)) }

func (c *pgConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, rebind(q))
}

func (c *pgConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.carry(ctx); err != nil {
		return nil, err
	}
	return c.Conn.ExecContext(ctx, rebind(q), args)
}

func (c *pgConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.carry(ctx); err != nil {
		return nil, err
	}
	return c.Conn.QueryContext(ctx, rebind(q), args)
}

func (c *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.carry(ctx); err != nil {
		return nil, err
	}
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return &pgTx{Tx: tx, c: c}, nil
}

type pgTx struct {
	driver.Tx
	c *pgConn
}

func (t *pgTx) Commit() error {
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t *pgTx) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}

// globEscape makes s match itself in a GLOB pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[':
			b.WriteString("[" + string(r) + "]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// likeEscape makes s match itself in a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '%', '_', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

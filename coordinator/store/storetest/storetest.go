// Package storetest gives tests a PostgreSQL database of their own for
// the coordinator's store. The server is KILN_TEST_POSTGRES, by default
// the one scripts/postgres.sh starts; without it a test skips, or fails
// under KILN_TEST_STRICT=1.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testenv"
)

// DefaultServer is the server scripts/postgres.sh provides.
const DefaultServer = "postgres://kiln:kiln@127.0.0.1:5432/postgres"

// Server returns the URL of the test server's maintenance database.
func Server() string {
	if u := os.Getenv("KILN_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultServer
}

// Postgres creates an empty database on the test server, dropped when the
// test ends, and returns its URL.
func Postgres(t testing.TB) string {
	t.Helper()
	server := Server()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		testenv.Require(t, false, "PostgreSQL at "+server+" (KILN_TEST_POSTGRES; by default the one scripts/postgres.sh starts): "+err.Error())
		return ""
	}
	defer conn.Close(ctx)
	b := make([]byte, 8)
	rand.Read(b)
	name := "kiln_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if err := drop(ctx, conn, name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("KILN_TEST_POSTGRES %s: %v", server, err)
	}
	u.Path = "/" + name
	return u.String()
}

// drop drops a test database and ends the sessions still in it. FORCE
// refuses to end an autovacuum worker's (which a test that wrote many rows
// may have started) unless the role may signal any backend; a plain DROP
// cancels autovacuum itself but waits for other sessions. Each is tried in
// turn until one succeeds.
func drop(ctx context.Context, conn *pgx.Conn, name string) error {
	var err error
	for i := 0; ; i++ {
		q := `DROP DATABASE ` + name + ` WITH (FORCE)`
		if i%2 == 1 {
			q = `DROP DATABASE ` + name
		}
		if _, err = conn.Exec(ctx, q); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package store

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// Two coordinators on one PostgreSQL database: the second waits while the
// first leads; once the first's lock session ends, the second leads with
// the next epoch, and the first, whose other connections still work, can
// no longer write (fencing) while the second can.
func TestLeaderFencesDeposedLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	where := storetest.Postgres(t)
	a := open(t, where)
	defer a.Close()
	b := open(t, where)
	defer b.Close()
	put := func(s *Store, state job.State, version int64) error {
		return s.Put(ctx, &job.Job{ID: "1", Seq: 1, State: state, Version: version, CreatedAt: time.Now(), Spec: job.Spec{Kind: job.Command, Command: []string{"true"}}})
	}
	la, err := a.Lead(ctx, "a:7420")
	if err != nil {
		t.Fatal(err)
	}
	if err := put(a, job.Queued, 1); err != nil {
		t.Fatalf("the leader's write: %v", err)
	}
	if err := put(b, job.Running, 2); !IsDeposed(err) {
		t.Fatalf("a standby's write: %v, want it refused", err)
	}
	led := make(chan *Lease, 1)
	go func() {
		lb, err := b.Lead(ctx, "b:7420")
		if err != nil {
			t.Error(err)
		}
		led <- lb
	}()
	select {
	case <-led:
		t.Fatal("the second coordinator leads while the first holds the lock")
	case <-time.After(500 * time.Millisecond):
	}
	if epoch, addr, err := b.Leader(ctx); err != nil || epoch != la.Epoch || addr != "a:7420" {
		t.Fatalf("leader %d %q %v, want epoch %d at a:7420", epoch, addr, err, la.Epoch)
	}
	held := make(chan error, 1)
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { held <- la.Hold(hctx) }()
	// The first's lock session ends (its host lost, say); its pool's
	// connections stay.
	if _, err := b.DB().ExecContext(ctx, `SELECT pg_terminate_backend(?)`, la.PID); err != nil {
		t.Fatal(err)
	}
	var lb *Lease
	select {
	case lb = <-led:
	case <-time.After(30 * time.Second):
		t.Fatal("the second coordinator does not lead after the first's lock session ended")
	}
	if lb == nil || lb.Epoch != la.Epoch+1 {
		t.Fatalf("second leader's epoch %v, want %d", lb, la.Epoch+1)
	}
	select {
	case err := <-held:
		if err == nil {
			t.Fatal("the first's Hold ended without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first does not notice it lost the lock")
	}
	if err := put(a, job.Canceled, 3); !IsDeposed(err) {
		t.Fatalf("the deposed leader's write: %v, want it refused", err)
	}
	if _, err := a.NextRevision(ctx, "mos-9.0", "hello"); !IsDeposed(err) {
		t.Fatalf("the deposed leader's revision: %v, want it refused", err)
	}
	if err := put(b, job.Running, 2); err != nil {
		t.Fatalf("the new leader's write: %v", err)
	}
	if j, err := b.Get(ctx, "1"); err != nil || j.State != job.Running {
		t.Fatalf("job 1: %+v %v, want the new leader's running", j, err)
	}
	if epoch, addr, err := a.Leader(ctx); err != nil || epoch != lb.Epoch || addr != "b:7420" {
		t.Fatalf("leader %d %q %v, want epoch %d at b:7420", epoch, addr, err, lb.Epoch)
	}
}

// The fence checks a transaction's first write only, and that check
// holds: the next leader cannot count up the epoch until the transaction
// ends. The next transaction on the same connection is checked again, and
// so is a write after a savepoint rolled back, which gives the leader row
// up.
func TestFenceOncePerTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	where := storetest.Postgres(t)
	a := open(t, where)
	defer a.Close()
	b := open(t, where)
	defer b.Close()
	la, err := a.Lead(ctx, "a:7420")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := a.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	drain := func(tx *sql.Tx, name string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO drained_workers (name) VALUES (?)`, name)
		return err
	}
	lead := func(s *Store, terminate int64) <-chan *Lease {
		t.Helper()
		if _, err := b.DB().ExecContext(ctx, `SELECT pg_terminate_backend(?)`, terminate); err != nil {
			t.Fatal(err)
		}
		led := make(chan *Lease, 1)
		go func() {
			l, err := s.Lead(ctx, "next:7420")
			if err != nil {
				t.Error(err)
			}
			led <- l
		}()
		return led
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, w := range []string{"w1", "w2"} {
		if err := drain(tx, w); err != nil {
			t.Fatalf("the leader's write %s: %v", w, err)
		}
	}
	led := lead(b, la.PID)
	select {
	case <-led:
		t.Fatal("the epoch was counted up under an open write transaction")
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var lb *Lease
	select {
	case lb = <-led:
	case <-time.After(30 * time.Second):
		t.Fatal("the second coordinator does not lead after the write transaction ended")
	}
	if lb == nil || lb.Epoch != la.Epoch+1 {
		t.Fatalf("second leader's lease %+v, want epoch %d", lb, la.Epoch+1)
	}
	tx2, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback()
	if err := drain(tx2, "w3"); !IsDeposed(err) {
		t.Fatalf("the deposed leader's next transaction on the same connection: %v, want it refused", err)
	}

	bconn, err := b.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bconn.Close()
	tx, err = bconn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}
	if err := drain(tx, "w4"); err != nil {
		t.Fatalf("the second leader's write: %v", err)
	}
	if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}
	select {
	case la = <-lead(a, lb.PID):
	case <-time.After(30 * time.Second):
		t.Fatal("a write rolled back to its savepoint still holds the leader row")
	}
	if la == nil || la.Epoch != lb.Epoch+1 {
		t.Fatalf("third leader's lease %+v, want epoch %d", la, lb.Epoch+1)
	}
	la.Release()
	if err := drain(tx, "w5"); !IsDeposed(err) {
		t.Fatalf("a write after a savepoint rolled back, with another leader since: %v, want it refused", err)
	}
}

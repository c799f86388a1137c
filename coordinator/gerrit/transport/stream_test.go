package transport

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

// failingInbox refuses to store the first fail calls, as a store whose
// database is unreachable, then stores.
type failingInbox struct {
	mu     sync.Mutex
	fail   int
	calls  int
	stored []string
	got    chan struct{}
}

func (f *failingInbox) Accept(_ context.Context, _ string, lines [][]byte, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail > 0 {
		f.fail--
		return errors.New("database is locked")
	}
	for _, l := range lines {
		f.stored = append(f.stored, string(l))
	}
	select {
	case f.got <- struct{}{}:
	default:
	}
	return nil
}

// A batch the inbox fails to store is held and stored when the inbox
// works again, on the same connection: nothing read from the stream is
// lost and nothing is stored twice.
func TestStreamHoldsEventsTheInboxFailedToStore(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	srv := gerrittest.Start(t, gerrittest.Options{Accounts: []gerrittest.Account{{User: "kiln", Key: gerrittest.WriteClientKey(t, key)}}})
	known := filepath.Join(dir, "known_hosts")
	if err := srv.WriteKnownHosts(known); err != nil {
		t.Fatal(err)
	}
	d, err := NewSSH(SSHConfig{Addr: srv.Addr(), User: "kiln", PrivateKeyFile: key, KnownHostsFile: known})
	if err != nil {
		t.Fatal(err)
	}
	inbox := &failingInbox{fail: 3, got: make(chan struct{}, 1)}
	connects := 0
	var cmu sync.Mutex
	st := NewStream(StreamConfig{Server: "review", SSH: d, Reconnect: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		Connected: func() { cmu.Lock(); connects++; cmu.Unlock() }}, inbox)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	if err := srv.WaitStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 3 {
		line := fmt.Sprintf(`{"type":"ref-updated","n":%d}`, i)
		want = append(want, line)
		srv.Send(line)
	}
	for {
		inbox.mu.Lock()
		n := len(inbox.stored)
		inbox.mu.Unlock()
		if n >= len(want) {
			break
		}
		select {
		case <-inbox.got:
		case <-ctx.Done():
			t.Fatalf("stored %d of %d events: %v", n, len(want), ctx.Err())
		}
	}
	cancel()
	<-done
	inbox.mu.Lock()
	defer inbox.mu.Unlock()
	if fmt.Sprint(inbox.stored) != fmt.Sprint(want) {
		t.Errorf("stored %q, want %q once each", inbox.stored, want)
	}
	if inbox.calls < 4 {
		t.Errorf("inbox called %d times, want the 3 failures and a success", inbox.calls)
	}
	cmu.Lock()
	defer cmu.Unlock()
	if connects != 1 {
		t.Errorf("stream connected %d times, want 1: a failed store must not drop the connection and its events", connects)
	}
}

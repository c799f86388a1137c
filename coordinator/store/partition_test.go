package store

import (
	"context"
	"testing"

	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// A PostgreSQL store's sessions end a transaction left open and probe a
// silent peer, so that a coordinator cut off from the database is noticed
// in bounded time on the server's side too.
func TestPostgresSessionsBoundPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.Postgres(t))
	defer s.Close()
	for setting, want := range map[string]string{
		"idle_in_transaction_session_timeout": "10s",
		"tcp_user_timeout":                    "15000",
	} {
		var got string
		if err := s.DB().QueryRowContext(ctx, "SHOW "+setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", setting, got, err, want)
		}
	}
}

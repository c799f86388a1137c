package store

import (
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// forBackends runs f, in parallel, on a new SQLite database file and on a
// new PostgreSQL database: where is the location to Open.
func forBackends(t *testing.T, f func(t *testing.T, where string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, filepath.Join(t.TempDir(), "state.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		f(t, storetest.Postgres(t))
	})
}

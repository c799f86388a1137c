package fleet

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/coordinator/store/storetest"
)

// postgresDirs maps the state dirs of forBackends' PostgreSQL runs to
// their databases.
var postgresDirs sync.Map

// storeIn is where the store of a test's state dir is: its SQLite file,
// or the PostgreSQL database forBackends made for it.
func storeIn(dir string) string {
	if u, ok := postgresDirs.Load(dir); ok {
		return u.(string)
	}
	return filepath.Join(dir, "coordinator.db")
}

// forBackends runs f, in parallel, with a new state dir whose store is
// SQLite and one whose store is a new PostgreSQL database.
func forBackends(t *testing.T, f func(t *testing.T, dir string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		f(t, t.TempDir())
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		postgresDirs.Store(dir, storetest.Postgres(t))
		t.Cleanup(func() { postgresDirs.Delete(dir) })
		f(t, dir)
	})
}

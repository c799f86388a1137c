package buildroot

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// aptLists are apt's package lists and the binary caches it builds from
// them and dpkg's database.
var aptLists = []string{"var/lib/apt/lists", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"}

// ExecResolve runs the step that resolves phase 1's build dependencies
// (apt-get update, then apt's plan) with the layer cache's copy of apt's
// package lists from the last such step on the same chroot: apt-get
// update then checks them against the sources' Release files (signed, by
// their hashes) as on any Debian system, fetches only what changed, drops
// the lists of sources no longer configured, and rebuilds its caches when
// their inputs changed, instead of fetching, decompressing and parsing
// every index again. The lists it leaves are stored for the next one.
// The lists are checked against their sha256 before use; a corrupt copy
// is removed and the step fetches everything.
func (s *Sandbox) ExecResolve(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error) {
	lc := s.b.layers
	if lc == nil {
		return s.Exec(ctx, step, log)
	}
	id := "lists-" + layerID(s.digest, "apt package lists")
	upper := filepath.Join(s.dir, "upper")
	if m, ok := lc.lookup(id); ok {
		t0 := time.Now()
		if err := lc.verify(id, m); err != nil {
			lc.drop(id)
			fmt.Fprintf(log, "kiln: apt package lists of an earlier build not used: corrupt, removed: %v\n", err)
		} else {
			s.mu.Lock()
			f, err := os.Open(lc.path(id, ".tar"))
			if err == nil {
				err = readLayer(f, upper)
				f.Close()
			}
			s.mu.Unlock()
			if err != nil {
				lc.drop(id)
				return executor.StepResult{}, fmt.Errorf("unpack apt package lists %s: %w", id, err)
			}
			lc.touch(id)
			fmt.Fprintf(log, "kiln: apt package lists of an earlier build on this chroot restored (%s) in %s; apt-get update checks them\n",
				humanBytes(m.Size), time.Since(t0).Round(time.Millisecond))
		}
	}
	res, err := s.Exec(ctx, step, log)
	if err != nil || res.Failed() {
		return res, err
	}
	s.mu.Lock()
	_, serr := lc.store(id, upper, layerManifest{Chroot: s.digest}, aptLists...)
	s.mu.Unlock()
	if serr != nil {
		fmt.Fprintf(log, "kiln: apt package lists not stored: %v\n", serr)
	}
	return res, nil
}

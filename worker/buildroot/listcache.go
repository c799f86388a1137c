package buildroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// aptLists are apt's package lists. The binary caches apt builds from
// them (var/cache/apt/*.bin) are left out: apt-get update removes and
// builds them again after every run, changed lists or not.
var aptLists = []string{"var/lib/apt/lists"}

// ExecResolve runs the step that resolves phase 1's build dependencies
// (apt-get update, then apt's plan) with the layer cache's copy of apt's
// package lists from the last such step on the same chroot: apt-get
// update then checks them against the sources' Release files (signed, by
// their hashes) as on any Debian system, fetches only what changed, drops
// the lists of sources no longer configured, and builds its caches from
// them, instead of fetching and decompressing every index again. The lists it leaves are stored for the next one.
// The lists are checked against their sha256 before use; a corrupt copy
// is removed and the step fetches everything. Lists the step left as it
// found them are not stored again.
func (s *Sandbox) ExecResolve(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error) {
	lc := s.b.layers
	if lc == nil {
		return s.Exec(ctx, step, log)
	}
	id := "lists-" + layerID(s.digest, "apt package lists v2")
	upper := filepath.Join(s.dir, "upper")
	restored := ""
	if m, ok := lc.lookup(id); ok {
		t0 := time.Now()
		if err := lc.verify(id, m); err != nil {
			lc.drop(id)
			fmt.Fprintf(log, "kiln: apt package lists of an earlier build not used: corrupt, removed: %v\n", err)
		} else {
			if err := s.unpackCached(id); err != nil {
				return executor.StepResult{}, fmt.Errorf("unpack apt package lists %s: %w", id, err)
			}
			s.mu.Lock()
			restored, _ = listsState(upper)
			s.mu.Unlock()
			fmt.Fprintf(log, "kiln: apt package lists of an earlier build on this chroot restored (%s) in %s; apt-get update checks them\n",
				humanBytes(m.Size), time.Since(t0).Round(time.Millisecond))
		}
	}
	res, err := s.Exec(ctx, step, log)
	if err != nil || res.Failed() {
		return res, err
	}
	t0 := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if restored != "" {
		if now, err := listsState(upper); err == nil && now == restored {
			fmt.Fprintf(log, "kiln: apt package lists unchanged since they were stored, not stored again\n")
			return res, nil
		}
	}
	size, serr := lc.store(id, upper, layerManifest{Chroot: s.digest}, aptLists...)
	if serr != nil {
		fmt.Fprintf(log, "kiln: apt package lists not stored: %v\n", serr)
	} else {
		fmt.Fprintf(log, "kiln: apt package lists stored (%s) in %s\n", humanBytes(size), time.Since(t0).Round(time.Millisecond))
	}
	return res, nil
}

// listsState is a fingerprint of apt's package lists in upper: every
// file's name, mode, size, modification time and inode. apt-get update
// replaces a list it fetches again (a new file renamed into place), so a
// step that changed nothing leaves the same fingerprint. Directories
// count by name only.
func listsState(upper string) (string, error) {
	h := sha256.New()
	for _, root := range aptLists {
		err := filepath.WalkDir(filepath.Join(upper, root), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if d.IsDir() {
				// apt-get update works in lists/partial/, so a directory's
				// time changes even when no list did.
				fmt.Fprintf(h, "%s/\n", strings.TrimPrefix(p, upper))
				return nil
			}
			var ino uint64
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				ino = st.Ino
			}
			rel, _ := filepath.Rel(upper, p)
			fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00%d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano(), ino)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// gcLock is the file in the root that uploads lock shared and a collection
// exclusively.
const gcLock = ".gc-lock"

// DefaultObjectGrace is how old an unreferenced stored object must be
// before CollectObjects removes it: uploads wait unreferenced for the
// publish request that includes them, which comes within seconds.
const DefaultObjectGrace = 24 * time.Hour

// CollectResult says what CollectObjects found.
type CollectResult struct {
	// Removed is how many unreferenced objects were removed (or, with
	// dryRun, would be), Bytes their size.
	Removed int   `json:"removed"`
	Bytes   int64 `json:"bytes"`
	// Kept counts objects a package or snapshot references; Young the
	// unreferenced ones still within the grace period.
	Kept  int `json:"kept"`
	Young int `json:"young"`
}

// CollectObjects removes stored objects that no package of any repository
// or snapshot references and that were written and last uploaded more than
// grace ago: the files of removed packages, and uploads that never became a
// package (the unsigned originals of signed rpms, say). Published pool files
// are hard links of their own and are not touched; they leave the pool on
// the second publish after their package was removed.
func (s *Store) CollectObjects(ctx context.Context, grace time.Duration, dryRun bool) (CollectResult, error) {
	var res CollectResult
	if grace < 0 {
		return res, fmt.Errorf("collect objects: grace %s is negative", grace)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	// Uploads wait while the collection runs (see AddObject).
	release, err := s.flock(ctx, gcLock, syscall.LOCK_EX)
	if err != nil {
		return res, err
	}
	defer release()
	refs, err := s.referencedObjects(ctx)
	if err != nil {
		return res, fmt.Errorf("collect objects: %w", err)
	}
	cutoff := s.now().Add(-grace)
	uploaded := map[string]bool{}
	if err := s.recentUploads(ctx, cutoff, uploaded, dryRun); err != nil {
		return res, fmt.Errorf("collect objects: %w", err)
	}
	dir := filepath.Join(s.root, "objects")
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !isSHA256(d.Name()) || filepath.Base(filepath.Dir(p)) != d.Name()[:2] {
			return nil
		}
		if refs[d.Name()] {
			res.Kept++
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if uploaded[d.Name()] || fi.ModTime().After(cutoff) {
			res.Young++
			return nil
		}
		if !dryRun {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			s.log.Debug("removed unreferenced object", "sha256", d.Name(), "size", fi.Size())
		}
		res.Removed++
		res.Bytes += fi.Size()
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("collect objects: %w", err)
	}
	if !dryRun {
		if err := s.forgetFileLists(ctx, refs); err != nil {
			return res, fmt.Errorf("collect objects: %w", err)
		}
	}
	if res.Removed > 0 && !dryRun {
		s.log.Info("removed unreferenced objects", "count", res.Removed, "bytes", res.Bytes)
	}
	return res, nil
}

// recentUploads adds to recent the sha256 of every upload received after
// cutoff, and forgets older uploads unless dryRun.
func (s *Store) recentUploads(ctx context.Context, cutoff time.Time, recent map[string]bool, dryRun bool) error {
	rows, err := s.db.QueryContext(ctx, `SELECT sha256 FROM uploads WHERE received > ?`, cutoff.Unix())
	if err != nil {
		return err
	}
	for rows.Next() {
		var sum string
		if err := rows.Scan(&sum); err != nil {
			rows.Close()
			return err
		}
		recent[sum] = true
	}
	// Closed before the delete: the store has one connection.
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if dryRun {
		return nil
	}
	_, err = s.db.ExecContext(ctx, `DELETE FROM uploads WHERE received <= ?`, cutoff.Unix())
	return err
}

// referencedObjects returns the sha256 of every file a package of a
// repository or a snapshot references.
func (s *Store) referencedObjects(ctx context.Context) (map[string]bool, error) {
	refs := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT files FROM packages UNION ALL SELECT files FROM snapshot_packages`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var files []poolFile
		if err := json.Unmarshal([]byte(raw), &files); err != nil {
			return nil, fmt.Errorf("read the files of a package: %w", err)
		}
		for _, f := range files {
			refs[f.SHA256] = true
		}
	}
	return refs, rows.Err()
}

func isSHA256(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// forgetFileLists drops the kept file lists (deb_files, for the Contents
// indexes) of packages no repository or snapshot references any more.
func (s *Store) forgetFileLists(ctx context.Context, refs map[string]bool) error {
	rs, err := s.db.QueryContext(ctx, `SELECT sha256 FROM deb_files`)
	if err != nil {
		return fmt.Errorf("package file lists: %w", err)
	}
	var gone []string
	for rs.Next() {
		var sum string
		if err := rs.Scan(&sum); err != nil {
			rs.Close()
			return fmt.Errorf("package file lists: %w", err)
		}
		if !refs[sum] {
			gone = append(gone, sum)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("package file lists: %w", err)
	}
	for _, sum := range gone {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM deb_files WHERE sha256 = ?`, sum); err != nil {
			return fmt.Errorf("package file lists: %w", err)
		}
	}
	return nil
}

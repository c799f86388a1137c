package repo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Names in a published deb tree.
const (
	distsLink  = "dists"
	distsGens  = ".dists"
	newLinkPfx = ".dists-new-"
	// unreferenced lists pool files found unreferenced at the last
	// publish; they are removed at the next one if still unreferenced, so
	// that the previous index generation never points at a missing file.
	unreferencedList = ".unreferenced"
)

// PublishResult says what a publish did.
type PublishResult struct {
	Repo     string `json:"repo"`
	Dir      string `json:"dir"`
	Packages int    `json:"packages"`
	// Bytes is the size of the packages' files.
	Bytes int64 `json:"bytes"`
	// Generation names the index set now live (deb).
	Generation string `json:"generation,omitempty"`
	// Base is the publication of the snapshot of the repository's base
	// that PublishSnapshot published with it.
	Base *PublishResult `json:"base,omitempty"`
}

// List returns a repository's packages sorted by name, version, arch.
func (s *Store) List(ctx context.Context, repoName string) ([]Entry, error) {
	if _, err := s.Repo(ctx, repoName); err != nil {
		return nil, err
	}
	rs, err := s.rows(ctx, "packages", "repo", repoName, false)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.entry())
	}
	return out, nil
}

// rows reads package rows from table where col = val.
func (s *Store) rows(ctx context.Context, table, col, val string, withData bool) ([]*row, error) {
	cols := "kind, name, version, arch, component, udeb, upload_sha256, sha256, size, path, files"
	if withData {
		cols += ", stanza, meta"
	}
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE %s = ? ORDER BY name, version, arch, kind`, cols, table, col)
	rs, err := s.db.QueryContext(ctx, q, val)
	if err != nil {
		return nil, fmt.Errorf("read packages of %s: %w", val, err)
	}
	defer rs.Close()
	var out []*row
	for rs.Next() {
		r := &row{}
		var files string
		var meta sql.NullString
		dest := []any{&r.kind, &r.name, &r.version, &r.arch, &r.component, &r.udeb, &r.uploadSHA256, &r.sha256, &r.size, &r.path, &files}
		if withData {
			dest = append(dest, &r.stanza, &meta)
		}
		if err := rs.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read packages of %s: %w", val, err)
		}
		r.meta = meta.String
		if err := json.Unmarshal([]byte(files), &r.files); err != nil {
			return nil, fmt.Errorf("read packages of %s: %w", val, err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// RemoveSpec selects packages to remove: Name, and optionally Version and
// Arch.
type RemoveSpec struct {
	Name, Version, Arch string
}

// ParseRemoveSpec parses NAME[/ARCH][=VERSION] (the architecture comes
// before the version because versions may contain ':' and '/' never).
func ParseRemoveSpec(s string) (RemoveSpec, error) {
	var sp RemoveSpec
	nameArch, version, _ := strings.Cut(s, "=")
	sp.Name, sp.Arch, _ = strings.Cut(nameArch, "/")
	sp.Version = version
	if sp.Name == "" {
		return sp, fmt.Errorf("remove %q: give NAME, NAME=VERSION or NAME/ARCH=VERSION", s)
	}
	return sp, nil
}

// Remove removes packages from a repository (not from snapshots, and not
// from the published indexes until the next publish). A spec that matches
// nothing is an error and nothing is removed.
func (s *Store) Remove(ctx context.Context, repoName string, specs []RemoveSpec) (removed []Entry, err error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := s.Repo(ctx, repoName); err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("remove from %s: %w", repoName, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, sp := range specs {
		q := `SELECT kind, name, version, arch, sha256, size, path FROM packages WHERE repo=? AND name=? AND (?='' OR version=?) AND (?='' OR arch=?)`
		rs, err := tx.QueryContext(ctx, q, repoName, sp.Name, sp.Version, sp.Version, sp.Arch, sp.Arch)
		if err != nil {
			return nil, fmt.Errorf("remove from %s: %w", repoName, err)
		}
		n := 0
		for rs.Next() {
			var e Entry
			if err := rs.Scan(&e.Kind, &e.Name, &e.Version, &e.Arch, &e.SHA256, &e.Size, &e.Path); err != nil {
				rs.Close()
				return nil, fmt.Errorf("remove from %s: %w", repoName, err)
			}
			removed = append(removed, e)
			n++
		}
		rs.Close()
		if n == 0 {
			return nil, fmt.Errorf("remove: repository %s has no package matching %s (see publisher list --repo %s)", repoName, specString(sp), repoName)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM packages WHERE repo=? AND name=? AND (?='' OR version=?) AND (?='' OR arch=?)`,
			repoName, sp.Name, sp.Version, sp.Version, sp.Arch, sp.Arch); err != nil {
			return nil, fmt.Errorf("remove from %s: %w", repoName, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pool_files WHERE repo=?1 AND path NOT IN
		(SELECT json_extract(j.value, '$.path') FROM packages p, json_each(p.files) j WHERE p.repo=?1)`, repoName); err != nil {
		return nil, fmt.Errorf("remove from %s: %w", repoName, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE repos SET gc_pending = 2 WHERE name = ?`, repoName); err != nil {
		return nil, fmt.Errorf("remove from %s: %w", repoName, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("remove from %s: %w", repoName, err)
	}
	return removed, nil
}

func specString(sp RemoveSpec) string {
	s := sp.Name
	if sp.Arch != "" {
		s += "/" + sp.Arch
	}
	if sp.Version != "" {
		s += "=" + sp.Version
	}
	return s
}

// Publish writes a repository's signed indexes and switches them live.
func (s *Store) Publish(ctx context.Context, repoName string, signer Signer) (PublishResult, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return PublishResult{}, err
	}
	defer unlock()
	return s.publishLocked(ctx, repoName, signer)
}

func (s *Store) publishLocked(ctx context.Context, repoName string, signer Signer) (PublishResult, error) {
	if signer == nil {
		return PublishResult{}, errors.New("publish: no signing key: give --key FILE (or signing: key_file in the config)")
	}
	cfg, err := s.Repo(ctx, repoName)
	if err != nil {
		return PublishResult{}, err
	}
	fam, err := familyOf(cfg.Format)
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish %s: %w", repoName, err)
	}
	src := rowSource{"packages", "repo", repoName}
	rows, err := s.rows(ctx, src.table, src.col, src.val, fam.needsMeta())
	if err != nil {
		return PublishResult{}, err
	}
	dir := s.PublicDir(repoName)
	res, err := s.publishTree(ctx, dir, cfg, src, rows, signer)
	if err != nil {
		return res, fmt.Errorf("publish %s: %w", repoName, err)
	}
	var pending int
	if err := s.db.QueryRowContext(ctx, `SELECT gc_pending FROM repos WHERE name=?`, repoName).Scan(&pending); err != nil {
		return res, fmt.Errorf("publish %s: %w", repoName, err)
	}
	if pending > 0 {
		if err := s.collectPool(dir, fam, rows); err != nil {
			return res, fmt.Errorf("publish %s: clean pool: %w", repoName, err)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE repos SET gc_pending = gc_pending - 1 WHERE name=? AND gc_pending > 0`, repoName); err != nil {
			return res, fmt.Errorf("publish %s: %w", repoName, err)
		}
	}
	return res, nil
}

func (s *Store) publishTree(ctx context.Context, dir string, cfg Config, src rowSource, rows []*row, signer Signer) (PublishResult, error) {
	res := PublishResult{Repo: cfg.Name, Dir: dir, Packages: len(rows)}
	for _, r := range rows {
		for _, f := range r.files {
			res.Bytes += f.Size
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	if err := s.linkPool(ctx, dir, rows); err != nil {
		return res, err
	}
	fam, err := familyOf(cfg.Format)
	if err != nil {
		return res, err
	}
	res.Generation, err = fam.publish(ctx, s, dir, cfg, src, rows, signer)
	return res, err
}

// linkPool makes every file the rows reference present below dir, as a
// hard link to the stored object (a copy across file systems). Files
// already there are left alone: a pool path keeps one content for as long
// as anything may reference it (see checkPoolPath). One goroutine does it:
// the cost is the kernel's, creating the per-source directories, and more
// workers only contend for the parent directory's lock (measured with
// bench/publisher/run.sh).
func (s *Store) linkPool(ctx context.Context, dir string, rows []*row) error {
	for i, r := range rows {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for _, f := range r.files {
			if err := s.linkPoolFile(dir, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkPoolFile makes one pool file present below dir. A hard link appears
// whole under its name or not at all; a copy (across file systems) is
// written under a temporary name and renamed.
func (s *Store) linkPoolFile(dir string, f poolFile) error {
	dst := filepath.Join(dir, filepath.FromSlash(f.Path))
	src := s.objectPath(f.SHA256)
	if fi, err := os.Lstat(dst); err == nil {
		return checkPoolFile(dst, fi, src, f)
	}
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrNotExist) {
		if merr := os.MkdirAll(filepath.Dir(dst), 0o755); merr != nil {
			return fmt.Errorf("pool file %s: %w", f.Path, merr)
		}
		err = os.Link(src, dst)
	}
	switch {
	case err == nil, errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pool file %s: stored object %s is missing: %w", f.Path, f.SHA256, err)
	}
	tmp := dst + ".tmp-link"
	_ = os.Remove(tmp)
	if err := copyFile(src, tmp); err != nil {
		return fmt.Errorf("pool file %s: %w", f.Path, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("pool file %s: %w", f.Path, err)
	}
	return nil
}

// checkPoolFile makes sure the pool file at dst (fi) has the content the
// indexes will name: the stored object itself (a hard link), or a copy
// with its sha256.
func checkPoolFile(dst string, fi fs.FileInfo, src string, f poolFile) error {
	if oi, err := os.Stat(src); err == nil && os.SameFile(fi, oi) {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("pool file %s is not a regular file: move it away", f.Path)
	}
	got, err := fileSHA256(dst)
	if err != nil {
		return fmt.Errorf("pool file %s: %w", f.Path, err)
	}
	if got != f.SHA256 {
		return fmt.Errorf("pool file %s has sha256 %s, the repository names %s: the published pool does not match the store; move the file away and publish again", f.Path, got, f.SHA256)
	}
	return nil
}

// fileSHA256 returns the hex sha256 of the file at p.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type manifestFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	SHA512 string `json:"sha512"`
}

// rowSource names the package rows of a repository or snapshot: the rows
// of table where col = val.
type rowSource struct{ table, col, val string }

// collectPool removes pool files that no package references, one publish
// after they were first found unreferenced.
func (s *Store) collectPool(dir string, fam family, rows []*row) error {
	ref := map[string]bool{}
	for _, r := range rows {
		for _, f := range r.files {
			ref[f.Path] = true
		}
	}
	top := fam.poolTop()
	listFile := filepath.Join(dir, unreferencedList)
	before := map[string]bool{}
	if data, err := os.ReadFile(listFile); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if l != "" {
				before[l] = true
			}
		}
	}
	var now []string
	err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ref[rel] {
			return nil
		}
		if before[rel] {
			s.log.Info("removing unreferenced pool file", "path", rel)
			return os.Remove(p)
		}
		now = append(now, rel)
		return nil
	})
	if err != nil {
		return err
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, n := range now {
		fmt.Fprintln(w, n)
	}
	w.Flush()
	return writeAtomic(listFile, b.Bytes())
}

func writeSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := writeSync(tmp, data); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func syncDir(d string) error {
	f, err := os.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Request returns the stored result of an earlier request with this id.
func (s *Store) Request(ctx context.Context, id string) ([]byte, bool, error) {
	var res string
	err := s.db.QueryRowContext(ctx, `SELECT result FROM requests WHERE id=?`, id).Scan(&res)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read request %s: %w", id, err)
	}
	return []byte(res), true, nil
}

// SaveRequest stores the result of a request for later Request calls.
func (s *Store) SaveRequest(ctx context.Context, id string, result []byte) error {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO requests (id, result) VALUES (?, ?)`, id, string(result)); err != nil {
		return fmt.Errorf("save request %s: %w", id, err)
	}
	return nil
}

// IncludeAndPublish includes inputs and publishes, under one lock.
func (s *Store) IncludeAndPublish(ctx context.Context, repoName string, inputs []Input, resolve Resolver, signer Signer) (IncludeResult, PublishResult, error) {
	inc, err := s.Include(ctx, repoName, inputs, resolve, signer)
	if err != nil {
		return inc, PublishResult{}, err
	}
	pub, err := s.Publish(ctx, repoName, signer)
	return inc, pub, err
}

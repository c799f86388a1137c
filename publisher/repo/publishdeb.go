package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/publisher/deb"
	"golang.org/x/sync/errgroup"
)

// publishDeb writes a deb repository's indexes (Packages, Sources,
// Contents and their compressions) for rows under dir and signs its
// Release; it returns the generation it wrote.
func (s *Store) publishDeb(ctx context.Context, dir string, cfg Config, src rowSource, rows []*row, signer Signer) (string, error) {
	live := filepath.Join(dir, distsLink)
	if fi, err := os.Lstat(live); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("%s exists and is not the publisher's symlink: move it away", live)
	}
	var files map[string][]string
	if cfg.Contents {
		var err error
		if files, err = s.debFiles(ctx, rows); err != nil {
			return "", err
		}
	}
	prevGen := ""
	if target, err := os.Readlink(live); err == nil {
		prevGen = filepath.Base(target)
	}
	now := s.releaseDate(ctx, prevGen)
	suite := deb.Suite{Origin: cfg.Origin, Label: cfg.Label, Suite: cfg.Suite, Codename: cfg.Codename, Description: cfg.Description,
		Components: []string{cfg.Component}, Architectures: cfg.Architectures, Date: now, ValidFor: cfg.ValidFor, Compressions: cfg.Compressions,
		Contents: cfg.Contents}
	var xzBlocks *xzBlockCache
	if cfg.XZBlockSize > 0 && slices.Contains(cfg.Compressions, "xz") {
		xzBlocks = s.xzBlockCache()
		suite.XZBlockSize, suite.XZBlocks = cfg.XZBlockSize, xzBlocks
	}
	layout := deb.NewLayout(suite)
	for _, r := range rows {
		layout.Note(r.component, r.indexArch(), r.udeb)
	}

	gens := filepath.Join(dir, distsGens)
	if err := os.MkdirAll(gens, 0o755); err != nil {
		return "", err
	}
	gen := strconv.FormatInt(now.UnixNano(), 10)
	if gen <= prevGen {
		gen = prevGen + "1"
	}
	genDir := filepath.Join(gens, gen)
	_ = os.RemoveAll(genDir)
	suiteDir := filepath.Join(genDir, cfg.Suite)
	made := map[string]bool{}
	mkdir := func(p string) error {
		if d := filepath.Dir(p); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			made[d] = true
		}
		return nil
	}
	write := func(rel string, data []byte) error {
		p := filepath.Join(suiteDir, filepath.FromSlash(rel))
		if err := mkdir(p); err != nil {
			return err
		}
		return writeSync(p, data)
	}
	link := func(oldRel, newRel string) error {
		p := filepath.Join(suiteDir, filepath.FromSlash(newRel))
		if err := mkdir(p); err != nil {
			return err
		}
		err := os.Link(oldRel, p)
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}

	// The indexes stream from the store's rows into their files: no
	// stanza and no index text is held (see deb.IndexWriter).
	iw, err := deb.NewIndexWriter(suite, layout, func(rel string) (io.WriteCloser, error) {
		p := filepath.Join(suiteDir, filepath.FromSlash(rel))
		if err := mkdir(p); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		return syncCloser{f}, nil
	})
	if err != nil {
		return "", err
	}
	if err := s.streamStanzas(ctx, src, func(e deb.IndexEntry, sum string) error {
		e.Files = files[sum]
		return iw.Add(e)
	}); err != nil {
		iw.Abort()
		return "", err
	}
	files = nil
	release, indexes, err := iw.Close()
	if err != nil {
		return "", err
	}
	inRelease, err := signer.ClearSign(ctx, release)
	if err != nil {
		return "", err
	}
	releaseGPG, err := signer.DetachSign(ctx, bytes.NewReader(release), true)
	if err != nil {
		return "", err
	}

	var manifest []manifestFile
	for _, f := range indexes {
		if path.Base(f.Path) == "Release" {
			continue
		}
		d := path.Dir(f.Path)
		src := filepath.Join(suiteDir, filepath.FromSlash(f.Path))
		if err := link(src, d+"/by-hash/SHA256/"+f.SHA256); err != nil {
			return "", err
		}
		if err := link(src, d+"/by-hash/SHA512/"+f.SHA512); err != nil {
			return "", err
		}
		manifest = append(manifest, manifestFile{Path: f.Path, SHA256: f.SHA256, SHA512: f.SHA512})
	}
	// Keep the previous generation's indexes reachable by hash, so a client
	// that fetched the old Release just before the switch still finds them.
	if prevGen != "" {
		prevSuite := filepath.Join(gens, prevGen, cfg.Suite)
		if data, err := os.ReadFile(filepath.Join(gens, prevGen, "manifest.json")); err == nil {
			var prev []manifestFile
			if json.Unmarshal(data, &prev) == nil {
				for _, f := range prev {
					src := filepath.Join(prevSuite, filepath.FromSlash(f.Path))
					d := path.Dir(f.Path)
					if _, err := os.Stat(src); err != nil {
						continue
					}
					if err := link(src, d+"/by-hash/SHA256/"+f.SHA256); err != nil {
						return "", err
					}
					if err := link(src, d+"/by-hash/SHA512/"+f.SHA512); err != nil {
						return "", err
					}
				}
			}
		}
	}
	if err := write("Release", release); err != nil {
		return "", err
	}
	if err := write("Release.gpg", releaseGPG); err != nil {
		return "", err
	}
	if err := write("InRelease", inRelease); err != nil {
		return "", err
	}
	mdata, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	if err := writeSync(filepath.Join(genDir, "manifest.json"), mdata); err != nil {
		return "", err
	}
	for d := range made {
		if err := syncDir(d); err != nil {
			return "", err
		}
	}
	if err := syncDir(genDir); err != nil {
		return "", err
	}
	if err := syncDir(gens); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// The switch: one rename of a symlink.
	tmpLink := filepath.Join(dir, newLinkPfx+gen)
	_ = os.Remove(tmpLink)
	if err := os.Symlink(distsGens+"/"+gen, tmpLink); err != nil {
		return "", err
	}
	if err := os.Rename(tmpLink, live); err != nil {
		return "", fmt.Errorf("switch %s: %w", live, err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	s.log.Info("published", "dir", dir, "generation", gen, "packages", len(rows))
	// The publish is live; the blocks are a cache of it.
	if xzBlocks != nil {
		err = xzBlocks.commit(s.root, dir)
	} else {
		err = s.xzBlockCache().drop(s.root, dir)
	}
	if err != nil {
		s.log.Warn("xz block cache not cleaned", "dir", dir, "error", err)
	}
	// Keep the live and the previous generation; remove older ones and
	// what interrupted publishes left.
	old, err := os.ReadDir(gens)
	if err != nil {
		return gen, err
	}
	for _, e := range old {
		if e.Name() != gen && e.Name() != prevGen {
			if err := os.RemoveAll(filepath.Join(gens, e.Name())); err != nil {
				return gen, err
			}
		}
	}
	stale, _ := filepath.Glob(filepath.Join(dir, newLinkPfx+"*"))
	for _, st := range stale {
		_ = os.Remove(st)
	}
	return gen, nil
}

// syncCloser makes a file durable when it is closed.
type syncCloser struct{ *os.File }

func (f syncCloser) Close() error {
	if err := f.Sync(); err != nil {
		f.File.Close()
		return err
	}
	return f.File.Close()
}

// indexArch is the architecture under which r's stanza is indexed:
// "source" for a source package.
func (r *row) indexArch() string {
	if r.kind == "dsc" {
		return "source"
	}
	return r.arch
}

// streamStanzas calls fn with the index entry of each row of src and the
// sha256 of its file, reading one row at a time. The order is the primary
// key's (kind, name, version, arch), so that SQLite reads the rows in
// order instead of sorting every stanza first; each index holds one kind,
// so within an index it is the order of rows (name, version, arch, kind).
func (s *Store) streamStanzas(ctx context.Context, src rowSource, fn func(deb.IndexEntry, string) error) error {
	q := fmt.Sprintf(`SELECT kind, component, arch, udeb, sha256, stanza FROM %s WHERE %s = ? ORDER BY kind, name, version, arch`, src.table, src.col)
	rs, err := s.db.QueryContext(ctx, q, src.val)
	if err != nil {
		return fmt.Errorf("read the stanzas of %s: %w", src.val, err)
	}
	defer rs.Close()
	var r row
	for rs.Next() {
		if err := rs.Scan(&r.kind, &r.component, &r.arch, &r.udeb, &r.sha256, &r.stanza); err != nil {
			return fmt.Errorf("read the stanzas of %s: %w", src.val, err)
		}
		if err := fn(deb.IndexEntry{Component: r.component, Arch: r.indexArch(), UDeb: r.udeb, Stanza: r.stanza}, r.sha256); err != nil {
			return err
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("read the stanzas of %s: %w", src.val, err)
	}
	return nil
}

// dataFilesReaders are the buffered readers debFiles reads packages with:
// one new 64 KiB buffer for each of 50,000 packages was 3 GB of garbage,
// and the heap it made the collector allow was most of a publish's memory.
var dataFilesReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// debFiles returns the paths each binary package (not udeb) of rows
// installs, by the package file's sha256, for the Contents indexes. A
// package's list is read from its stored file the first time and kept in
// the deb_files table: the file never changes under its sha256.
func (s *Store) debFiles(ctx context.Context, rows []*row) (map[string][]string, error) {
	out := map[string][]string{}
	need := map[string]bool{}
	for _, r := range rows {
		if r.kind == "deb" && !r.udeb {
			need[r.sha256] = true
		}
	}
	if len(need) == 0 {
		return out, nil
	}
	rs, err := s.db.QueryContext(ctx, `SELECT sha256, files FROM deb_files`)
	if err != nil {
		return nil, fmt.Errorf("read package file lists: %w", err)
	}
	for rs.Next() {
		var sum string
		var list []byte
		if err := rs.Scan(&sum, &list); err != nil {
			rs.Close()
			return nil, fmt.Errorf("read package file lists: %w", err)
		}
		if need[sum] {
			out[sum] = splitLines(list)
			delete(need, sum)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read package file lists: %w", err)
	}
	if len(need) == 0 {
		return out, nil
	}
	// Read the missing lists on every CPU: each is a decompression of the
	// package's data.tar.
	sums := make([]string, 0, len(need))
	for sum := range need {
		sums = append(sums, sum)
	}
	lists := make([][]string, len(sums))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	for i, sum := range sums {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			f, err := os.Open(s.objectPath(sum))
			if err != nil {
				return fmt.Errorf("list the files of stored package %s: %w", sum, err)
			}
			defer f.Close()
			br := dataFilesReaders.Get().(*bufio.Reader)
			br.Reset(f)
			defer dataFilesReaders.Put(br)
			l, err := deb.DataFiles(br)
			if err != nil {
				return fmt.Errorf("list the files of stored package %s: %w", sum, err)
			}
			lists[i] = l
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("keep package file lists: %w", err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO deb_files (sha256, files) VALUES (?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("keep package file lists: %w", err)
	}
	defer ins.Close()
	for i, sum := range sums {
		if _, err := ins.ExecContext(ctx, sum, []byte(strings.Join(lists[i], "\n"))); err != nil {
			return nil, fmt.Errorf("keep package file lists: %w", err)
		}
		out[sum] = lists[i]
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("keep package file lists: %w", err)
	}
	return out, nil
}

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// releaseDate is the Date of a new Release: in a later second than the
// previous publish's (prevGen, its time in nanoseconds), waiting for that
// second if need be. apt reads Date in seconds and takes a Release with
// the Date it already has for the one it has ("Hit"), so a client that
// updated between two publishes within one second would otherwise never
// see the second. A Date ahead of the clock is no answer: apt refuses a
// Release that is not valid yet.
func (s *Store) releaseDate(ctx context.Context, prevGen string) time.Time {
	now := s.now()
	prev, err := strconv.ParseInt(prevGen, 10, 64)
	if err != nil {
		return now
	}
	next := time.Unix(0, prev).Truncate(time.Second).Add(time.Second)
	wait := next.Sub(now)
	if wait <= 0 || wait > time.Second {
		// Later already, or a clock that went back: nothing to wait for.
		return now
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	if later := s.now(); later.After(now) {
		return later
	}
	return now // a fixed clock (tests)
}

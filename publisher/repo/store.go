package repo

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/kiln-build/kiln/publisher/deb"
)

// Signer signs with the repository key (publisher/sign.Key).
type Signer interface {
	DetachSign(ctx context.Context, r io.Reader, armored bool) ([]byte, error)
	ClearSign(ctx context.Context, data []byte) ([]byte, error)
}

// Options configure a Store.
type Options struct {
	// Root is the publisher's directory.
	Root string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Limits bound what a .deb may make the reader do.
	Limits deb.Limits
	// ProgressEvery is how often long work (reading the files of a large
	// include) logs its progress; 0 means every 2 seconds.
	ProgressEvery time.Duration
}

// Store is a publisher's set of repositories.
type Store struct {
	root   string
	db     *sql.DB
	log    hclog.Logger
	now    func() time.Time
	limits deb.Limits
	every  time.Duration // progress log interval
	mu     sync.Mutex    // serialises mutations within the process; flock across processes
	// noUnnamed is set once the store's file system refused O_TMPFILE.
	noUnnamed atomic.Bool
	// noClone is set once the store's file system refused a reflink
	// clone as unsupported (see cloneOrTee).
	noClone atomic.Bool
}

const schema = `
CREATE TABLE IF NOT EXISTS repos (
	name TEXT PRIMARY KEY,
	format TEXT NOT NULL,
	config TEXT NOT NULL,
	gc_pending INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS packages (
	repo TEXT NOT NULL,
	kind TEXT NOT NULL,
	name TEXT NOT NULL,
	version TEXT NOT NULL,
	arch TEXT NOT NULL,
	component TEXT NOT NULL,
	udeb INTEGER NOT NULL DEFAULT 0,
	upload_sha256 TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	size INTEGER NOT NULL,
	path TEXT NOT NULL,
	stanza BLOB,
	meta TEXT,
	files TEXT NOT NULL,
	added INTEGER NOT NULL,
	PRIMARY KEY (repo, kind, name, version, arch)
);
CREATE TABLE IF NOT EXISTS pool_files (
	repo TEXT NOT NULL,
	path TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	PRIMARY KEY (repo, path)
);
CREATE TABLE IF NOT EXISTS snapshots (
	name TEXT PRIMARY KEY,
	repo TEXT NOT NULL,
	config TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_packages (
	snapshot TEXT NOT NULL,
	kind TEXT NOT NULL,
	name TEXT NOT NULL,
	version TEXT NOT NULL,
	arch TEXT NOT NULL,
	component TEXT NOT NULL,
	udeb INTEGER NOT NULL,
	upload_sha256 TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	size INTEGER NOT NULL,
	path TEXT NOT NULL,
	stanza BLOB,
	meta TEXT,
	files TEXT NOT NULL,
	added INTEGER NOT NULL,
	PRIMARY KEY (snapshot, kind, name, version, arch)
);
CREATE TABLE IF NOT EXISTS deb_files (
	sha256 TEXT PRIMARY KEY,
	files BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
	sha256 TEXT PRIMARY KEY,
	received INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
	id TEXT PRIMARY KEY,
	result TEXT NOT NULL
);
`

// Open opens (creating when needed) the store at o.Root.
func Open(ctx context.Context, o Options, log hclog.Logger) (*Store, error) {
	if o.Root == "" {
		return nil, errors.New("no publisher root directory: set --root DIR or root: in the config file")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Limits == (deb.Limits{}) {
		o.Limits = deb.DefaultLimits()
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	dirs := []string{o.Root, filepath.Join(o.Root, "objects"), filepath.Join(o.Root, "public")}
	for i := range tmpDirs {
		dirs = append(dirs, tmpDir(o.Root, i))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create publisher root: %w", err)
		}
	}
	dsn := "file:" + filepath.Join(o.Root, "state.db") + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: create schema: %w", o.Root, err)
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 2 * time.Second
	}
	return &Store{root: o.Root, db: db, log: log, now: o.Now, limits: o.Limits, every: o.ProgressEvery}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Root returns the root directory.
func (s *Store) Root() string { return s.root }

// PublicDir returns where a repository is published.
func (s *Store) PublicDir(repo string) string { return filepath.Join(s.root, "public", repo) }

// SnapshotDir returns where a snapshot is published.
func (s *Store) SnapshotDir(name string) string {
	return filepath.Join(s.root, "public", "snapshots", name)
}

// lock takes the store's process lock and file lock; the returned function
// releases both.
func (s *Store) lock(ctx context.Context) (func(), error) {
	s.mu.Lock()
	release, err := s.flock(ctx, ".lock", syscall.LOCK_EX)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	return func() {
		release()
		s.mu.Unlock()
	}, nil
}

// flock takes a flock (syscall.LOCK_SH or LOCK_EX) on the file name in the
// root, waiting until ctx ends; the function it returns releases it. Each
// call opens the file anew, so that goroutines of one process exclude each
// other too.
func (s *Store) flock(ctx context.Context, name string, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock publisher root: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock publisher root: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another publisher on %s: %w", s.root, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return func() { f.Close() }, nil // closing releases the flock
}

// CreateRepo creates a repository, or updates its configuration when it
// exists with the same format. The configuration of the repository's base,
// when it has one, follows.
func (s *Store) CreateRepo(ctx context.Context, c Config) error {
	c = c.WithDefaults()
	c.BaseOf = ""
	if err := c.Validate(); err != nil {
		return err
	}
	old, err := s.Repo(ctx, c.Name)
	if err == nil && old.BaseOf != "" {
		return fmt.Errorf("%w: repository %s is the base of repository %s, kept by the publisher: choose another name", ErrBase, c.Name, old.BaseOf)
	}
	if err == nil && old.Format != c.Format {
		return fmt.Errorf("repository %s is a %s repository; it cannot become %s", c.Name, old.Format, c.Format)
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := s.putRepo(ctx, c); err != nil {
		return err
	}
	if b, err := s.Repo(ctx, BaseName(c.Name)); err == nil && b.BaseOf == c.Name {
		if err := s.putRepo(ctx, baseConfig(c).WithDefaults()); err != nil {
			return err
		}
	}
	return nil
}

// putRepo writes a repository's configuration.
func (s *Store) putRepo(ctx context.Context, c Config) error {
	cfg, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("create repository %s: %w", c.Name, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO repos (name, format, config) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET config = excluded.config`, c.Name, c.Format, string(cfg))
	if err != nil {
		return fmt.Errorf("create repository %s: %w", c.Name, err)
	}
	return nil
}

// ErrNotFound is returned for an unknown repository or snapshot.
var ErrNotFound = errors.New("not found")

// Repo returns a repository's configuration.
func (s *Store) Repo(ctx context.Context, name string) (Config, error) {
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT config FROM repos WHERE name = ?`, name).Scan(&cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return Config{}, fmt.Errorf("repository %q: %w: create it with include --format deb|rpm, or list it in the config file", name, ErrNotFound)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read repository %s: %w", name, err)
	}
	var c Config
	if err := json.Unmarshal([]byte(cfg), &c); err != nil {
		return Config{}, fmt.Errorf("read repository %s: %w", name, err)
	}
	return c, nil
}

// Repos lists the repositories.
func (s *Store) Repos(ctx context.Context) ([]Config, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT config FROM repos ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	defer rows.Close()
	var out []Config
	for rows.Next() {
		var cfg string
		if err := rows.Scan(&cfg); err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		var c Config
		if err := json.Unmarshal([]byte(cfg), &c); err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// objectPath returns where the object with the given sha256 lives.
func (s *Store) objectPath(sum string) string {
	return filepath.Join(s.root, "objects", sum[:2], sum)
}

// ObjectPath returns the path of the stored file with this sha256 (it may
// not exist; see HasObject).
func (s *Store) ObjectPath(sum string) string { return s.objectPath(sum) }

// ErrDigestMismatch is wrapped when an upload is not what its sender said.
var ErrDigestMismatch = errors.New("upload does not match its declared sha256 and size")

// AddObject stores what r yields when it is exactly size bytes with the
// given sha256; anything else is refused and nothing is kept. existed is
// true when the object was already stored (r is then not read).
func (s *Store) AddObject(ctx context.Context, sum string, size int64, r io.Reader) (existed bool, err error) {
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return false, fmt.Errorf("%w: %q is not a lower-case hex sha256", ErrDigestMismatch, sum)
	}
	// Each upload, also of a file already stored, gets a grace period
	// before CollectObjects may remove it, for the publish request that
	// follows. The gc lock keeps a collection from removing a stored file
	// between the record and the answer that it is there.
	release, err := s.flock(ctx, gcLock, syscall.LOCK_SH)
	if err != nil {
		return false, err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO uploads (sha256, received) VALUES (?, ?)`, sum, s.now().Unix()); err != nil {
		release()
		return false, fmt.Errorf("receive upload: %w", err)
	}
	existed = s.HasObject(sum)
	release()
	if existed {
		return true, nil
	}
	tmp, err := s.tempFile("upload-*")
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	if err == nil {
		err = tmp.Sync() // an upload is answered as stored only once on disk
	}
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("receive upload: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != size || got != sum {
		return false, fmt.Errorf("%w: declared sha256 %s and %d bytes, received sha256 %s and %d bytes", ErrDigestMismatch, sum, size, got, n)
	}
	return false, s.putObject(tmp.Name(), sum)
}

// HasObject reports whether a file with this sha256 is stored.
func (s *Store) HasObject(sum string) bool {
	if len(sum) != 64 {
		return false
	}
	_, err := os.Stat(s.objectPath(sum))
	return err == nil
}

// putObject moves the fully written and verified temporary file tmp into
// the object store under sum; when the store has that object already, tmp
// is removed.
func (s *Store) putObject(tmp, sum string) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("store object: %w", err)
	}
	// One rename that refuses to replace, rather than a look first: most
	// objects are new, and their directory exists.
	dst := s.objectPath(sum)
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.ENOENT) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("store object: %w", err)
		}
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return os.Remove(tmp)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		// A file system without RENAME_NOREPLACE.
		if _, err := os.Stat(dst); err == nil {
			return os.Remove(tmp)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("store object: %w", err)
		}
		return nil
	}
	return fmt.Errorf("store object: %w", &os.LinkError{Op: "rename", Old: tmp, New: dst, Err: err})
}

// staleTmpAge is how old a temporary file must be before a later include
// removes it as the leftover of a killed process (uploads in progress are
// far younger).
const staleTmpAge = 24 * time.Hour

// removeStaleTmp removes temporary files that killed processes left.
func (s *Store) removeStaleTmp() {
	dirs := []string{filepath.Join(s.root, "tmp")}
	for i := range tmpDirs {
		dirs = append(dirs, tmpDir(s.root, i))
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && !e.IsDir() && s.now().Sub(fi.ModTime()) > staleTmpAge {
				if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
					s.log.Info("removed stale temporary file", "name", e.Name())
				}
			}
		}
	}
}

// tmpDirs is how many directories temporary files are spread over: files
// created in parallel in one directory wait for its lock, and on a busy
// file system the kernel holds it long (three alternating includes of
// 2,000 packages on one file system state took 0.68-0.83 s spread and
// 0.87-2.19 s in one directory; between runs the file system's state
// changes the time more than that).
const tmpDirs = 16

func tmpDir(root string, i int) string {
	return filepath.Join(root, "tmp", fmt.Sprintf("%x", i))
}

// syncFS flushes the file system that holds the store (file data and
// directory entries) to disk.
func (s *Store) syncFS() error {
	d, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("sync stored files: %w", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync stored files: %w", err)
	}
	return nil
}

// unnamedFile creates a file without a name (O_TMPFILE) in one of the
// store's tmp directories, for linkObject to name in the object store:
// one directory entry made instead of a temporary name made, renamed and
// removed, and a killed include leaves nothing of it behind. ok is false
// where the file system cannot make one (use tempFile then).
func (s *Store) unnamedFile() (f *os.File, ok bool, err error) {
	if s.noUnnamed.Load() {
		return nil, false, nil
	}
	dir := tmpDir(s.root, rand.IntN(tmpDirs))
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			s.noUnnamed.Store(true)
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), true, nil
}

// linkObject gives the unnamed file f (from unnamedFile), fully written
// and verified, its name in the object store under sum, and closes it;
// when the store has that object already, f is dropped.
func (s *Store) linkObject(f *os.File, sum string) error {
	defer f.Close()
	if err := f.Chmod(0o644); err != nil { // whatever the umask
		return fmt.Errorf("store object: %w", err)
	}
	dst := s.objectPath(sum)
	// Linking an open file by its descriptor's /proc entry needs no
	// privilege (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
	fdPath := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	link := func() error {
		return unix.Linkat(unix.AT_FDCWD, fdPath, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW)
	}
	err := link()
	if errors.Is(err, unix.ENOENT) {
		if _, serr := os.Stat(filepath.Dir(dst)); serr != nil {
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("store object: %w", err)
			}
			err = link()
		}
	}
	if err == nil || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return fmt.Errorf("store object: %w", &os.LinkError{Op: "link", Old: fdPath, New: dst, Err: err})
}

// tempName returns a new path in one of the store's tmp directories for a
// file that another function creates (and renames into place).
func (s *Store) tempName(prefix string) (string, error) {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return "", fmt.Errorf("temporary file name: %w", err)
	}
	return filepath.Join(tmpDir(s.root, rand.IntN(tmpDirs)), prefix+hex.EncodeToString(b[:])), nil
}

// tempFile creates a file in one of the store's tmp directories (same file
// system as the objects, so a rename moves it in).
func (s *Store) tempFile(pattern string) (*os.File, error) {
	f, err := os.CreateTemp(tmpDir(s.root, rand.IntN(tmpDirs)), pattern)
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	return f, nil
}

// progress logs "what: done of total" every s.every until stop is called,
// so that a long include shows it is moving; short work logs nothing.
func (s *Store) progress(what string, done *atomic.Int64, total int) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				s.log.Info("progress", "what", what, "done", done.Load(), "of", total)
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// Package pkgcache is the worker's package cache: the package files
// (.deb, .udeb, .rpm) that buildroots download, kept by their sha256 under
// one directory, found again by the URL they came from, bounded in size
// with the least recently used files going first, and checked against
// their sha256 every time they are read.
//
// On disk, under Dir:
//
//	files/<sha256>          the content, named by its sha256 (hex)
//	urls/<sha256 of URL>    {"url", "sha256", "size", "name"} as JSON
//	tmp/                    files being written; renamed into files/ when complete
//
// A file's modification time is when it was last used, so the order of
// eviction survives a restart. Nothing is fsynced: a file cut short by a
// crash fails its hash check when it is next read, and is dropped then.
// Several processes may share a directory (a running worker and `worker
// chroot create`): every write is a rename of a complete file, and a
// process finds what another added when it looks it up; the size bound is
// kept by each process for the files it knows of.
package pkgcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Errors of Lookup and Open; callers branch on them.
var (
	// ErrNotFound: the cache does not hold the file.
	ErrNotFound = errors.New("not in the package cache")
	// ErrCorrupt: the cache held the file but its bytes on disk no longer
	// match their sha256; the entry has been dropped.
	ErrCorrupt = errors.New("package cache entry corrupt on disk")
)

// Config says where the cache is and how big it may grow.
type Config struct {
	// Dir holds the cache; it is made if missing.
	Dir string
	// MaxSize bounds the bytes of the files kept; when a new file takes
	// the cache past it, the least recently used files are removed.
	MaxSize int64
}

// Entry describes one cached file.
type Entry struct {
	// URL the file was fetched from; empty for files added without one.
	URL string `json:"url,omitempty"`
	// Name is the file's name as its source gave it, e.g.
	// zlib1g_1:1.2.13.dfsg-1_amd64.deb; it is never used as a path.
	Name string `json:"name,omitempty"`
	// SHA256 of the content, lower-case hex.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Cache is a package cache in a directory. It is safe for concurrent use.
type Cache struct {
	dir     string
	max     int64
	logger  hclog.Logger
	metrics *Metrics

	mu    sync.Mutex
	blobs map[string]*blob // by sha256
	urls  map[string]Entry // by URL
	size  int64
	clock uint64
}

type blob struct {
	size int64
	// used orders the files by their last use: a logical clock, seeded
	// from the files' modification times when the cache is opened.
	used uint64
	urls []string
}

// Open opens (or makes) the cache in cfg.Dir and reads what it holds.
// metrics may be nil.
func Open(cfg Config, logger hclog.Logger, metrics *Metrics) (*Cache, error) {
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("package cache dir %q: give an absolute path", cfg.Dir)
	}
	if cfg.MaxSize <= 0 {
		return nil, fmt.Errorf("package cache max size %d: give a positive size", cfg.MaxSize)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	c := &Cache{
		dir: cfg.Dir, max: cfg.MaxSize, logger: logger, metrics: metrics,
		blobs: map[string]*blob{}, urls: map[string]Entry{},
	}
	for _, d := range []string{c.filesDir(), c.urlsDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("package cache: %w", err)
		}
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

func (c *Cache) filesDir() string { return filepath.Join(c.dir, "files") }
func (c *Cache) urlsDir() string  { return filepath.Join(c.dir, "urls") }
func (c *Cache) tmpDir() string   { return filepath.Join(c.dir, "tmp") }

func (c *Cache) filePath(sum string) string { return filepath.Join(c.filesDir(), sum) }

func (c *Cache) urlPath(url string) string {
	h := sha256.Sum256([]byte(url))
	return filepath.Join(c.urlsDir(), hex.EncodeToString(h[:]))
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Size is the bytes of the files the cache knows of.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// staleTemp is the age after which a file left in tmp/ is a crashed
// writer's, not another process's at work.
const staleTemp = time.Hour

// load reads the files and URL entries on disk into memory.
func (c *Cache) load() error {
	files, err := os.ReadDir(c.filesDir())
	if err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	type found struct {
		sum  string
		size int64
		mod  time.Time
	}
	var all []found
	for _, f := range files {
		if !isSHA256(f.Name()) {
			continue
		}
		info, err := f.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		all = append(all, found{f.Name(), info.Size(), info.ModTime()})
	}
	slices.SortFunc(all, func(a, b found) int { return a.mod.Compare(b.mod) })
	for _, f := range all {
		c.clock++
		c.blobs[f.sum] = &blob{size: f.size, used: c.clock}
		c.size += f.size
	}
	entries, err := os.ReadDir(c.urlsDir())
	if err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	for _, f := range entries {
		path := filepath.Join(c.urlsDir(), f.Name())
		e, err := readEntry(path)
		if err != nil {
			c.logger.Warn("unreadable package cache entry removed", "file", path, "error", err)
			_ = os.Remove(path)
			continue
		}
		b, ok := c.blobs[e.SHA256]
		if !ok || b.size != e.Size || c.urlPath(e.URL) != path {
			_ = os.Remove(path)
			continue
		}
		c.urls[e.URL] = e
		b.urls = append(b.urls, e.URL)
	}
	temps, _ := os.ReadDir(c.tmpDir())
	for _, f := range temps {
		if info, err := f.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(c.tmpDir(), f.Name()))
		}
	}
	c.metrics.bytes.Set(float64(c.size))
	return nil
}

func readEntry(path string) (Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, err
	}
	if e.URL == "" || !isSHA256(e.SHA256) || e.Size < 0 {
		return Entry{}, fmt.Errorf("entry %+v is incomplete", e)
	}
	return e, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// File is a cached file open for reading, its content checked against its
// sha256 and positioned at the start.
type File struct {
	*os.File
	Entry Entry
}

// Lookup returns the file fetched from url, checked against its sha256.
// It is a hit or a miss in the cache's metrics. When the cache does not
// hold it, the error wraps ErrNotFound; when its bytes on disk were
// corrupt, the entry is dropped and the error wraps ErrCorrupt (fetch it
// again).
func (c *Cache) Lookup(url string) (*File, error) {
	f, err := c.lookup(url)
	if err != nil {
		c.metrics.misses.Inc()
		return nil, err
	}
	c.metrics.hits.Inc()
	return f, nil
}

func (c *Cache) lookup(url string) (*File, error) {
	c.mu.Lock()
	e, ok := c.urls[url]
	c.mu.Unlock()
	if !ok {
		// Another process may have added it.
		var err error
		if e, err = c.adopt(url); err != nil {
			return nil, err
		}
	}
	f, err := c.openVerified(e)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// adopt reads url's entry from disk, written by another process, into
// memory.
func (c *Cache) adopt(url string) (Entry, error) {
	path := c.urlPath(url)
	e, err := readEntry(path)
	if err != nil || e.URL != url {
		return Entry{}, fmt.Errorf("%s: %w", url, ErrNotFound)
	}
	info, err := os.Stat(c.filePath(e.SHA256))
	if err != nil || info.Size() != e.Size {
		return Entry{}, fmt.Errorf("%s: %w", url, ErrNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(e)
	return e, nil
}

// Open returns the cached file with the given sha256 (hex), checked
// against it. The error wraps ErrNotFound or ErrCorrupt as for Lookup.
func (c *Cache) Open(sum string) (*File, error) {
	if !isSHA256(sum) {
		return nil, fmt.Errorf("package cache: %q is not a sha256 in hex", sum)
	}
	c.mu.Lock()
	b, ok := c.blobs[sum]
	var e Entry
	if ok {
		e = Entry{SHA256: sum, Size: b.size}
		if len(b.urls) > 0 {
			e = c.urls[b.urls[0]]
		}
	}
	c.mu.Unlock()
	if !ok {
		info, err := os.Stat(c.filePath(sum))
		if err != nil {
			return nil, fmt.Errorf("sha256 %s: %w", sum, ErrNotFound)
		}
		e = Entry{SHA256: sum, Size: info.Size()}
		c.mu.Lock()
		c.addLocked(e)
		c.mu.Unlock()
	}
	return c.openVerified(e)
}

// openVerified opens e's file, hashes it whole, and returns it at its
// start when it matches; a mismatch drops the file.
func (c *Cache) openVerified(e Entry) (*File, error) {
	path := c.filePath(e.SHA256)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// Evicted meanwhile, by this process or another.
		c.forget(e.SHA256, false)
		return nil, fmt.Errorf("%s: %w", e.SHA256, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("package cache: read %s: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != e.SHA256 || n != e.Size {
		f.Close()
		c.metrics.corrupt.Inc()
		c.logger.Warn("corrupt package cache entry dropped", "name", e.Name, "url", e.URL,
			"want_sha256", e.SHA256, "sha256", got, "want_size", e.Size, "size", n)
		c.forget(e.SHA256, true)
		return nil, fmt.Errorf("%s: %w: sha256 %s, %d bytes; want %s, %d bytes", e.SHA256, ErrCorrupt, got, n, e.SHA256, e.Size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("package cache: %w", err)
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	c.mu.Lock()
	if b, ok := c.blobs[e.SHA256]; ok {
		c.clock++
		b.used = c.clock
	}
	c.mu.Unlock()
	return &File{File: f, Entry: e}, nil
}

// forget drops a file from memory, and from disk (with its URL entries)
// when remove is set.
func (c *Cache) forget(sum string, remove bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(sum, remove)
}

func (c *Cache) dropLocked(sum string, remove bool) {
	b, ok := c.blobs[sum]
	if ok {
		for _, u := range b.urls {
			delete(c.urls, u)
			if remove {
				_ = os.Remove(c.urlPath(u))
			}
		}
		delete(c.blobs, sum)
		c.size -= b.size
		c.metrics.bytes.Set(float64(c.size))
	}
	if remove {
		_ = os.Remove(c.filePath(sum))
	}
}

// addLocked records e in memory: its file, and its URL if it has one.
func (c *Cache) addLocked(e Entry) {
	b, ok := c.blobs[e.SHA256]
	if !ok {
		b = &blob{size: e.Size}
		c.blobs[e.SHA256] = b
		c.size += e.Size
		c.metrics.bytes.Set(float64(c.size))
	}
	c.clock++
	b.used = c.clock
	if e.URL == "" {
		return
	}
	if old, ok := c.urls[e.URL]; ok && old.SHA256 != e.SHA256 {
		if ob, ok := c.blobs[old.SHA256]; ok {
			ob.urls = slices.DeleteFunc(ob.urls, func(u string) bool { return u == e.URL })
		}
	}
	c.urls[e.URL] = e
	if !slices.Contains(b.urls, e.URL) {
		b.urls = append(b.urls, e.URL)
	}
}

// evictLocked removes the least recently used files until the cache is
// within its bound.
func (c *Cache) evictLocked() {
	if c.size <= c.max {
		return
	}
	type cand struct {
		sum  string
		used uint64
	}
	all := make([]cand, 0, len(c.blobs))
	for s, b := range c.blobs {
		all = append(all, cand{s, b.used})
	}
	slices.SortFunc(all, func(a, b cand) int {
		switch {
		case a.used < b.used:
			return -1
		case a.used > b.used:
			return 1
		}
		return 0
	})
	for _, x := range all {
		if c.size <= c.max {
			break
		}
		size := c.blobs[x.sum].size
		c.dropLocked(x.sum, true)
		c.metrics.evictions.Inc()
		c.logger.Debug("package cache file evicted", "sha256", x.sum, "size", size)
	}
}

// Writer writes one file into the cache. Commit makes it visible; Abort
// (or a Commit that fails) leaves nothing behind.
type Writer struct {
	c    *Cache
	url  string
	name string
	tmp  *os.File
	hash interface {
		io.Writer
		Sum([]byte) []byte
	}
	n   int64
	err error
	// wantSum, when set, is the sha256 the file must have to be stored.
	wantSum string
}

// NewWriter starts writing the file fetched from url (may be empty) and
// called name.
func (c *Cache) NewWriter(url, name string) (*Writer, error) {
	tmp, err := os.CreateTemp(c.tmpDir(), "put-*")
	if err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	return &Writer{c: c, url: url, name: name, tmp: tmp, hash: sha256.New()}, nil
}

// WantSHA256 makes Commit store the file only when its sha256 is sum (hex):
// for files named by their digest, such as an apt repository's by-hash
// indexes.
func (w *Writer) WantSHA256(sum string) { w.wantSum = sum }

// Write adds p to the file.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.tmp.Write(p)
	w.hash.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("package cache: write %s: %w", w.tmp.Name(), err)
		return n, w.err
	}
	return n, nil
}

// Commit stores the file when it has wantSize bytes (any size when
// wantSize is negative) and returns its entry.
func (w *Writer) Commit(wantSize int64) (Entry, error) {
	defer w.Abort()
	if w.err != nil {
		return Entry{}, w.err
	}
	if wantSize >= 0 && w.n != wantSize {
		return Entry{}, fmt.Errorf("package cache: %s: got %d bytes, want %d; not stored", w.name, w.n, wantSize)
	}
	if err := w.tmp.Close(); err != nil {
		return Entry{}, fmt.Errorf("package cache: %w", err)
	}
	e := Entry{URL: w.url, Name: w.name, SHA256: hex.EncodeToString(w.hash.Sum(nil)), Size: w.n}
	if w.wantSum != "" && e.SHA256 != w.wantSum {
		return Entry{}, fmt.Errorf("package cache: %s: got sha256 %s, want %s; not stored", w.name, e.SHA256, w.wantSum)
	}
	c := w.c
	// Replacing an existing file with the same name puts verified bytes
	// in place of bytes that may have rotted; readers keep what they
	// opened.
	if err := os.Rename(w.tmp.Name(), c.filePath(e.SHA256)); err != nil {
		return Entry{}, fmt.Errorf("package cache: %w", err)
	}
	if e.URL != "" {
		if err := writeEntry(c, e); err != nil {
			return Entry{}, err
		}
	}
	c.mu.Lock()
	c.addLocked(e)
	c.evictLocked()
	c.mu.Unlock()
	return e, nil
}

// Abort discards the file unless it was committed.
func (w *Writer) Abort() {
	if w.tmp != nil {
		w.tmp.Close()
		_ = os.Remove(w.tmp.Name())
		w.tmp = nil
	}
}

func writeEntry(c *Cache, e Entry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	tmp, err := os.CreateTemp(c.tmpDir(), "url-*")
	if err != nil {
		return fmt.Errorf("package cache: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("package cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.urlPath(e.URL)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("package cache: %w", err)
	}
	return nil
}

// Add stores what r holds as a file fetched from url (may be empty)
// called name.
func (c *Cache) Add(r io.Reader, url, name string) (Entry, error) {
	w, err := c.NewWriter(url, name)
	if err != nil {
		return Entry{}, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return Entry{}, fmt.Errorf("package cache: add %s: %w", name, err)
	}
	return w.Commit(-1)
}

package pkgcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

func newCache(t *testing.T, dir string, max int64) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := Open(Config{Dir: dir, MaxSize: max}, hclog.NewNullLogger(), NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// metric returns the value of a counter or gauge in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func put(t *testing.T, c *Cache, url string, data []byte) Entry {
	t.Helper()
	e, err := c.Add(bytes.NewReader(data), url, url[strings.LastIndex(url, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// read returns what Lookup gives for url, or the error.
func read(c *Cache, url string) ([]byte, error) {
	f, err := c.Lookup(url)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func TestHitAndMiss(t *testing.T) {
	t.Parallel()
	c, reg := newCache(t, t.TempDir(), 1<<20)
	const url = "http://deb.example.org/pool/main/z/zlib/zlib1g_1%3a1.2.13_amd64.deb"
	if _, err := read(c, url); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup in an empty cache: %v, want ErrNotFound", err)
	}
	data := content(1000, 1)
	e := put(t, c, url, data)
	if e.SHA256 != sum(data) || e.Size != 1000 || e.URL != url {
		t.Errorf("entry %+v", e)
	}
	got, err := read(c, url)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("lookup after add: %v, %d bytes", err, len(got))
	}
	f, err := c.Open(sum(data))
	if err != nil {
		t.Fatal(err)
	}
	byHash, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(byHash, data) || f.Entry.URL != url {
		t.Errorf("open by sha256: %d bytes, entry %+v", len(byHash), f.Entry)
	}
	if _, err := c.Open(sum([]byte("other"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("open of an unknown sha256: %v", err)
	}
	if _, err := c.Open("../../etc/passwd"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("open of a bad sha256: %v", err)
	}
	if h, m, b := metric(t, reg, "kiln_worker_package_cache_hits_total"), metric(t, reg, "kiln_worker_package_cache_misses_total"),
		metric(t, reg, "kiln_worker_package_cache_bytes"); h != 1 || m != 1 || b != 1000 {
		t.Errorf("hits %v, misses %v, bytes %v; want 1, 1, 1000", h, m, b)
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, reg := newCache(t, dir, 2500)
	a, b, d := content(1000, 1), content(1000, 2), content(1000, 3)
	put(t, c, "http://x/a.deb", a)
	put(t, c, "http://x/b.deb", b)
	// a is used after b: b is the least recently used.
	if _, err := read(c, "http://x/a.deb"); err != nil {
		t.Fatal(err)
	}
	put(t, c, "http://x/d.deb", d)
	if _, err := read(c, "http://x/b.deb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b after eviction: %v, want ErrNotFound", err)
	}
	for _, u := range []string{"http://x/a.deb", "http://x/d.deb"} {
		if _, err := read(c, u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := os.Stat(c.filePath(sum(b))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("evicted file still on disk: %v", err)
	}
	if c.Size() != 2000 || metric(t, reg, "kiln_worker_package_cache_evictions_total") != 1 ||
		metric(t, reg, "kiln_worker_package_cache_bytes") != 2000 {
		t.Errorf("size %d, evictions %v", c.Size(), metric(t, reg, "kiln_worker_package_cache_evictions_total"))
	}

	// The order of use survives a restart: d, then a was used last.
	if _, err := read(c, "http://x/a.deb"); err != nil {
		t.Fatal(err)
	}
	restarted, _ := newCache(t, dir, 2500)
	put(t, restarted, "http://x/e.deb", content(1000, 4))
	if _, err := read(restarted, "http://x/d.deb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("d after restart and eviction: %v, want ErrNotFound", err)
	}
	if _, err := read(restarted, "http://x/a.deb"); err != nil {
		t.Errorf("a after restart: %v", err)
	}
}

func TestRestartKeepsIndex(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, _ := newCache(t, dir, 1<<20)
	data := content(4096, 7)
	e := put(t, c, "http://x/pool/p_1.0_amd64.deb", data)
	// A writer that crashed left a temp file; it is not an entry.
	if err := os.WriteFile(c.tmpDir()+"/put-crashed", []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}

	restarted, reg := newCache(t, dir, 1<<20)
	f, err := restarted.Lookup("http://x/pool/p_1.0_amd64.deb")
	if err != nil {
		t.Fatalf("lookup after restart: %v", err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) || f.Entry != e {
		t.Errorf("after restart: entry %+v, want %+v; %d bytes", f.Entry, e, len(got))
	}
	if restarted.Size() != 4096 || metric(t, reg, "kiln_worker_package_cache_bytes") != 4096 {
		t.Errorf("size after restart %d", restarted.Size())
	}
}

func TestCorruptEntryIsDroppedAndRefetched(t *testing.T) {
	t.Parallel()
	c, reg := newCache(t, t.TempDir(), 1<<20)
	const url = "http://x/pool/c_1_amd64.deb"
	data := content(2000, 9)
	e := put(t, c, url, data)
	// A bit flips on disk.
	rotten := bytes.Clone(data)
	rotten[1000] ^= 1
	if err := os.WriteFile(c.filePath(e.SHA256), rotten, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := read(c, url)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), e.SHA256) {
		t.Fatalf("lookup of a corrupt entry: %v, want ErrCorrupt naming %s", err, e.SHA256)
	}
	if _, err := os.Stat(c.filePath(e.SHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt file kept on disk: %v", err)
	}
	if _, err := read(c, url); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup after the drop: %v, want ErrNotFound", err)
	}
	// Fetched again, it is served again.
	put(t, c, url, data)
	if got, err := read(c, url); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after refetch: %v", err)
	}
	if n := metric(t, reg, "kiln_worker_package_cache_corrupt_total"); n != 1 {
		t.Errorf("corrupt_total %v, want 1", n)
	}

	// A file cut short (a crash before the data reached the disk) is
	// caught the same way, by Open too.
	if err := os.Truncate(c.filePath(e.SHA256), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(e.SHA256); !errors.Is(err, ErrCorrupt) {
		t.Errorf("open of a truncated file: %v, want ErrCorrupt", err)
	}
}

func TestCommitChecksLength(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, t.TempDir(), 1<<20)
	w, err := c.NewWriter("http://x/short.deb", "short.deb")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content(500, 1))
	if _, err := w.Commit(1000); err == nil || !strings.Contains(err.Error(), "got 500 bytes, want 1000") {
		t.Errorf("commit of a short file: %v", err)
	}
	if _, err := read(c, "http://x/short.deb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("short file stored: %v", err)
	}
	if left, _ := os.ReadDir(c.tmpDir()); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestCommitChecksWantedDigest(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, t.TempDir(), 1<<20)
	good, bad := content(700, 3), content(700, 4)
	w, err := c.NewWriter("", "Packages.xz")
	if err != nil {
		t.Fatal(err)
	}
	w.WantSHA256(sum(good))
	w.Write(bad)
	if _, err := w.Commit(-1); err == nil || !strings.Contains(err.Error(), "got sha256 "+sum(bad)+", want "+sum(good)) {
		t.Errorf("commit of the wrong bytes: %v", err)
	}
	if _, err := c.Open(sum(bad)); !errors.Is(err, ErrNotFound) {
		t.Errorf("wrong bytes stored: %v", err)
	}
	w, _ = c.NewWriter("", "Packages.xz")
	w.WantSHA256(sum(good))
	w.Write(good)
	if e, err := w.Commit(-1); err != nil || e.SHA256 != sum(good) {
		t.Fatalf("commit of the right bytes: %+v, %v", e, err)
	}
	f, err := c.Open(sum(good))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestConcurrentPuts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, _ := newCache(t, dir, 1<<30)
	// A second process on the same directory.
	other, _ := newCache(t, dir, 1<<30)
	data := content(1<<20, 5)
	const url = "http://x/pool/big_1_amd64.deb"
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cache := c
			if i%2 == 1 {
				cache = other
			}
			w, err := cache.NewWriter(url, "big_1_amd64.deb")
			if err != nil {
				errs <- err
				return
			}
			// Written in small pieces so that the writers interleave.
			for off := 0; off < len(data); off += 4096 {
				w.Write(data[off : off+4096])
			}
			if _, err := w.Commit(int64(len(data))); err != nil {
				errs <- err
			}
			if got, err := read(cache, url); err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("read while others write: %v, %d bytes", err, len(got))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := read(c, url); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after concurrent puts: %v", err)
	}
	files, _ := os.ReadDir(c.filesDir())
	temps, _ := os.ReadDir(c.tmpDir())
	if len(files) != 1 || len(temps) != 0 || c.Size() != 1<<20 {
		t.Errorf("%d files, %d temp files, size %d; want 1, 0, %d", len(files), len(temps), c.Size(), 1<<20)
	}
}

func TestOtherProcessEntryIsFound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker, _ := newCache(t, dir, 1<<20)
	chrootTool, _ := newCache(t, dir, 1<<20)
	data := content(300, 3)
	put(t, chrootTool, "http://x/o.deb", data)
	if got, err := read(worker, "http://x/o.deb"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("entry added by another process: %v", err)
	}
	if worker.Size() != 300 {
		t.Errorf("size %d after adopting, want 300", worker.Size())
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := Open(Config{Dir: "cache", MaxSize: 1}, hclog.NewNullLogger(), nil); err == nil || !strings.Contains(err.Error(), `"cache"`) {
		t.Errorf("relative dir: %v", err)
	}
	if _, err := Open(Config{Dir: t.TempDir()}, hclog.NewNullLogger(), nil); err == nil || !strings.Contains(err.Error(), "max size 0") {
		t.Errorf("no max size: %v", err)
	}
}

package buildroot

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgcache"
)

// isPackageFile reports whether u names a package file, which never
// changes once published under its name, unlike the repository's indexes
// (Release, Packages, repomd.xml), which are never cached.
func isPackageFile(u *url.URL) bool {
	switch strings.ToLower(path.Ext(u.Path)) {
	case ".deb", ".udeb", ".rpm":
		return true
	}
	return false
}

// byHashDigest returns the sha256 (hex) of an apt repository index named by
// its digest (".../by-hash/SHA256/<sha256>", what apt asks for when the
// Release file says Acquire-By-Hash), or false. Such a URL names exactly
// one content, so it is cached like a package file and checked against the
// digest it names; a new Release names new digests, so a changed index is
// never served from the cache. Indexes apt asks for by name (Release,
// InRelease, and indexes of repositories without by-hash) are never cached.
func byHashDigest(u *url.URL) (string, bool) {
	dir, sum := path.Split(u.Path)
	if !strings.HasSuffix(dir, "/by-hash/SHA256/") || len(sum) != 64 {
		return "", false
	}
	for _, c := range sum {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return sum, true
}

// indexName is how the step's log names a by-hash index:
// "dists/bookworm/main/binary-amd64 index 9e0b5aabb246".
func indexName(u *url.URL, sum string) string {
	dir := strings.TrimSuffix(u.Path, "/by-hash/SHA256/"+sum)
	if i := strings.Index(dir, "/dists/"); i >= 0 {
		dir = dir[i+1:]
	}
	return dir + " index " + sum[:12]
}

// serveIndex answers a GET request for a by-hash index from the package
// cache, by its digest, or fetches it and stores it when its bytes have
// that digest. Indexes are not package files: they are neither recorded
// for the release's base nor counted in the package cache's metrics.
func (p *sourceProxy) serveIndex(w http.ResponseWriter, r *http.Request, sum string) {
	name := indexName(r.URL, sum)
	f, err := p.cache.Open(sum)
	if err == nil {
		defer f.Close()
		p.mu.Lock()
		p.indexHits++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, f)
		return
	}
	if errors.Is(err, pkgcache.ErrCorrupt) {
		fmt.Fprintf(p.log, "kiln: package cache: %s was corrupt on disk (%v); fetching it again\n", name, err)
	}
	p.fetchIndex.ServeHTTP(w, r)
}

// captureIndex stores a by-hash index's response as it passes to the
// step, when its bytes have the digest its URL names.
func (p *sourceProxy) captureIndex(resp *http.Response) error {
	sum, ok := byHashDigest(resp.Request.URL)
	if !ok || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" || resp.Uncompressed {
		return nil
	}
	name := indexName(resp.Request.URL, sum)
	w, err := p.cache.NewWriter("", name)
	if err != nil {
		fmt.Fprintf(p.log, "kiln: package cache: %s not stored: %v\n", name, err)
		return nil
	}
	w.WantSHA256(sum)
	resp.Body = &captureBody{ReadCloser: resp.Body, p: p, w: w, name: name, want: resp.ContentLength, index: true}
	return nil
}

// serveCached answers a GET request for a package file from the package
// cache, or fetches it from its source and stores it on the way (capture).
// The file's bytes are checked against their sha256 before they are
// served; a corrupt file is fetched again.
func (p *sourceProxy) serveCached(w http.ResponseWriter, r *http.Request) {
	key := r.URL.String()
	name := path.Base(r.URL.Path)
	f, err := p.cache.Lookup(key)
	if err == nil {
		defer f.Close()
		p.record(executor.PackageFile{URL: key, Name: name, SHA256: f.Entry.SHA256, Size: f.Entry.Size, CacheHit: true})
		fmt.Fprintf(p.log, "kiln: package cache hit %s\n", name)
		w.Header().Set("Content-Type", "application/octet-stream")
		// No modification time and no ETag: the whole file, or the
		// range asked for.
		http.ServeContent(w, r, "", time.Time{}, f)
		return
	}
	switch {
	case errors.Is(err, pkgcache.ErrNotFound):
	case errors.Is(err, pkgcache.ErrCorrupt):
		fmt.Fprintf(p.log, "kiln: package cache: %s was corrupt on disk (%v); fetching it again\n", name, err)
	default:
		fmt.Fprintf(p.log, "kiln: package cache: %s: %v; fetching it from its source\n", name, err)
	}
	p.fetch.ServeHTTP(w, r)
}

// rewriteForCache asks the source for the whole file as it is: no range,
// no condition, no content encoding, so that a 200 response is the file.
// The step gets the whole file whatever it asked for, which HTTP allows.
func rewriteForCache(pr *httputil.ProxyRequest) {
	for _, h := range []string{"Range", "If-Range", "If-Modified-Since", "If-Unmodified-Since", "If-None-Match", "If-Match"} {
		pr.Out.Header.Del(h)
	}
	pr.Out.Header.Set("Accept-Encoding", "identity")
}

// capture stores a package file's response in the cache as it passes to
// the step, when it is a complete 200 response of a known length.
func (p *sourceProxy) capture(resp *http.Response) error {
	u := resp.Request.URL
	name := path.Base(u.Path)
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	// A response without a length is chunked: its end is marked, and a
	// body cut short ends with an error, not io.EOF.
	if resp.Header.Get("Content-Encoding") != "" || resp.Uncompressed {
		fmt.Fprintf(p.log, "kiln: package cache: %s not stored: the source sent it encoded (%s)\n", name, resp.Header.Get("Content-Encoding"))
		return nil
	}
	w, err := p.cache.NewWriter(u.String(), name)
	if err != nil {
		fmt.Fprintf(p.log, "kiln: package cache: %s not stored: %v\n", name, err)
		return nil
	}
	resp.Body = &captureBody{ReadCloser: resp.Body, p: p, w: w, url: u.String(), name: name, want: resp.ContentLength}
	return nil
}

// captureBody copies a response body into a cache writer and commits it
// when the body ended cleanly with the announced length (want; -1 when
// none was announced).
type captureBody struct {
	io.ReadCloser
	p         *sourceProxy
	w         *pkgcache.Writer
	url, name string
	want, n   int64
	done      bool
	// index: a by-hash index, not a package file.
	index bool
}

func (c *captureBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	if n > 0 && c.w != nil {
		if _, werr := c.w.Write(b[:n]); werr != nil {
			fmt.Fprintf(c.p.log, "kiln: package cache: %s not stored: %v\n", c.name, werr)
			c.w.Abort()
			c.w = nil
		}
	}
	c.n += int64(n)
	if err == io.EOF && !c.done {
		c.done = true
		c.commit()
	}
	return n, err
}

func (c *captureBody) commit() {
	if c.w == nil {
		return
	}
	e, err := c.w.Commit(c.want)
	c.w = nil
	if err != nil {
		fmt.Fprintf(c.p.log, "kiln: package cache: %s not stored: %v\n", c.name, err)
		return
	}
	if c.index {
		c.p.mu.Lock()
		c.p.indexFetched++
		c.p.mu.Unlock()
		return
	}
	c.p.record(executor.PackageFile{URL: c.url, Name: c.name, SHA256: e.SHA256, Size: e.Size})
	fmt.Fprintf(c.p.log, "kiln: package cache miss %s: fetched from its source (%s)\n", c.name, humanBytes(e.Size))
}

func (c *captureBody) Close() error {
	if c.w != nil {
		c.w.Abort()
		c.w = nil
		if c.want >= 0 {
			fmt.Fprintf(c.p.log, "kiln: package cache: %s not stored: the download ended after %d of %d bytes\n", c.name, c.n, c.want)
		} else {
			fmt.Fprintf(c.p.log, "kiln: package cache: %s not stored: the download ended early, after %d bytes\n", c.name, c.n)
		}
	}
	return c.ReadCloser.Close()
}

// record adds a package file served whole to the step's list.
func (p *sourceProxy) record(f executor.PackageFile) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = append(p.files, f)
}

// packages returns the package files served whole so far.
func (p *sourceProxy) packages() []executor.PackageFile {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]executor.PackageFile(nil), p.files...)
}

// indexSummary is the step log's line on the by-hash indexes, or "" when
// the step asked for none.
func (p *sourceProxy) indexSummary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.indexHits+p.indexFetched == 0 {
		return ""
	}
	return fmt.Sprintf("kiln: package cache: %d repository indexes from the cache, %d fetched and stored\n", p.indexHits, p.indexFetched)
}

// tunnelSummary is the step log's warning on the https sources reached
// through tunnels, or "" when there were none. With a package cache,
// package files fetched through a tunnel are neither kept nor captured
// into the release's base, so a sealed rebuild would lack them.
func (p *sourceProxy) tunnelSummary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tunnelled) == 0 || p.cache == nil {
		return ""
	}
	origins := make([]string, 0, len(p.tunnelled))
	for o, n := range p.tunnelled {
		origins = append(origins, fmt.Sprintf("%s (%d)", o, n))
	}
	slices.Sort(origins)
	return fmt.Sprintf("kiln: warning: https connections went through the package source proxy as tunnels: %s; "+
		"package files fetched over them are not in the package cache and not in the release's base, "+
		"so a sealed rebuild would lack them. Kiln names the https sources of apt and dnf for the proxy; "+
		"these were reached otherwise (a mirror list, or a command of the step's own): give them as http://host:443/ "+
		"URLs or plain http:// ones (apt and dnf still verify every file against the signed Release or repomd.xml) "+
		"so that the proxy keeps them\n",
		strings.Join(origins, ", "))
}

// cacheSummary is the step log's line on the package cache, or "" when
// the step got no package files.
func cacheSummary(files []executor.PackageFile) string {
	if len(files) == 0 {
		return ""
	}
	var hits, fetched int
	var hitBytes, fetchedBytes int64
	for _, f := range files {
		if f.CacheHit {
			hits++
			hitBytes += f.Size
		} else {
			fetched++
			fetchedBytes += f.Size
		}
	}
	return fmt.Sprintf("kiln: package cache: %d hits (%s), %d fetched from the sources (%s)\n",
		hits, humanBytes(hitBytes), fetched, humanBytes(fetchedBytes))
}

// humanBytes formats n bytes for people: 512 B, 97.2 kB, 2.1 MB.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

package buildroot

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgcache"
)

// syncBuffer is a step log that the proxy's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTestProxy serves a proxy to allow on a loopback port.
func startTestProxy(t *testing.T, allow ...string) (*sourceProxy, string, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	p := newSourceProxy(allow, log, nil, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
	t.Cleanup(func() { p.Close() })
	return p, ln.Addr().String(), log
}

// rawRequest sends req to the proxy at addr and returns the response.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", req, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestSourceProxyRequests(t *testing.T) {
	t.Parallel()
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "package index at %s", r.URL.Path)
	}))
	defer source.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached a host that is not a source: %s", r.URL)
	}))
	defer other.Close()
	src, oth := hostPortOf(t, source.URL), hostPortOf(t, other.URL)
	_, addr, log := startTestProxy(t, strings.ToUpper("HTTPS://localhost:2"), "http://"+src)

	tests := []struct {
		name     string
		req      string
		status   int
		wantBody string
		wantLog  string
	}{
		{
			name:     "GET from a source",
			req:      "GET http://" + src + "/debian/dists/bookworm/InRelease HTTP/1.1\r\nHost: " + src + "\r\nConnection: close\r\n\r\n",
			status:   http.StatusOK,
			wantBody: "package index at /debian/dists/bookworm/InRelease",
		},
		{
			name:   "HEAD from a source",
			req:    "HEAD http://" + src + "/x HTTP/1.1\r\nHost: " + src + "\r\nConnection: close\r\n\r\n",
			status: http.StatusOK,
		},
		{
			name:     "GET from another host",
			req:      "GET http://" + oth + "/secret HTTP/1.1\r\nHost: " + oth + "\r\nConnection: close\r\n\r\n",
			status:   http.StatusForbidden,
			wantBody: "http://" + oth + " is not a package source of this build",
			wantLog:  "kiln: proxy: refused GET http://" + oth + "/secret: http://" + oth + " is not a package source",
		},
		{
			name:     "the refusal says how to allow a host",
			req:      "GET http://" + oth + "/ HTTP/1.1\r\nHost: " + oth + "\r\nConnection: close\r\n\r\n",
			status:   http.StatusForbidden,
			wantBody: "build.repositories",
			wantLog:  "buildroot.dependency_network: host",
		},
		{
			name:     "default port of a source not listed",
			req:      "GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
			status:   http.StatusForbidden,
			wantBody: "http://127.0.0.1:80 is not a package source",
		},
		{
			name:     "POST to a source",
			req:      "POST http://" + src + "/x HTTP/1.1\r\nHost: " + src + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			status:   http.StatusMethodNotAllowed,
			wantBody: "only GET and HEAD",
			wantLog:  "kiln: proxy: POST",
		},
		{
			name:     "request that is not for a proxy",
			req:      "GET /x HTTP/1.1\r\nHost: " + src + "\r\nConnection: close\r\n\r\n",
			status:   http.StatusBadRequest,
			wantBody: "absolute http:// URLs",
		},
		{
			name:     "https URL without CONNECT",
			req:      "GET https://" + src + "/x HTTP/1.1\r\nHost: " + src + "\r\nConnection: close\r\n\r\n",
			status:   http.StatusBadRequest,
			wantBody: "CONNECT",
		},
		{
			name:     "upgrade",
			req:      "GET http://" + src + "/x HTTP/1.1\r\nHost: " + src + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			status:   http.StatusBadRequest,
			wantBody: "upgrades",
		},
		{
			name:     "CONNECT to another host",
			req:      "CONNECT " + oth + " HTTP/1.1\r\nHost: " + oth + "\r\n\r\n",
			status:   http.StatusForbidden,
			wantBody: "https://" + oth + " is not a package source",
			wantLog:  "refused CONNECT " + oth,
		},
		{
			// A tunnel would carry any method, body and Host header to
			// a source that is allowed for plain GET and HEAD only.
			name:     "CONNECT to a plain-http source",
			req:      "CONNECT " + src + " HTTP/1.1\r\nHost: " + src + "\r\n\r\n",
			status:   http.StatusForbidden,
			wantBody: "https://" + src + " is not a package source",
			wantLog:  "refused CONNECT " + src,
		},
		{
			name:     "CONNECT without a port",
			req:      "CONNECT example.org HTTP/1.1\r\nHost: example.org\r\n\r\n",
			status:   http.StatusBadRequest,
			wantBody: "give host:port",
		},
		{
			name:     "host names are compared in lower case",
			req:      "CONNECT LOCALHOST:2 HTTP/1.1\r\nHost: LOCALHOST:2\r\n\r\n",
			status:   http.StatusBadGateway,
			wantBody: "CONNECT localhost:2",
		},
	}
	for _, tt := range tests {
		resp, body := rawRequest(t, addr, tt.req)
		if resp.StatusCode != tt.status || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s: %s %q, want %d and a body containing %q", tt.name, resp.Status, body, tt.status, tt.wantBody)
		}
		if !strings.Contains(log.String(), tt.wantLog) {
			t.Errorf("%s: step log does not say %q:\n%s", tt.name, tt.wantLog, log.String())
		}
	}
	if got := log.String(); strings.Contains(got, "refused GET http://"+src) {
		t.Errorf("step log refuses the source:\n%s", got)
	}
}

func hostPortOf(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestSourceProxyTunnelsHTTPS(t *testing.T) {
	t.Parallel()
	source := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "over tls")
	}))
	defer source.Close()
	origin := "https://" + hostPortOf(t, source.URL)
	get := func(addr string) {
		t.Helper()
		c := source.Client()
		c.Transport.(*http.Transport).Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr})
		resp, err := c.Get(source.URL + "/repodata/repomd.xml")
		if err != nil {
			t.Fatalf("https through the proxy: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "over tls" {
			t.Errorf("https through the proxy: %s %q", resp.Status, body)
		}
		c.CloseIdleConnections()
	}
	p, addr, _ := startTestProxy(t, origin)
	get(addr)
	// Without a package cache nothing is kept anyway: no warning.
	p.Close()
	if w := p.tunnelSummary(); w != "" {
		t.Errorf("warning without a package cache: %q", w)
	}
	// With one, the step's log says the tunnelled files were not kept.
	cp, _, _, client, _ := startCachingProxy(t, origin)
	if w := cp.tunnelSummary(); w != "" {
		t.Errorf("warning before any tunnel: %q", w)
	}
	pu, err := client.Transport.(*http.Transport).Proxy(httptest.NewRequest(http.MethodGet, "http://example.org/", nil))
	if err != nil {
		t.Fatal(err)
	}
	get(pu.Host)
	get(pu.Host)
	cp.Close()
	w := cp.tunnelSummary()
	if !strings.Contains(w, origin+" (2)") || !strings.Contains(w, "not in the release's base") || !strings.Contains(w, "http://") {
		t.Errorf("warning after two tunnels to %s: %q", origin, w)
	}
}

func TestSourceProxyCloseEndsTunnels(t *testing.T) {
	t.Parallel()
	// A source that accepts and then says nothing.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p, addr, _ := startTestProxy(t, "https://"+ln.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %[1]s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", ln.Addr())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT to an allowed source: %v, %v", resp, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a tunnel was open")
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("tunnel still open after Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("proxy still accepts after Close")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestLimitListener(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLimitListener(inner, 1)
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	select {
	case <-accepted:
		t.Fatal("second connection accepted while the first is open")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("second connection not accepted after the first closed")
	}
}

// startCachingProxy serves a proxy to allow with a package cache in a
// temporary directory, and returns a client that uses it.
func startCachingProxy(t *testing.T, allow ...string) (*sourceProxy, *pkgcache.Cache, *prometheus.Registry, *http.Client, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cache, err := pkgcache.Open(pkgcache.Config{Dir: t.TempDir(), MaxSize: 1 << 30}, hclog.NewNullLogger(), pkgcache.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	p := newSourceProxy(allow, log, cache, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
	t.Cleanup(func() { p.Close() })
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: ln.Addr().String()})}}
	return p, cache, reg, client, log
}

func get(t *testing.T, c *http.Client, u string) (int, []byte) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, body
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestProxyServesPackageFilesFromCache(t *testing.T) {
	t.Parallel()
	deb := bytes.Repeat([]byte("zlib"), 10000)
	var mu sync.Mutex
	reached := map[string]int{}
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached[r.URL.Path]++
		mu.Unlock()
		if r.Header.Get("Range") != "" || r.Header.Get("If-Modified-Since") != "" {
			t.Errorf("source asked for a range or a condition: %v", r.Header)
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "_amd64.deb"):
			w.Header().Set("Content-Length", fmt.Sprint(len(deb)))
			w.Write(deb)
		case strings.HasSuffix(r.URL.Path, "/Packages"):
			fmt.Fprintf(w, "Package: zlib1g\nVersion: %d\n", reached[r.URL.Path])
		default:
			http.NotFound(w, r)
		}
	}))
	defer source.Close()
	p, cache, reg, client, log := startCachingProxy(t, "http://"+hostPortOf(t, source.URL))
	debURL := source.URL + "/debian/pool/main/z/zlib/zlib1g_1%3a1.2.13.dfsg-1_amd64.deb"

	for i := range 2 {
		status, body := get(t, client, debURL)
		if status != http.StatusOK || !bytes.Equal(body, deb) {
			t.Fatalf("GET %d of the .deb: %d, %d bytes", i+1, status, len(body))
		}
	}
	if n := reached["/debian/pool/main/z/zlib/zlib1g_1:1.2.13.dfsg-1_amd64.deb"]; n != 1 {
		t.Errorf("the .deb reached the source %d times, want 1 (the second from the cache)", n)
	}
	// A range request is answered from the cache too.
	req, _ := http.NewRequest(http.MethodGet, debURL, nil)
	req.Header.Set("Range", "bytes=4-7")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(part) != "zlib" {
		t.Errorf("range from the cache: %s, %d bytes", resp.Status, len(part))
	}

	// Index files always come from the source.
	for i := range 2 {
		status, body := get(t, client, source.URL+"/debian/dists/bookworm/main/binary-amd64/Packages")
		if want := fmt.Sprintf("Version: %d\n", i+1); status != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %d of Packages: %d %q, want %q", i+1, status, body, want)
		}
	}
	// A missing package file is not stored.
	if status, _ := get(t, client, source.URL+"/debian/pool/gone_1_all.deb"); status != http.StatusNotFound {
		t.Errorf("missing .deb: %d", status)
	}

	const name = "zlib1g_1:1.2.13.dfsg-1_amd64.deb"
	for _, want := range []string{
		"kiln: package cache miss " + name + ": fetched from its source (40.0 kB)\n",
		"kiln: package cache hit " + name + "\n",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("step log does not say %q:\n%s", want, log.String())
		}
	}
	if strings.Contains(log.String(), "Packages") {
		t.Errorf("step log mentions the index:\n%s", log.String())
	}
	files := p.packages()
	sum := sha256.Sum256(deb)
	want := executor.PackageFile{URL: debURL, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(deb))}
	if len(files) != 3 || files[0] != want {
		t.Fatalf("recorded files %+v, want first %+v", files, want)
	}
	want.CacheHit = true
	if files[1] != want {
		t.Errorf("recorded hit %+v, want %+v", files[1], want)
	}
	if got := cacheSummary(files); got != "kiln: package cache: 2 hits (80.0 kB), 1 fetched from the sources (40.0 kB)\n" {
		t.Errorf("summary %q", got)
	}
	if f, err := cache.Open(want.SHA256); err != nil {
		t.Errorf("open the captured file by sha256: %v", err)
	} else {
		f.Close()
	}
	if h, m := counter(t, reg, "kiln_worker_package_cache_hits_total"), counter(t, reg, "kiln_worker_package_cache_misses_total"); h != 2 || m != 2 {
		t.Errorf("hits %v, misses %v; want 2, 2", h, m)
	}
}

func TestProxyDoesNotStoreTruncatedFile(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	reached := 0
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
		// 1000 bytes announced, 400 sent, connection dropped.
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write(bytes.Repeat([]byte("x"), 400))
		w.(http.Flusher).Flush()
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer source.Close()
	p, cache, _, client, log := startCachingProxy(t, "http://"+hostPortOf(t, source.URL))
	u := source.URL + "/pool/cut_1_amd64.deb"
	for range 2 {
		resp, err := client.Get(u)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("truncated download reached the step as complete")
		}
	}
	if reached != 2 {
		t.Errorf("source reached %d times, want 2 (nothing stored)", reached)
	}
	if cache.Size() != 0 || len(p.packages()) != 0 {
		t.Errorf("truncated file stored: cache size %d, files %+v", cache.Size(), p.packages())
	}
	if want := "kiln: package cache: cut_1_amd64.deb not stored: the download ended after 400 of 1000 bytes"; !strings.Contains(log.String(), want) {
		t.Errorf("step log does not say %q:\n%s", want, log.String())
	}
}

func TestProxyRefetchesCorruptFile(t *testing.T) {
	t.Parallel()
	deb := bytes.Repeat([]byte("rpm!"), 5000)
	var mu sync.Mutex
	reached := 0
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
		w.Write(deb)
	}))
	defer source.Close()
	_, cache, reg, client, log := startCachingProxy(t, "http://"+hostPortOf(t, source.URL))
	u := source.URL + "/Packages/p-1.0-1.x86_64.rpm"
	get(t, client, u)
	sum := sha256.Sum256(deb)
	path := filepath.Join(cache.Dir(), "files", hex.EncodeToString(sum[:]))
	rotten := bytes.Clone(deb)
	rotten[7] = 'X'
	if err := os.WriteFile(path, rotten, 0o644); err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, client, u); status != http.StatusOK || !bytes.Equal(body, deb) {
		t.Errorf("GET after corruption: %d, body intact %v", status, bytes.Equal(body, deb))
	}
	if reached != 2 {
		t.Errorf("source reached %d times, want 2", reached)
	}
	if want := "kiln: package cache: p-1.0-1.x86_64.rpm was corrupt on disk"; !strings.Contains(log.String(), want) {
		t.Errorf("step log does not say %q:\n%s", want, log.String())
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, deb) {
		t.Errorf("the cache does not hold the refetched file")
	}
	if n := counter(t, reg, "kiln_worker_package_cache_corrupt_total"); n != 1 {
		t.Errorf("corrupt_total %v", n)
	}
}

func TestProxyCachesByHashIndexesByDigest(t *testing.T) {
	t.Parallel()
	index := bytes.Repeat([]byte("Package: zlib1g\n\n"), 1000)
	digest := sha256.Sum256(index)
	good := hex.EncodeToString(digest[:])
	// lying names a digest its bytes do not have.
	lying := strings.Repeat("ab", 32)
	var mu sync.Mutex
	reached := map[string]int{}
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached[path.Base(r.URL.Path)]++
		mu.Unlock()
		w.Header().Set("Content-Length", fmt.Sprint(len(index)))
		w.Write(index)
	}))
	defer source.Close()
	p, cache, reg, client, log := startCachingProxy(t, "http://"+hostPortOf(t, source.URL))
	byHash := source.URL + "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/"

	for i := range 2 {
		for _, sum := range []string{good, lying} {
			if status, body := get(t, client, byHash+sum); status != http.StatusOK || !bytes.Equal(body, index) {
				t.Fatalf("GET %d of %s: %d, %d bytes", i+1, sum, status, len(body))
			}
		}
	}
	if reached[good] != 1 {
		t.Errorf("the index reached the source %d times, want 1 (the second from the cache)", reached[good])
	}
	if reached[lying] != 2 {
		t.Errorf("bytes not matching their by-hash name reached the source %d times, want 2 (never stored)", reached[lying])
	}
	if _, err := cache.Open(lying); err == nil {
		t.Errorf("bytes stored under a digest they do not have")
	}
	if want := "kiln: package cache: dists/bookworm/main/binary-amd64 index abababababab not stored: package cache: dists/bookworm/main/binary-amd64 index abababababab: got sha256 " + good + ", want " + lying; !strings.Contains(log.String(), want) {
		t.Errorf("step log does not say %q:\n%s", want, log.String())
	}
	// Indexes are not package files: not in the base, not in the metrics.
	if files := p.packages(); len(files) != 0 {
		t.Errorf("indexes recorded as package files: %+v", files)
	}
	if h, m := counter(t, reg, "kiln_worker_package_cache_hits_total"), counter(t, reg, "kiln_worker_package_cache_misses_total"); h != 0 || m != 0 {
		t.Errorf("package metrics counted indexes: hits %v, misses %v", h, m)
	}
	if got := p.indexSummary(); got != "kiln: package cache: 1 repository indexes from the cache, 1 fetched and stored\n" {
		t.Errorf("summary %q", got)
	}

	// Corrupt on disk: detected by its digest, fetched and stored again.
	if err := os.WriteFile(filepath.Join(cache.Dir(), "files", good), []byte("rotten"), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, client, byHash+good); status != http.StatusOK || !bytes.Equal(body, index) {
		t.Fatalf("GET of the corrupted index: %d, %d bytes", status, len(body))
	}
	if reached[good] != 2 || !strings.Contains(log.String(), "index "+good[:12]+" was corrupt on disk") {
		t.Errorf("corrupt index: source reached %d times, want 2; log:\n%s", reached[good], log.String())
	}
	if f, err := cache.Open(good); err != nil {
		t.Errorf("index not stored again: %v", err)
	} else {
		f.Close()
	}
	for _, u := range []string{"/by-hash/SHA256/" + good + "x", "/by-hash/MD5Sum/" + good[:32], "/by-hash/SHA256/" + strings.ToUpper(good), "/Packages.xz"} {
		if _, ok := byHashDigest(&url.URL{Path: "/debian/dists/bookworm/main/binary-amd64" + u}); ok {
			t.Errorf("%s taken for a by-hash index", u)
		}
	}
}

func TestViaProxyURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mirror.example.org/alma/9/BaseOS/x86_64/os/": "http://mirror.example.org:443/alma/9/BaseOS/x86_64/os/",
		"https://Mirror.example.org:8443/repo?x=1":            "http://Mirror.example.org:8443/repo?x=1",
		"https://[2001:db8::1]/repo/":                         "http://[2001:db8::1]:443/repo/",
		"http://mirror.example.org/debian":                    "http://mirror.example.org/debian",
		"file:///etc/kiln/mos.asc":                            "file:///etc/kiln/mos.asc",
		"":                                                    "",
	} {
		if got := viaProxyURL(in); got != want {
			t.Errorf("viaProxyURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A plain request for an allowed https source, named http://host:port/ as
// viaProxyURL writes it, is fetched over https (the source's certificate
// checked) and its package files cached and captured as from an http
// source; no tunnel, no warning. An https source that is not allowed is
// refused the same way.
func TestProxyUpgradesPlainRequestsForHTTPSSources(t *testing.T) {
	t.Parallel()
	rpm := bytes.Repeat([]byte("rpm!"), 5000)
	var mu sync.Mutex
	var reached int
	source := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached++
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, ".rpm") {
			w.Header().Set("Content-Length", fmt.Sprint(len(rpm)))
			w.Write(rpm)
			return
		}
		http.NotFound(w, r)
	}))
	defer source.Close()
	hp := hostPortOf(t, source.URL)
	p, _, _, client, log := startCachingProxy(t, "https://"+hp)
	// The worker host would trust the source's CA; here, the test's.
	p.transport.TLSClientConfig = source.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	plain := viaProxyURL(source.URL + "/BaseOS/Packages/zlib-1.2.11-40.el9.x86_64.rpm")
	if !strings.HasPrefix(plain, "http://"+hp+"/") {
		t.Fatalf("viaProxyURL gave %s", plain)
	}
	for i := range 2 {
		resp, err := client.Get(plain)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, rpm) {
			t.Fatalf("get %d: %s, %d bytes\n%s", i, resp.Status, len(body), log.String())
		}
	}
	mu.Lock()
	if reached != 1 {
		t.Errorf("the source was reached %d times, want once (then the cache)", reached)
	}
	mu.Unlock()
	files := p.packages()
	if len(files) != 2 || files[0].CacheHit || !files[1].CacheHit || !strings.HasPrefix(files[0].URL, "https://"+hp+"/") {
		t.Errorf("package files %+v, want a miss then a hit, by the https URL", files)
	}
	if w := p.tunnelSummary(); w != "" {
		t.Errorf("tunnel warning without a tunnel: %q", w)
	}
	// Not an allowed source: refused, not upgraded.
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("a source that is not allowed was reached: %s", r.URL)
	}))
	defer other.Close()
	resp, err := client.Get(viaProxyURL(other.URL + "/x.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("request for a source that is not allowed: %s", resp.Status)
	}
}

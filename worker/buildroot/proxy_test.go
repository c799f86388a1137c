package buildroot

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
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
	p := newSourceProxy(allow, log)
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
	_, addr, _ := startTestProxy(t, "https://"+hostPortOf(t, source.URL))
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

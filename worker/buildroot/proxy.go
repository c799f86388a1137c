package buildroot

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgcache"
)

// A network step in "sources" mode has a network namespace of its own with
// only a loopback device. The worker listens on proxyPort in that namespace
// (the namespace is new, so the port is free) and forwards to the package
// sources from the host's namespace.
const (
	proxyPort = 3128
	// proxyMaxConns bounds the connections a step has open to the proxy
	// at once; apt and dnf use a few.
	proxyMaxConns = 32
	// proxyDialTimeout bounds connecting to a source.
	proxyDialTimeout = 30 * time.Second
	// proxyIdleTimeout closes a tunnel or a kept-alive connection that
	// has carried nothing for that long.
	proxyIdleTimeout = 5 * time.Minute
)

// proxyURL is what a step's http_proxy and https_proxy say.
var proxyURL = "http://127.0.0.1:" + strconv.Itoa(proxyPort)

// proxyEnv gives a step the proxy: apt's http and https methods, dnf and
// anything using libcurl read these.
func proxyEnv() []string {
	return []string{
		"http_proxy=" + proxyURL, "https_proxy=" + proxyURL,
		"HTTP_PROXY=" + proxyURL, "HTTPS_PROXY=" + proxyURL,
		"no_proxy=", "NO_PROXY=",
	}
}

// sourceProxy is the HTTP proxy between a network step and its package
// sources: it forwards absolute-URI GET and HEAD requests to the allowed
// http origins and CONNECT tunnels to the allowed https origins only (a
// tunnel to a plain-http source would carry any request), refuses
// everything else with a message naming the source and the setting that
// allows it, and writes each refusal to the step's log. With a package
// cache, it answers plain GET requests for package files from the cache
// and stores those it fetches (see serveCached).
type sourceProxy struct {
	allow     map[string]bool
	log       io.Writer
	cache     *pkgcache.Cache
	dialer    net.Dialer
	transport *http.Transport
	forward   *httputil.ReverseProxy
	// fetch forwards package file requests that the cache missed and
	// stores the responses.
	fetch *httputil.ReverseProxy
	// fetchIndex forwards by-hash index requests that the cache missed
	// and stores the responses.
	fetchIndex *httputil.ReverseProxy
	server     *http.Server

	mu      sync.Mutex
	closed  bool
	tunnels map[net.Conn]struct{}
	wg      sync.WaitGroup
	// files are the package files served whole, hit or fetched.
	files []executor.PackageFile
	// indexHits and indexFetched count the by-hash indexes served from
	// the cache and fetched into it.
	indexHits, indexFetched int
	// tunnelled counts the CONNECT tunnels opened, by origin: what went
	// through them the proxy did not see.
	tunnelled map[string]int
}

// newSourceProxy returns a proxy to the sources in allow
// ("http://host:port" or "https://host:port"), writing refusals and what
// the package cache did to log. cache may be nil (no caching); sourceTLS
// is how it checks https sources (nil: the host's CAs). It serves
// nothing until serve.
func newSourceProxy(allow []string, log io.Writer, cache *pkgcache.Cache, sourceTLS *tls.Config) *sourceProxy {
	p := &sourceProxy{
		allow:     map[string]bool{},
		log:       log,
		cache:     cache,
		dialer:    net.Dialer{Timeout: proxyDialTimeout, KeepAlive: 30 * time.Second},
		tunnels:   map[net.Conn]struct{}{},
		tunnelled: map[string]int{},
	}
	for _, h := range allow {
		if n, ok := normalOrigin(h); ok {
			p.allow[n] = true
		}
	}
	p.transport = &http.Transport{
		// Sources are dialled directly, from the worker host's network.
		Proxy:                 nil,
		DialContext:           p.dialer.DialContext,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   proxyDialTimeout,
		ResponseHeaderTimeout: 2 * time.Minute,
	}
	if sourceTLS != nil {
		p.transport.TLSClientConfig = sourceTLS.Clone()
	}
	p.forward = &httputil.ReverseProxy{
		// The request already holds the source's absolute URL.
		Rewrite:   func(*httputil.ProxyRequest) {},
		Transport: p.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.fail(w, http.StatusBadGateway, fmt.Sprintf("%s %s: %v", r.Method, r.URL, err))
		},
	}
	p.fetch = &httputil.ReverseProxy{
		Rewrite:        rewriteForCache,
		Transport:      p.transport,
		ModifyResponse: p.capture,
		ErrorHandler:   p.forward.ErrorHandler,
	}
	p.fetchIndex = &httputil.ReverseProxy{
		Rewrite:        rewriteForCache,
		Transport:      p.transport,
		ModifyResponse: p.captureIndex,
		ErrorHandler:   p.forward.ErrorHandler,
	}
	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       proxyIdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return p
}

// normalHostPort returns host:port with the host in lower case, or false
// when s is not a host and a port.
func normalHostPort(s string) (string, bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(host), port), true
}

// normalOrigin returns "http://host:port" or "https://host:port" with the
// host in lower case, or false when s is not such an origin.
func normalOrigin(s string) (string, bool) {
	scheme, hostPort, ok := strings.Cut(s, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return "", false
	}
	hp, ok := normalHostPort(hostPort)
	if !ok {
		return "", false
	}
	return scheme + "://" + hp, true
}

// allowed lists the allowed sources for messages.
func (p *sourceProxy) allowed() string {
	hosts := make([]string, 0, len(p.allow))
	for h := range p.allow {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	if len(hosts) == 0 {
		return "none"
	}
	return strings.Join(hosts, ", ")
}

// serve accepts connections on ln until Close.
func (p *sourceProxy) serve(ln net.Listener) {
	ln = newLimitListener(ln, proxyMaxConns)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.server.Serve(ln) // ends with ErrServerClosed
	}()
}

// Close stops the proxy: its listener, every connection and tunnel. It
// returns when nothing of the proxy runs any more.
func (p *sourceProxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.tunnels {
		c.Close()
	}
	p.mu.Unlock()
	err := p.server.Close()
	p.wg.Wait()
	p.transport.CloseIdleConnections()
	return err
}

// enter counts a request in; it is false once the proxy is closing.
func (p *sourceProxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *sourceProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.enter() {
		http.Error(w, "kiln: the step has ended", http.StatusServiceUnavailable)
		return
	}
	defer p.wg.Done()
	switch {
	case r.Method == http.MethodConnect:
		p.connect(w, r)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		p.fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: only GET and HEAD requests and CONNECT tunnels to the package sources are forwarded", r.Method, r.URL))
	case !r.URL.IsAbs() || r.URL.Host == "":
		p.fail(w, http.StatusBadRequest, fmt.Sprintf("%s %s: this is an HTTP proxy; ask it for absolute http:// URLs", r.Method, r.URL))
	case r.URL.Scheme != "http":
		p.fail(w, http.StatusBadRequest, fmt.Sprintf("%s %s: only http:// URLs are forwarded; https goes through CONNECT", r.Method, r.URL))
	case r.Header.Get("Upgrade") != "":
		p.fail(w, http.StatusBadRequest, fmt.Sprintf("%s %s: protocol upgrades are not forwarded", r.Method, r.URL))
	default:
		if u, ok := p.upgrade(r.URL); ok {
			r = r.Clone(r.Context())
			r.URL = u
		}
		origin, ok := executor.SourceHost(r.URL.String())
		if !ok || !p.allow[origin] {
			p.refuse(w, r.Method+" "+r.URL.String(), r.URL.Host, origin)
			return
		}
		if p.cache != nil && r.Method == http.MethodGet && isPackageFile(r.URL) {
			p.serveCached(w, r)
			return
		}
		if sum, ok := byHashDigest(r.URL); ok && p.cache != nil && r.Method == http.MethodGet {
			p.serveIndex(w, r, sum)
			return
		}
		p.forward.ServeHTTP(w, r)
	}
}

// upgrade returns the https URL of a plain request to an allowed https
// source, or false. A client that sends an https source's requests to
// the proxy as http://host:port/... (port given, as viaProxyURL writes
// them) lets the proxy see, cache and capture what it fetches; the proxy
// fetches it over https, verifying the source's certificate against the
// worker host's trusted CAs. A port that is also an allowed http source
// stays plain.
func (p *sourceProxy) upgrade(u *url.URL) (*url.URL, bool) {
	if u.Scheme != "http" || u.Port() == "" {
		return nil, false
	}
	hp, ok := normalHostPort(u.Host)
	if !ok || p.allow["http://"+hp] || !p.allow["https://"+hp] {
		return nil, false
	}
	up := *u
	up.Scheme = "https"
	return &up, true
}

// viaProxyURL is how a client that goes through the proxy names an https
// source so that the proxy sees its requests: http://host:port/... with
// the port given (443 when the URL has none), which the proxy upgrades
// back to https (see upgrade). Other URLs are returned as they are.
func viaProxyURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Hostname() == "" {
		return raw
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	u.Scheme = "http"
	u.Host = net.JoinHostPort(u.Hostname(), port)
	return u.String()
}

// connect opens a tunnel to an allowed source (https).
func (p *sourceProxy) connect(w http.ResponseWriter, r *http.Request) {
	hp, ok := normalHostPort(r.Host)
	if !ok {
		p.fail(w, http.StatusBadRequest, fmt.Sprintf("CONNECT %q: give host:port", r.Host))
		return
	}
	if !p.allow["https://"+hp] {
		p.refuse(w, "CONNECT "+r.Host, r.Host, "https://"+hp)
		return
	}
	up, err := p.dialer.DialContext(r.Context(), "tcp", hp)
	if err != nil {
		p.fail(w, http.StatusBadGateway, fmt.Sprintf("CONNECT %s: %v", hp, err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		p.fail(w, http.StatusInternalServerError, "CONNECT "+hp+": cannot take over the connection")
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(up, down) {
		return
	}
	defer p.untrack(up, down)
	p.mu.Lock()
	p.tunnelled["https://"+hp]++
	p.mu.Unlock()
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	// Whatever the client sent after its request goes first.
	if n := buf.Reader.Buffered(); n > 0 {
		b, _ := buf.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	t := &tunnel{}
	t.touch()
	done := make(chan struct{})
	go func() {
		t.pipe(up, down)
		close(done)
	}()
	t.pipe(down, up)
	// One side ended: end the other too.
	up.Close()
	down.Close()
	<-done
}

// track registers a tunnel's connections so that Close ends them; it is
// false (and closes them) when the proxy is already closing.
func (p *sourceProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.tunnels[c] = struct{}{}
	}
	return true
}

func (p *sourceProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.tunnels, c)
	}
}

// refuse answers a request for a host that is not a package source, and
// says so in the step's log.
func (p *sourceProxy) refuse(w http.ResponseWriter, what, host, hostPort string) {
	if hostPort == "" {
		hostPort = host
	}
	msg := fmt.Sprintf("refused %s: %s is not a package source of this build (allowed: %s). "+
		"Dependencies may come only from the target's mirror (buildroot.targets[].mirror or repositories[].baseurl) "+
		"and the release repositories (build.repositories): add the source there, "+
		"or set buildroot.dependency_network: host to give dependency installation the worker host's network",
		what, hostPort, p.allowed())
	p.fail(w, http.StatusForbidden, msg)
}

// fail answers with status and msg, and writes msg to the step's log.
func (p *sourceProxy) fail(w http.ResponseWriter, status int, msg string) {
	fmt.Fprintf(p.log, "kiln: proxy: %s\n", msg)
	http.Error(w, "kiln: "+msg, status)
}

// tunnel copies both ways between two connections until either side ends
// or neither carried anything for proxyIdleTimeout.
type tunnel struct{ last atomic.Int64 }

func (t *tunnel) touch() { t.last.Store(time.Now().UnixNano()) }

func (t *tunnel) idle() bool {
	return time.Since(time.Unix(0, t.last.Load())) >= proxyIdleTimeout
}

func (t *tunnel) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(time.Now().Add(proxyIdleTimeout))
		n, err := src.Read(buf)
		if n > 0 {
			t.touch()
			_ = dst.SetWriteDeadline(time.Now().Add(proxyIdleTimeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// A long download in the other direction keeps the tunnel.
			if ne, ok := err.(net.Error); ok && ne.Timeout() && !t.idle() {
				continue
			}
			return
		}
	}
}

// limitListener accepts at most n connections open at once.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// listenInNetns listens on addr (TCP) in the network namespace of process
// pid, bringing its loopback device up first if it is down. The listener
// stays in that namespace; everything else of the worker stays in its own.
func listenInNetns(pid uint32, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Only this thread changes namespace. If it cannot switch back,
		// it stays locked and ends with the goroutine.
		runtime.LockOSThread()
		ln, restored, err := listenInNetnsLocked(pid, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

func listenInNetnsLocked(pid uint32, addr string) (ln net.Listener, restored bool, err error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer own.Close()
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	theirs, err := os.Open(path)
	if err != nil {
		return nil, true, fmt.Errorf("open network namespace of the step: %w", err)
	}
	defer theirs.Close()
	if err := unix.Setns(int(theirs.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	defer func() {
		if serr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); serr != nil {
			restored = false
			if ln != nil {
				ln.Close()
				ln = nil
			}
			err = errors.Join(err, fmt.Errorf("return to the worker's network namespace: %w", serr))
			return
		}
		restored = true
	}()
	if err := loopbackUp(); err != nil {
		return nil, false, err
	}
	ln, err = net.Listen("tcp4", addr)
	if err != nil {
		return nil, false, fmt.Errorf("listen on %s in the step's network namespace: %w", addr, err)
	}
	return ln, false, nil
}

// loopbackUp brings the current network namespace's "lo" up (runc does for
// a new namespace; this makes sure).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}
	return nil
}

package gerrit

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

// freezeProxy forwards TCP to a backend and can silently stop forwarding
// on the connections it has, as a dead NAT entry or firewall does.
type freezeProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	frozen  map[net.Conn]bool
	done    chan struct{}
}

func newFreezeProxy(t *testing.T, backend string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, backend: backend, frozen: map[net.Conn]bool{}, done: make(chan struct{})}
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for c := range p.frozen {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.frozen[c] = false
			p.mu.Unlock()
			go p.pipe(c, b, c)
			go p.pipe(c, c, b)
		}
	}()
	return p
}

func (p *freezeProxy) pipe(key net.Conn, dst io.WriteCloser, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		frozen := p.frozen[key]
		p.mu.Unlock()
		if frozen {
			<-p.done // the bytes vanish, nothing is closed, nobody is told
			dst.Close()
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				dst.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// freeze stops forwarding on every current connection without closing it.
func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.frozen {
		p.frozen[c] = true
	}
}

// TestKeepaliveDetectsSilentDrop: the path to Gerrit goes silent without a
// FIN or RST. Keepalives notice, the stream reconnects, and the merge that
// happened in the silence is built.
func TestKeepaliveDetectsSilentDrop(t *testing.T) {
	t.Parallel()
	var proxy *freezeProxy
	h := newHarness(t, gerrittest.Options{}, func(c *Config, srv *gerrittest.Server) {
		proxy = newFreezeProxy(t, srv.Addr())
		c.Servers[0].SSH = proxy.ln.Addr().String()
		c.Keepalive = 200 * time.Millisecond
	})
	base := h.commit(nginx, "9.0", "base")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", "0000000000000000000000000000000000000000", base))
	h.sync()
	proxy.freeze()
	merged := h.commit(nginx, "9.0", "merged in the silence")
	h.srv.Send(changeMerged(nginx, "9.0", 90, 1, merged, merged)) // lost on the frozen path
	// Generous: the reconnect waits for keepalives and a backoff, and a
	// loaded machine stretches both.
	got := h.builds.wait(t, 1, time.Minute)
	if got[0].Sources[0].Commit != merged || !got[0].Publish {
		t.Fatalf("build = %+v, want release build of %s", got[0], merged)
	}
	if n := h.counter("kiln_gerrit_stream_connects_total"); n < 2 {
		t.Fatalf("stream connected %v times, want a reconnect", n)
	}
}

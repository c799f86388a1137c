// Package refusal logs what a daemon refuses at its door: TLS handshakes
// that fail (an unknown CA, a pinned certificate that does not match, a
// client without a certificate) and calls refused as Unauthenticated or
// PermissionDenied (a bad token, a certificate role outside its RPCs).
// Each line names the peer's address and the reason. Lines are
// rate-limited per peer host, so a client retrying in a loop costs a line
// per interval and a count of what was left out, not a flood. A peer that
// connects and closes without a word (a port probe, a TCP health check)
// is not a refusal and is not logged.
package refusal

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Interval is how often one peer host gets a line by default.
const Interval = 10 * time.Second

// maxPeers bounds the table of peers seen, so that a scan from many
// addresses cannot grow it without limit.
const maxPeers = 4096

// Log writes refusals, at most one line per peer host and kind of
// refusal per Interval.
type Log struct {
	log      hclog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	peers map[string]*peerState
}

type peerState struct {
	last       time.Time
	suppressed int
}

// New returns a Log writing to log at warn level.
func New(log hclog.Logger) *Log {
	return &Log{log: log, interval: Interval, now: time.Now, peers: map[string]*peerState{}}
}

// Refused records one refusal of addr for reason; what says what was
// refused ("TLS handshake", or the gRPC method).
func (l *Log) Refused(addr net.Addr, what, reason string) {
	host := "unknown"
	full := "unknown"
	if addr != nil {
		full = addr.String()
		host = full
		if h, _, err := net.SplitHostPort(full); err == nil {
			host = h
		}
	}
	now := l.now()
	key := host + " " + what
	l.mu.Lock()
	p := l.peers[key]
	if p == nil {
		if len(l.peers) >= maxPeers {
			for k, v := range l.peers {
				if now.Sub(v.last) >= l.interval {
					delete(l.peers, k)
				}
			}
		}
		p = &peerState{}
		if len(l.peers) < maxPeers {
			l.peers[key] = p
		}
	} else if now.Sub(p.last) < l.interval {
		p.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := p.suppressed
	p.last, p.suppressed = now, 0
	l.mu.Unlock()
	args := []any{"peer", full, "refused", what, "reason", reason}
	if suppressed > 0 {
		args = append(args, "more_refusals_not_logged", suppressed)
	}
	l.log.Warn("refused a connection", args...)
}

// Credentials wraps server transport credentials so that every failed
// handshake is logged.
func (l *Log) Credentials(c credentials.TransportCredentials) credentials.TransportCredentials {
	return &loggingCreds{TransportCredentials: c, log: l}
}

type loggingCreds struct {
	credentials.TransportCredentials
	log *Log
}

func (c *loggingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		c.log.Refused(conn.RemoteAddr(), "TLS handshake", err.Error())
	}
	return out, info, err
}

func (c *loggingCreds) Clone() credentials.TransportCredentials {
	return &loggingCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

// Unary logs calls that end Unauthenticated or PermissionDenied. Put it
// first in the chain so that it sees what the auth interceptors refuse.
func (l *Log) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	l.check(ctx, info.FullMethod, err)
	return resp, err
}

// Stream is Unary for streaming calls.
func (l *Log) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	l.check(ss.Context(), info.FullMethod, err)
	return err
}

func (l *Log) check(ctx context.Context, method string, err error) {
	if err == nil {
		return
	}
	s, _ := status.FromError(err)
	if s.Code() != codes.Unauthenticated && s.Code() != codes.PermissionDenied {
		return
	}
	var addr net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr
	}
	l.Refused(addr, method, s.Code().String()+": "+s.Message())
}

// Package leaderconn connects workers and clients to whichever of several
// coordinators leads. Coordinators sharing a PostgreSQL database make one
// leader; the others are standbys that answer every call UNAVAILABLE with
// reason STANDBY, naming the leader when they know it (grpcerr.Standby).
// A Conn holds a connection to each address given and sends calls to the
// one it last found leading. When that one answers UNAVAILABLE (a standby,
// or gone) it moves on: to the leader a standby named when that is one of
// its addresses, else to the next address. A unary call is then tried on
// the others at once; a stream fails as before and the caller's retry
// finds the new one.
package leaderconn

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/grpcerr"
)

// Split reads a list of addresses separated by commas (spaces allowed).
func Split(list string) []string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Conn is a grpc.ClientConnInterface over several coordinators. It is safe
// for concurrent use.
type Conn struct {
	addrs []string
	conns []*grpc.ClientConn
	cur   atomic.Int64
}

// New makes a connection to each address with opts (which every one
// gets; nothing is dialled until a call).
func New(addrs []string, opts ...grpc.DialOption) (*Conn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no coordinator address: give one, or several separated by commas")
	}
	c := &Conn{addrs: addrs}
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("connect to coordinator %s: %w", a, err)
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

// Close closes every connection.
func (c *Conn) Close() error {
	var first error
	for _, cc := range c.conns {
		if err := cc.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Current is the address calls go to now.
func (c *Conn) Current() string { return c.addrs[c.cur.Load()] }

// Invoke sends a unary call to the current coordinator and, while one
// answers UNAVAILABLE, to each of the others once.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	var err error
	for range c.conns {
		i := c.cur.Load()
		err = c.conns[i].Invoke(ctx, method, args, reply, opts...)
		if !c.moveOn(i, err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// NewStream opens a stream on the current coordinator; one that fails
// UNAVAILABLE moves the Conn on for the caller's next try.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	i := c.cur.Load()
	s, err := c.conns[i].NewStream(ctx, desc, method, opts...)
	if err != nil {
		c.moveOn(i, err)
		return nil, err
	}
	return &stream{ClientStream: s, c: c, i: i}, nil
}

type stream struct {
	grpc.ClientStream
	c *Conn
	i int64
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.c.moveOn(s.i, err)
	return err
}

// moveOn moves from coordinator i, when err says it does not lead or is
// gone, and reports whether it did.
func (c *Conn) moveOn(i int64, err error) bool {
	if len(c.conns) == 1 || status.Code(err) != codes.Unavailable {
		return false
	}
	next := (i + 1) % int64(len(c.conns))
	if leader := grpcerr.LeaderOf(err); leader != "" {
		for k, a := range c.addrs {
			if a == leader && int64(k) != i {
				next = int64(k)
			}
		}
	}
	c.cur.CompareAndSwap(i, next)
	return true
}

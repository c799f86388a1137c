package refusal

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func newTestLog(buf *bytes.Buffer, now *time.Time) *Log {
	l := New(hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Warn}))
	l.now = func() time.Time { return *now }
	return l
}

func TestRefusalsAreRateLimitedPerHost(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newTestLog(&buf, &now)
	a := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5000}
	b := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 8), Port: 5000}
	for i := 0; i < 50; i++ {
		a.Port = 5000 + i
		l.Refused(a, "TLS handshake", "x509: certificate signed by unknown authority")
	}
	l.Refused(b, "/kiln.worker.v1.WorkerService/Register", "Unauthenticated: bad token")
	// Another kind of refusal from the first host has a line of its own.
	l.Refused(a, "/kiln.worker.v1.WorkerService/Register", "Unauthenticated: bad token")
	if n := strings.Count(buf.String(), "refused a connection"); n != 3 {
		t.Fatalf("%d lines for 52 refusals of 2 kinds from 2 hosts, want 3:\n%s", n, buf.String())
	}
	for _, want := range []string{"peer=192.0.2.7:5000", "unknown authority", "peer=192.0.2.8:5000", "bad token"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	now = now.Add(Interval)
	l.Refused(a, "TLS handshake", "again")
	if !strings.Contains(buf.String(), "more_refusals_not_logged=49") {
		t.Fatalf("the next line does not count what was left out:\n%s", buf.String())
	}
}

func TestInterceptorLogsOnlyRefusals(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newTestLog(&buf, &now)
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 1}})
	info := &grpc.UnaryServerInfo{FullMethod: "/svc/M"}
	for _, err := range []error{nil, status.Error(codes.NotFound, "no job 7"), status.Error(codes.InvalidArgument, "bad")} {
		_, _ = l.Unary(ctx, nil, info, func(context.Context, any) (any, error) { return nil, err })
	}
	if buf.Len() != 0 {
		t.Fatalf("logged a call that was not refused:\n%s", buf.String())
	}
	_, _ = l.Unary(ctx, nil, info, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.PermissionDenied, "certificate \"ci\" has role client")
	})
	if !strings.Contains(buf.String(), "peer=198.51.100.1:1") || !strings.Contains(buf.String(), "refused=/svc/M") {
		t.Fatalf("refusal not logged with peer and method:\n%s", buf.String())
	}
}

func TestPeerTableIsBounded(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newTestLog(&buf, &now)
	for i := 0; i < maxPeers*2; i++ {
		l.Refused(&net.TCPAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)), Port: 1}, "TLS handshake", "x")
	}
	if len(l.peers) > maxPeers {
		t.Fatalf("%d peers kept, bound is %d", len(l.peers), maxPeers)
	}
}

// A peer that closes at once is a probe, not a refusal; one that speaks
// something other than TLS is refused and logged.
func TestHandshakeRefusals(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newTestLog(&buf, &now)
	creds := l.Credentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12}))
	for _, client := range []func(net.Conn){
		func(c net.Conn) { c.Close() },
		func(c net.Conn) {
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		},
	} {
		s, c := net.Pipe()
		go client(c)
		if _, _, err := creds.ServerHandshake(s); err == nil {
			t.Fatal("handshake without TLS succeeded")
		}
		s.Close()
	}
	if n := strings.Count(buf.String(), "refused a connection"); n != 1 || !strings.Contains(buf.String(), `refused="TLS handshake"`) {
		t.Fatalf("want one line for the non-TLS peer and none for the probe, got:\n%s", buf.String())
	}
}

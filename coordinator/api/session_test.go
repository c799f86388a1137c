package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/protocol"

	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// asWorker is a request context as the TLS transport makes it for a
// verified worker certificate named name.
func asWorker(name string) context.Context {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: name}, URIs: []*url.URL{{Scheme: "kiln", Opaque: "role:worker"}}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}})
}

// A worker's calls are bound to its certificate's name, not only to a
// session id: worker-2 cannot heartbeat, pull, complete or say goodbye on
// worker-1's session.
func TestSessionIsBoundToItsWorkersCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Minute}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	s := NewWorkerServer(f, nil, time.Second)
	reg, err := s.Register(asWorker("worker-1"), &wpb.RegisterRequest{Name: "worker-1", Slots: 1, ProtocolVersion: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	sess := reg.GetSessionId()
	denied := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"worker-2" may not act on worker "worker-1"'s session`) {
			t.Errorf("%s on another worker's session: %v, want PermissionDenied naming both", what, err)
		}
	}
	other := asWorker("worker-2")
	_, err = s.Heartbeat(other, &wpb.HeartbeatRequest{SessionId: sess})
	denied("heartbeat", err)
	_, err = s.PullJob(other, &wpb.PullJobRequest{SessionId: sess})
	denied("pull", err)
	_, err = s.CompleteJob(other, &wpb.CompleteJobRequest{SessionId: sess, JobId: "1", Attempt: 1})
	denied("complete", err)
	_, err = s.Goodbye(other, &wpb.GoodbyeRequest{SessionId: sess})
	denied("goodbye", err)
	// The session's own worker goes on.
	if _, err := s.Heartbeat(asWorker("worker-1"), &wpb.HeartbeatRequest{SessionId: sess}); err != nil {
		t.Fatalf("worker-1's own heartbeat: %v", err)
	}
}

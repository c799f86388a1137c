package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/protocol"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// The worker tells an unknown session, a bad token and a stale attempt
// apart by their kinds, never by their messages.
func TestWorkerFailuresHaveDistinctKinds(t *testing.T) {
	t.Parallel()
	s := NewWorkerServer(nil, map[string]string{"w1": "right"}, 0)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer wrong"))
	cases := []struct {
		err  error
		code codes.Code
		kind grpcerr.Kind
	}{
		{toStatus(fmt.Errorf("heartbeat: %w", scheduler.ErrUnknownSession)), codes.Unauthenticated, grpcerr.UnknownSession},
		{toStatus(s.checkToken(ctx, "w1")), codes.Unauthenticated, grpcerr.BadToken},
		{toStatus(s.checkToken(context.Background(), "w2")), codes.Unauthenticated, grpcerr.BadToken},
		{toStatus(fmt.Errorf("job 7 attempt 2: %w", scheduler.ErrStale)), codes.FailedPrecondition, grpcerr.StaleAttempt},
		{toStatus(fmt.Errorf("%w: release %q", job.ErrRefused, "x")), codes.InvalidArgument, grpcerr.BadRequest},
		{toStatus(fmt.Errorf("job 9: %w", fleet.ErrNotFound)), codes.NotFound, grpcerr.NotFound},
		{toStatus(scheduler.ErrNameInUse), codes.AlreadyExists, grpcerr.Conflict},
	}
	for _, c := range cases {
		back := status.ErrorProto(status.Convert(c.err).Proto())
		if status.Code(back) != c.code || grpcerr.Classify(back) != c.kind {
			t.Errorf("%v: %v (%v), want %v (%v)", c.err, status.Code(back), grpcerr.Classify(back), c.code, c.kind)
		}
	}
	if s.checkToken(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer right")), "w1") != nil {
		t.Error("the right token was refused")
	}
}

// A worker of another protocol version is refused at register with a
// message naming both versions and which side to upgrade.
func TestRegisterRefusesOtherProtocolVersions(t *testing.T) {
	t.Parallel()
	s := NewWorkerServer(nil, nil, 0)
	for _, c := range []struct {
		v    uint32
		what string
	}{
		{0, "upgrade the worker"},
		{protocol.Version + 1, "upgrade the coordinator"},
	} {
		_, err := s.Register(context.Background(), &wpb.RegisterRequest{Name: "w1", Slots: 1, ProtocolVersion: c.v})
		back := status.ErrorProto(status.Convert(err).Proto())
		msg := grpcerr.Message(back)
		if grpcerr.Classify(back) != grpcerr.ProtocolVersion || status.Code(back) != codes.FailedPrecondition {
			t.Fatalf("version %d: %v, want a protocol version refusal", c.v, err)
		}
		for _, want := range []string{`worker "w1"`, fmt.Sprintf("worker speaks protocol version %d", c.v), fmt.Sprintf("coordinator speaks %d", protocol.Version), c.what} {
			if !strings.Contains(msg, want) {
				t.Errorf("version %d: %q does not say %q", c.v, msg, want)
			}
		}
	}
}

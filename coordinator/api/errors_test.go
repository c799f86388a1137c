package api

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/internal/grpcerr"
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

package grpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every kind survives the trip server → wire → client, and the kinds
// that share a code stay apart.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for k := range wires {
		if k == OK {
			continue
		}
		err := New(k, "job %s: %s", "j1", "went wrong")
		// What the client sees: a status rebuilt from the wire form.
		st, _ := status.FromError(err)
		back := status.ErrorProto(st.Proto())
		if got := Classify(back); got != k {
			t.Errorf("%v: Classify = %v", k, got)
		}
		if st.Code() != k.Code() {
			t.Errorf("%v: code %v, want %v", k, st.Code(), k.Code())
		}
		if Message(back) != "job j1: went wrong" {
			t.Errorf("%v: message %q", k, Message(back))
		}
	}
}

func TestDistinctReasons(t *testing.T) {
	t.Parallel()
	session := status.ErrorProto(status.Convert(New(UnknownSession, "unknown worker session")).Proto())
	token := status.ErrorProto(status.Convert(New(BadToken, "worker %q: wrong token", "w1")).Proto())
	plain := status.Error(codes.Unauthenticated, "wrong token")
	if status.Code(session) != codes.Unauthenticated || status.Code(token) != codes.Unauthenticated {
		t.Fatalf("codes %v %v, want both Unauthenticated", status.Code(session), status.Code(token))
	}
	if Classify(session) != UnknownSession || Classify(token) != BadToken {
		t.Errorf("Classify = %v, %v; want unknown session, bad token", Classify(session), Classify(token))
	}
	// A message that says "token" is not a reason.
	if Classify(plain) != Unauthenticated {
		t.Errorf("plain Unauthenticated classified %v", Classify(plain))
	}
	if !Classify(session).Retryable() || Classify(token).Retryable() {
		t.Error("an unknown session must be retryable (register again), a bad token not")
	}
	stale := New(StaleAttempt, "job j1 attempt 2: stale")
	if Classify(stale) != StaleAttempt || Classify(status.Error(codes.FailedPrecondition, "x")) != Precondition {
		t.Error("stale attempt and a plain failed precondition must differ")
	}
}

func TestClassifyCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err         error
		want        Kind
		retry, user bool
	}{
		{nil, OK, false, false},
		{errors.New("local"), Unknown, true, false},
		{status.Error(codes.Unavailable, ""), Unavailable, true, false},
		{status.Error(codes.Aborted, ""), Unavailable, true, false},
		{status.Error(codes.DeadlineExceeded, ""), Deadline, true, false},
		{status.Error(codes.ResourceExhausted, ""), Exhausted, true, false},
		{status.Error(codes.Internal, ""), Internal, true, false},
		{status.Error(codes.Unknown, ""), Unknown, true, false},
		{status.Error(codes.InvalidArgument, ""), BadRequest, false, true},
		{status.Error(codes.NotFound, ""), NotFound, false, true},
		{status.Error(codes.AlreadyExists, ""), Conflict, false, true},
		{status.Error(codes.FailedPrecondition, ""), Precondition, false, true},
		{status.Error(codes.PermissionDenied, ""), Denied, false, false},
		{status.Error(codes.OutOfRange, ""), TooLarge, false, false},
		{status.Error(codes.Canceled, ""), Canceled, false, false},
		{status.Error(codes.Unimplemented, ""), Unimplemented, false, false},
		{fmt.Errorf("wrapped: %w", New(BadToken, "t")), BadToken, false, false},
	}
	for _, c := range cases {
		k := Classify(c.err)
		if k != c.want || k.Retryable() != c.retry || k.CallerFault() != c.user {
			t.Errorf("%v: %v retry=%v user=%v, want %v retry=%v user=%v", c.err, k, k.Retryable(), k.CallerFault(), c.want, c.retry, c.user)
		}
	}
}

var errMine = errors.New("mine")

func TestStatus(t *testing.T) {
	t.Parallel()
	kindOf := func(err error) Kind {
		if errors.Is(err, errMine) {
			return NotFound
		}
		return Unknown
	}
	cases := []struct {
		err  error
		want codes.Code
		kind Kind
	}{
		{fmt.Errorf("job x: %w", errMine), codes.NotFound, NotFound},
		{fmt.Errorf("pull: %w", New(StaleAttempt, "stale")), codes.FailedPrecondition, StaleAttempt},
		{fmt.Errorf("read: %w", context.Canceled), codes.Canceled, Canceled},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, Deadline},
		{status.Error(codes.Unavailable, "gone"), codes.Unavailable, Unavailable},
		{errors.New("disk on fire"), codes.Internal, Internal},
	}
	for _, c := range cases {
		got := Status(c.err, kindOf)
		if status.Code(got) != c.want || Classify(got) != c.kind {
			t.Errorf("Status(%v) = %v (%v), want %v (%v)", c.err, status.Code(got), Classify(got), c.want, c.kind)
		}
		if Message(got) != c.err.Error() && status.Code(c.err) == codes.Unknown {
			t.Errorf("Status(%v) message %q", c.err, Message(got))
		}
	}
	if Status(nil, kindOf) != nil {
		t.Error("Status(nil) != nil")
	}
}

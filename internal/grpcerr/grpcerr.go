// Package grpcerr is the one place where Kiln's gRPC errors are made and
// read. Servers say what kind of failure a call met (New, Status); clients
// ask what a failed call means and whether trying again can help
// (Classify, Kind.Retryable, Kind.CallerFault). A kind is a gRPC code and,
// for the failures a caller must tell apart within one code, a reason in a
// google.rpc.ErrorInfo detail of domain "kiln": no caller searches a
// message.
//
// The kinds with a reason, as the .proto files document them:
//
//	UnknownSession   UNAUTHENTICATED     reason UNKNOWN_SESSION: register again
//	BadToken         UNAUTHENTICATED     reason BAD_TOKEN: the worker's token is wrong; fix the config
//	StaleAttempt     FAILED_PRECONDITION reason STALE_ATTEMPT: the attempt is no longer the worker's; drop it
//	ProtocolVersion  FAILED_PRECONDITION reason PROTOCOL_VERSION: worker and coordinator speak different protocol versions
//	Standby          UNAVAILABLE         reason STANDBY: a standby coordinator; metadata "leader" is the leader's address when known
package grpcerr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of Kiln's reasons.
const Domain = "kiln"

// Kind is what kind of failure a call met.
type Kind int

// The kinds. Their order has no meaning.
const (
	// OK: no error.
	OK Kind = iota
	// Unknown: a failure the server did not classify, or an error that is
	// not a gRPC status at all (gRPC itself reads both as UNKNOWN).
	Unknown
	// Internal: the server failed inside (INTERNAL).
	Internal
	// Unavailable: the server cannot be reached or dropped the call
	// (UNAVAILABLE, ABORTED).
	Unavailable
	// Deadline: the call's deadline passed (DEADLINE_EXCEEDED).
	Deadline
	// Canceled: the call was canceled (CANCELED).
	Canceled
	// Exhausted: the server is out of a resource, e.g. disk space
	// (RESOURCE_EXHAUSTED).
	Exhausted
	// BadRequest: the request itself is wrong (INVALID_ARGUMENT).
	BadRequest
	// NotFound: the request names something the server does not have
	// (NOT_FOUND).
	NotFound
	// Conflict: the request collides with what the server has
	// (ALREADY_EXISTS).
	Conflict
	// Precondition: the server cannot do it in its state or as it is
	// configured (FAILED_PRECONDITION).
	Precondition
	// TooLarge: over a size limit (OUT_OF_RANGE).
	TooLarge
	// Denied: the caller may not do this (PERMISSION_DENIED).
	Denied
	// Unauthenticated: the caller did not prove who it is
	// (UNAUTHENTICATED without a reason).
	Unauthenticated
	// Unimplemented: the server does not have this call (UNIMPLEMENTED).
	Unimplemented
	// UnknownSession: the worker's session expired or never existed
	// (UNAUTHENTICATED, reason UNKNOWN_SESSION); register again.
	UnknownSession
	// BadToken: the worker's bearer token is missing or wrong
	// (UNAUTHENTICATED, reason BAD_TOKEN); trying again cannot help.
	BadToken
	// StaleAttempt: the call names an attempt the coordinator no longer
	// assigns to this worker (FAILED_PRECONDITION, reason STALE_ATTEMPT).
	StaleAttempt
	// ProtocolVersion: the worker speaks a protocol version the
	// coordinator does not (FAILED_PRECONDITION, reason PROTOCOL_VERSION).
	ProtocolVersion
	// Standby: the coordinator called is a standby, not the leader
	// (UNAVAILABLE, reason STANDBY); the leader's address, when known, is
	// LeaderOf the error. Ask another coordinator.
	Standby
)

var names = map[Kind]string{
	OK: "ok", Unknown: "unknown", Internal: "internal", Unavailable: "unavailable", Deadline: "deadline",
	Canceled: "canceled", Exhausted: "exhausted", BadRequest: "bad request", NotFound: "not found",
	Conflict: "conflict", Precondition: "precondition", TooLarge: "too large", Denied: "denied",
	Unauthenticated: "unauthenticated", Unimplemented: "unimplemented", UnknownSession: "unknown session",
	BadToken: "bad token", StaleAttempt: "stale attempt", ProtocolVersion: "protocol version", Standby: "standby",
}

func (k Kind) String() string {
	if n, ok := names[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// wire is how a kind travels: its code and, where one code holds several
// kinds, its reason.
type wire struct {
	code   codes.Code
	reason string
}

var wires = map[Kind]wire{
	OK:              {codes.OK, ""},
	Unknown:         {codes.Unknown, ""},
	Internal:        {codes.Internal, ""},
	Unavailable:     {codes.Unavailable, ""},
	Deadline:        {codes.DeadlineExceeded, ""},
	Canceled:        {codes.Canceled, ""},
	Exhausted:       {codes.ResourceExhausted, ""},
	BadRequest:      {codes.InvalidArgument, ""},
	NotFound:        {codes.NotFound, ""},
	Conflict:        {codes.AlreadyExists, ""},
	Precondition:    {codes.FailedPrecondition, ""},
	TooLarge:        {codes.OutOfRange, ""},
	Denied:          {codes.PermissionDenied, ""},
	Unauthenticated: {codes.Unauthenticated, ""},
	Unimplemented:   {codes.Unimplemented, ""},
	UnknownSession:  {codes.Unauthenticated, "UNKNOWN_SESSION"},
	BadToken:        {codes.Unauthenticated, "BAD_TOKEN"},
	StaleAttempt:    {codes.FailedPrecondition, "STALE_ATTEMPT"},
	ProtocolVersion: {codes.FailedPrecondition, "PROTOCOL_VERSION"},
	Standby:         {codes.Unavailable, "STANDBY"},
}

// Code is the gRPC code a kind travels as.
func (k Kind) Code() codes.Code {
	if w, ok := wires[k]; ok {
		return w.code
	}
	return codes.Unknown
}

// Retryable reports whether the same call may succeed later: the server
// was unreachable, overloaded, failed inside or did not say, or (for a
// worker) the session is to be made again first. Everything else needs a
// change by the caller or an operator.
func (k Kind) Retryable() bool {
	switch k {
	case Unknown, Internal, Unavailable, Deadline, Exhausted, Unauthenticated, UnknownSession, Standby:
		return true
	}
	return false
}

// CallerFault reports whether the request itself is what is wrong: a bad
// argument, an unknown id, a wrong state, a collision. A person or a
// pipeline fixes the request; retrying it unchanged cannot help.
func (k Kind) CallerFault() bool {
	switch k {
	case BadRequest, NotFound, Conflict, Precondition:
		return true
	}
	return false
}

// Error is a failure of a known kind, made by a server. It is a gRPC
// status (it has GRPCStatus), so a handler or an interceptor returns it
// as it is.
type Error struct {
	Kind Kind
	Err  error
}

// New makes an Error of kind k with a message made as fmt.Errorf makes it
// (so %w wraps).
func New(k Kind, format string, a ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, a...)}
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus is the status the error travels as.
func (e *Error) GRPCStatus() *status.Status {
	return statusOf(e.Kind, e.Err.Error())
}

func statusOf(k Kind, msg string) *status.Status {
	w, ok := wires[k]
	if !ok {
		w = wire{code: codes.Unknown}
	}
	st := status.New(w.code, msg)
	if w.reason == "" {
		return st
	}
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: w.reason, Domain: Domain})
	if err != nil {
		return st
	}
	return withInfo
}

// StandbyStatus is a standby coordinator's answer: UNAVAILABLE, reason
// STANDBY, naming the leader's address when known ("" when not).
func StandbyStatus(leader string) *status.Status {
	msg := "this coordinator is a standby and no coordinator leads yet: try another"
	if leader != "" {
		msg = "this coordinator is a standby: the leader is " + leader
	}
	st := status.New(codes.Unavailable, msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: wires[Standby].reason, Domain: Domain, Metadata: map[string]string{"leader": leader}})
	if err != nil {
		return st
	}
	return withInfo
}

// LeaderOf is the leader's address a standby's answer names, or "".
func LeaderOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain && info.GetReason() == wires[Standby].reason {
			return info.GetMetadata()["leader"]
		}
	}
	return ""
}

// Status turns a handler's error into the status it answers with: nil for
// nil; an Error (also wrapped) by its kind; a context's end as Canceled or
// Deadline; an error that already is a gRPC status as it is; any other by
// the kind kindOf gives it (a service's own errors), Internal when kindOf
// is nil or gives Unknown. Each service calls it from its one mapping
// function.
func Status(err error, kindOf func(error) Kind) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return statusOf(e.Kind, err.Error()).Err()
	}
	if kindOf != nil {
		if k := kindOf(err); k != Unknown && k != OK {
			return statusOf(k, err.Error()).Err()
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return statusOf(Canceled, err.Error()).Err()
	case errors.Is(err, context.DeadlineExceeded):
		return statusOf(Deadline, err.Error()).Err()
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st.Err()
	}
	return statusOf(Internal, err.Error()).Err()
}

// Classify says what kind of failure err is, as a client reads it: by its
// Kiln reason when it has one, otherwise by its code.
func Classify(err error) Kind {
	if err == nil {
		return OK
	}
	st, ok := status.FromError(err)
	if !ok {
		return Unknown
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != Domain {
			continue
		}
		for k, w := range wires {
			if w.reason != "" && w.reason == info.GetReason() && w.code == st.Code() {
				return k
			}
		}
	}
	switch st.Code() {
	case codes.OK:
		return OK
	case codes.Internal, codes.DataLoss:
		return Internal
	case codes.Unavailable, codes.Aborted:
		return Unavailable
	case codes.DeadlineExceeded:
		return Deadline
	case codes.Canceled:
		return Canceled
	case codes.ResourceExhausted:
		return Exhausted
	case codes.InvalidArgument:
		return BadRequest
	case codes.NotFound:
		return NotFound
	case codes.AlreadyExists:
		return Conflict
	case codes.FailedPrecondition:
		return Precondition
	case codes.OutOfRange:
		return TooLarge
	case codes.PermissionDenied:
		return Denied
	case codes.Unauthenticated:
		return Unauthenticated
	case codes.Unimplemented:
		return Unimplemented
	}
	return Unknown
}

// Message is the message of err without gRPC's "rpc error: code = …"
// prefix, for people.
func Message(err error) string {
	if err == nil {
		return ""
	}
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

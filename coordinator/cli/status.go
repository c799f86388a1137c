package cli

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type rpcStatus struct {
	invalid bool
	msg     string
}

// grpcStatus classifies a call's error: the one place the CLI maps gRPC
// codes. Errors about the request itself (bad argument, unknown id, wrong
// state) are the user's to fix; the rest are infrastructure.
func grpcStatus(err error) (rpcStatus, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return rpcStatus{}, false
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
		return rpcStatus{invalid: true, msg: st.Message()}, true
	}
	return rpcStatus{msg: st.Message()}, true
}

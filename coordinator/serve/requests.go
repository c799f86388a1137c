package serve

import (
	"bytes"
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/internal/grpcerr"
)

// requestOptions are the gRPC server options of every service: a request
// with a string that is not valid UTF-8 is refused as InvalidArgument.
// gRPC answers Internal for any request its codec cannot decode, so the
// codec marks such a request instead of failing, and an interceptor
// refuses what is marked before any handler sees it.
func requestOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(utf8Codec{base: encoding.GetCodecV2(protoenc.Name)}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := refuseMarked(req); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, checkedStream{ss})
		}),
	}
}

// badUTF8Field is the field number of the mark: the highest there is, so
// that it clashes with no field of the protocol.
const badUTF8Field = protowire.MaxValidNumber

var badUTF8Mark = protowire.AppendBytes(protowire.AppendTag(nil, badUTF8Field, protowire.BytesType), []byte("invalid UTF-8"))

type utf8Codec struct{ base encoding.CodecV2 }

func (c utf8Codec) Name() string { return c.base.Name() }

func (c utf8Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	// protobuf-go has no error value for it; its message names it.
	if err == nil || !ok || !strings.Contains(err.Error(), "invalid UTF-8") {
		return err
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown(badUTF8Mark)
	return nil
}

// refuseMarked returns InvalidArgument for a request the codec marked.
func refuseMarked(req any) error {
	m, ok := req.(proto.Message)
	if ok && bytes.Equal(m.ProtoReflect().GetUnknown(), badUTF8Mark) {
		return grpcerr.New(grpcerr.BadRequest, "the request has a string that is not valid UTF-8: send text as UTF-8")
	}
	return nil
}

// checkedStream refuses a marked message of a client stream.
type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return refuseMarked(m)
}

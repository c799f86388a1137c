package serve

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/protocol"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// rawCodec sends bytes as they are, so a test can send what no protobuf
// library would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return nil }
func (rawCodec) Name() string                                { return "proto" }

// A request with a string that is not valid UTF-8 is the client's error:
// InvalidArgument, saying so, not Internal.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(requestOptions()...)
	wpb.RegisterWorkerServiceServer(srv, api.NewWorkerServer(f, nil, time.Second))
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// RegisterRequest{name: "\xff\xfe", slots: 1}
	req := []byte{0x0a, 0x02, 0xff, 0xfe, 0x18, 0x01}
	err = conn.Invoke(ctx, wpb.WorkerService_Register_FullMethodName, req, new([]byte), grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Fatalf("register with a name that is not UTF-8: %v, want InvalidArgument", err)
	}
	// A valid request still works through the same server:
	// RegisterRequest{name: "w1", slots: 1, protocol_version: 1}.
	if protocol.Version != 1 {
		t.Fatalf("protocol version %d: update the raw request", protocol.Version)
	}
	ok := []byte{0x0a, 0x02, 'w', '1', 0x18, 0x01, 0x38, 0x01}
	if err := conn.Invoke(ctx, wpb.WorkerService_Register_FullMethodName, ok, new([]byte), grpc.ForceCodecV2(rawCodec{})); err != nil {
		t.Fatalf("valid register: %v", err)
	}
}

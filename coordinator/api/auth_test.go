package api

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// fakeClient answers GetJob and StreamJobLog with a job whose environment
// holds a secret, sharing the environment's slice between calls as the
// real conversion shares the scheduler's; every other call is
// Unimplemented, which says that the interceptor let it through.
type fakeClient struct {
	pb.UnimplementedCoordinatorServiceServer
	env []string
}

func (f fakeClient) job() *pb.Job { return &pb.Job{Id: "1", Spec: &pb.JobSpec{Env: f.env}} }

func (f fakeClient) GetJob(context.Context, *pb.GetJobRequest) (*pb.GetJobResponse, error) {
	return &pb.GetJobResponse{Job: f.job()}, nil
}

func (f fakeClient) StreamJobLog(_ *pb.StreamJobLogRequest, s grpc.ServerStreamingServer[pb.StreamJobLogResponse]) error {
	return s.Send(&pb.StreamJobLogResponse{Job: f.job()})
}

// authServer serves the three services behind the interceptors over real
// loopback TLS and returns a dial function per certificate name.
func authServer(t *testing.T, names ...string) func(name string) *grpc.ClientConn {
	t.Helper()
	dir := t.TempDir()
	if err := tlsconfig.MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	files := func(n string) tlsconfig.Files {
		return tlsconfig.Files{Cert: filepath.Join(dir, n+".pem"), Key: filepath.Join(dir, n+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	}
	if err := tlsconfig.Issue(dir, "server", tlsconfig.RoleCoordinator, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		role, _, _ := strings.Cut(n, "-")
		if err := tlsconfig.Issue(dir, n, tlsconfig.Role(role), nil); err != nil {
			t.Fatal(err)
		}
	}
	sc, err := tlsconfig.Server(files("server"))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(sc)), grpc.ChainUnaryInterceptor(UnaryAuth), grpc.ChainStreamInterceptor(StreamAuth))
	pb.RegisterCoordinatorServiceServer(gs, fakeClient{env: []string{"TOKEN=hunter2", "PLAIN"}})
	pb.RegisterReleaseServiceServer(gs, pb.UnimplementedReleaseServiceServer{})
	wpb.RegisterWorkerServiceServer(gs, wpb.UnimplementedWorkerServiceServer{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return func(name string) *grpc.ClientConn {
		cc, err := tlsconfig.Client(files(name))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
}

// call invokes any method, unary or streaming, with an empty request and
// returns the status the server ended it with.
func call(ctx context.Context, conn *grpc.ClientConn, method string) error {
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil && err.Error() != "EOF" {
		return err
	}
	s.CloseSend()
	// The first answer or the status: Health/Watch streams for ever.
	if err := s.RecvMsg(&emptypb.Empty{}); err != nil && err.Error() != "EOF" {
		return err
	}
	return nil
}

func TestEachRoleIsRefusedOutsideItsRPCs(t *testing.T) {
	t.Parallel()
	dial := authServer(t, "worker-1", "client-1", "admin-1", "publisher-1", "coordinator-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	methods := make([]string, 0, len(allowed))
	for m := range allowed {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	// Spelled out, not read from the table, so that a change of the table
	// shows here.
	want := func(role, method string) bool {
		switch {
		case strings.HasPrefix(method, "/grpc.health.v1.Health/"):
			return true
		case strings.HasPrefix(method, "/kiln.worker.v1.WorkerService/"):
			return role == "worker"
		case method == "/kiln.coordinator.v1.CoordinatorService/DrainWorker", method == "/kiln.coordinator.v1.ReleaseService/SealRelease":
			return role == "admin"
		case strings.HasPrefix(method, "/kiln.coordinator.v1."):
			return role == "client" || role == "admin"
		}
		return false
	}
	for _, role := range []string{"worker", "client", "admin", "publisher", "coordinator"} {
		conn := dial(role + "-1")
		for _, m := range methods {
			err := call(ctx, conn, m)
			if strings.HasSuffix(m, "/Register") && role == "worker" {
				// An empty request names no worker: refused by the name
				// binding, tested below.
				continue
			}
			refused := status.Code(err) == codes.PermissionDenied
			if refused == want(role, m) {
				t.Errorf("%s calling %s: %v", role, m, err)
			}
			if refused && (!strings.Contains(err.Error(), "role "+role) || !strings.Contains(err.Error(), m)) {
				t.Errorf("%s calling %s: the refusal names neither the role nor the RPC: %v", role, m, err)
			}
		}
	}
}

func TestMethodMissingFromTheTableIsRefused(t *testing.T) {
	t.Parallel()
	err := authorize(Caller{Name: "root", Role: tlsconfig.RoleAdmin}, "/kiln.coordinator.v1.CoordinatorService/Added", nil)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "Added is not open to any certificate role") {
		t.Fatalf("a method missing from the table: %v", err)
	}
}

func TestWorkerNameIsBoundToItsCertificate(t *testing.T) {
	t.Parallel()
	dial := authServer(t, "worker-1", "worker-2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := wpb.NewWorkerServiceClient(dial("worker-1"))
	_, err := w.Register(ctx, &wpb.RegisterRequest{Name: "worker-2", Slots: 1})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `worker certificate "worker-1" may register only as worker "worker-1", not as "worker-2"`) {
		t.Fatalf("worker-1's certificate registering as worker-2: %v", err)
	}
	// Its own name passes the interceptor and reaches the service.
	if _, err := w.Register(ctx, &wpb.RegisterRequest{Name: "worker-1", Slots: 1}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("worker-1 registering as itself: %v", err)
	}
}

func TestJobEnvironmentIsRedactedButForAdmins(t *testing.T) {
	t.Parallel()
	dial := authServer(t, "client-1", "admin-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The client first: its redaction must not change the job the admin
	// (and the worker) then gets.
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"client-1", []string{"TOKEN=" + Redacted, "PLAIN=" + Redacted}},
		{"admin-1", []string{"TOKEN=hunter2", "PLAIN"}},
	} {
		name, want := tc.name, tc.want
		c := pb.NewCoordinatorServiceClient(dial(name))
		r, err := c.GetJob(ctx, &pb.GetJobRequest{Id: "1"})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(r.GetJob().GetSpec().GetEnv(), " "); got != strings.Join(want, " ") {
			t.Errorf("%s: GetJob env %q, want %q", name, got, want)
		}
		s, err := c.StreamJobLog(ctx, &pb.StreamJobLogRequest{Id: "1"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(m.GetJob().GetSpec().GetEnv(), " "); got != strings.Join(want, " ") {
			t.Errorf("%s: StreamJobLog env %q, want %q", name, got, want)
		}
	}
}

func TestCertificateWithoutRoleIsRefused(t *testing.T) {
	t.Parallel()
	_, err := callerOfCert(&x509.Certificate{Subject: pkix.Name{CommonName: "jenkins"}})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `certificate "jenkins"`) ||
		!strings.Contains(err.Error(), "coordinator certs --role") {
		t.Fatalf("a certificate made before roles: %v", err)
	}
}

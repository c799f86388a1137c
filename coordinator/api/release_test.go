package api

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
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/protocol"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// bufServer serves the client, release and worker APIs of one fleet over
// bufconn.
func bufServer(t *testing.T) (*fleet.Fleet, *grpc.ClientConn) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Minute,
		Releases: map[string]fleet.Release{"mos-9.0": {Targets: map[string]string{"bookworm-amd64": "deb"}}}}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ln := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	pb.RegisterCoordinatorServiceServer(gs, NewClientServer(f, ClientOptions{Releases: job.Releases{"mos-9.0": {"bookworm-amd64": "deb"}}}))
	pb.RegisterReleaseServiceServer(gs, NewReleaseServer(fleet.NewReleases(f)))
	wpb.RegisterWorkerServiceServer(gs, NewWorkerServer(f, nil, time.Second))
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return f, conn
}

// The release API says what is wrong with a request with distinct codes,
// records who sealed a release, and hands the worker a sealed build with
// sealed set and the build key it would have unsealed.
func TestReleaseService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, conn := bufServer(t)
	rc := pb.NewReleaseServiceClient(conn)
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"seal without a release", func() error { _, err := rc.SealRelease(ctx, &pb.SealReleaseRequest{}); return err }, codes.InvalidArgument, "release is required"},
		{"seal of an unknown release", func() error {
			_, err := rc.SealRelease(ctx, &pb.SealReleaseRequest{Release: "mos-8.0"})
			return err
		}, codes.NotFound, `release "mos-8.0" is not in the coordinator's config`},
		{"show of an unknown release", func() error { _, err := rc.GetRelease(ctx, &pb.GetReleaseRequest{Release: "mos-8.0"}); return err }, codes.NotFound, "mos-8.0"},
		{"verify of a release without builds", func() error {
			_, err := rc.VerifyRelease(ctx, &pb.VerifyReleaseRequest{Release: "mos-9.0"})
			return err
		}, codes.InvalidArgument, "no successful package build"},
		{"an unknown verification", func() error { _, err := rc.GetVerification(ctx, &pb.GetVerificationRequest{Id: 42}); return err }, codes.NotFound, "no verification 42"},
		{"verification 0", func() error { _, err := rc.GetVerification(ctx, &pb.GetVerificationRequest{}); return err }, codes.InvalidArgument, "verification id 0"},
	} {
		err := tc.call()
		if st, _ := status.FromError(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.code, tc.msg)
		}
	}

	sealed, err := rc.SealRelease(ctx, &pb.SealReleaseRequest{Release: "mos-9.0", RequestedBy: "jenkins https://ci/job/7"})
	if err != nil || !sealed.GetSeal().GetSealed() || sealed.GetSeal().GetChangedBy() != "jenkins https://ci/job/7" || sealed.GetSeal().GetChangedAt() == nil {
		t.Fatalf("seal: %v %v", sealed, err)
	}
	spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_PACKAGE_BUILD, PackageBuild: &pb.PackageBuild{Release: "mos-9.0", Target: "bookworm-amd64",
		Package: "hello", Sources: []*pb.Source{{Url: "https://git.example.org/hello", Commit: strings.Repeat("d", 40), Role: pb.SourceRole_SOURCE_ROLE_COMBINED}}}}
	sub, err := pb.NewCoordinatorServiceClient(conn).SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	unsealedKey := SpecFromPB(spec).Build.Key()
	if sub.GetJob().GetBuildKey() != unsealedKey {
		t.Fatalf("build key %s, want %s as unsealed", sub.GetJob().GetBuildKey(), unsealedKey)
	}
	wc := wpb.NewWorkerServiceClient(conn)
	reg, err := wc.Register(ctx, &wpb.RegisterRequest{Name: "w1", Slots: 1, ProtocolVersion: protocol.Version,
		Labels: map[string]string{"target": "bookworm-amd64", "sealed-target": "bookworm-amd64", "sealed-release": "mos-9.0"}})
	if err != nil {
		t.Fatal(err)
	}
	pull, err := wc.PullJob(ctx, &wpb.PullJobRequest{SessionId: reg.GetSessionId(), WaitSeconds: 5})
	if err != nil || !pull.GetAssignment().GetSpec().GetPackageBuild().GetSealed() {
		t.Fatalf("assignment %v %v, want the build sealed", pull.GetAssignment(), err)
	}
	a := pull.GetAssignment()
	if err := f.Complete(ctx, reg.GetSessionId(), a.GetJobId(), int(a.GetAttempt()), scheduler.Outcome{
		Record: &job.Record{Version: "1.0-1+kiln1", Installed: []job.Package{{Name: "gcc", Version: "12"}}}}); err != nil {
		t.Fatal(err)
	}
	rel, err := rc.GetRelease(ctx, &pb.GetReleaseRequest{Release: "mos-9.0"})
	if err != nil {
		t.Fatal(err)
	}
	r := rel.GetRelease()
	if !r.GetConfigured() || !r.GetSeal().GetSealed() || len(r.GetPackages()) != 1 || r.GetPackages()[0].GetVersion() != "1.0-1+kiln1" ||
		r.GetPackages()[0].GetJobId() != a.GetJobId() || r.GetPackages()[0].GetLastVerification() != nil {
		t.Fatalf("release %v", r)
	}
	v, err := rc.VerifyRelease(ctx, &pb.VerifyReleaseRequest{Release: "mos-9.0", Packages: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	items := v.GetVerification().GetItems()
	if v.GetVerification().GetDone() || len(items) != 1 || items[0].GetResult() != pb.VerificationResult_VERIFICATION_RESULT_RUNNING ||
		items[0].GetRebuildJobId() == "" || v.GetVerification().GetRequestedBy() != "unknown client" {
		t.Fatalf("verification %v", v.GetVerification())
	}
	if _, err := pb.NewCoordinatorServiceClient(conn).CancelJob(ctx, &pb.CancelJobRequest{Id: items[0].GetRebuildJobId()}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		g, err := rc.GetVerification(ctx, &pb.GetVerificationRequest{Id: v.GetVerification().GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if g.GetVerification().GetDone() {
			it := g.GetVerification().GetItems()[0]
			if it.GetResult() != pb.VerificationResult_VERIFICATION_RESULT_ERROR || !strings.Contains(it.GetDetail(), "canceled") {
				t.Fatalf("cancelled rebuild: %v, want an error naming the cancellation", it)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("verification not done: %v", g.GetVerification())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

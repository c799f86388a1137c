package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kiln-build/kiln/coordinator/job"
	ppb "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
)

// fakePublisher keeps uploads by sha256 and records publish requests. Like
// the real one it answers an upload of a file it has right after the
// header, and refuses what refuse says.
type fakePublisher struct {
	ppb.UnimplementedPublisherServiceServer
	mu        sync.Mutex
	objects   map[string][]byte
	received  map[string]int // bytes read per sha256
	publishes []*ppb.PublishRequest
	refuse    func(*ppb.PublishRequest) error
}

func (f *fakePublisher) UploadArtifact(stream ppb.PublisherService_UploadArtifactServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	ref := first.GetHeader()
	f.mu.Lock()
	_, have := f.objects[ref.GetSha256()]
	f.mu.Unlock()
	if have {
		return stream.SendAndClose(&ppb.UploadArtifactResponse{Existed: true})
	}
	var data bytes.Buffer
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		data.Write(m.GetChunk())
	}
	sum := sha256.Sum256(data.Bytes())
	if hex.EncodeToString(sum[:]) != ref.GetSha256() {
		return status.Errorf(codes.InvalidArgument, "%s: sha256 mismatch", ref.GetName())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[ref.GetSha256()] = data.Bytes()
	f.received[ref.GetSha256()] += data.Len()
	return stream.SendAndClose(&ppb.UploadArtifactResponse{})
}

func (f *fakePublisher) Publish(_ context.Context, req *ppb.PublishRequest) (*ppb.PublishResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range req.GetFiles() {
		if _, ok := f.objects[r.GetSha256()]; !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "%s was not uploaded", r.GetName())
		}
	}
	f.publishes = append(f.publishes, req)
	if f.refuse != nil {
		if err := f.refuse(req); err != nil {
			return nil, err
		}
	}
	name := req.GetRepository()
	if req.GetBase() {
		name += "-base"
	}
	return &ppb.PublishResponse{Location: "/srv/public/" + name, Repository: name, Added: int32(len(req.GetFiles()))}, nil
}

// dirJobs keeps artifacts in a directory.
type dirJobs struct{ dir string }

func (j dirJobs) ArtifactPath(a job.Artifact) string {
	return filepath.Join(j.dir, filepath.FromSlash(a.Name))
}
func (dirJobs) SetPublish(context.Context, string, string) error { return nil }
func (dirJobs) List(context.Context, []job.State, int) ([]*job.Job, error) {
	return nil, nil
}

func newFakePublisher(t *testing.T) (*Publisher, *fakePublisher, dirJobs) {
	t.Helper()
	fake := &fakePublisher{objects: map[string][]byte{}, received: map[string]int{}}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	ppb.RegisterPublisherServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	jobs := dirJobs{dir: t.TempDir()}
	p := &Publisher{cfg: Config{Repository: "{release}-{target}"}, conn: conn, client: ppb.NewPublisherServiceClient(conn), jobs: jobs, logger: hclog.NewNullLogger()}
	return p, fake, jobs
}

// artifact writes an artifact of the job and returns its record.
func (j dirJobs) artifact(t *testing.T, name string, data []byte) job.Artifact {
	t.Helper()
	p := j.ArtifactPath(job.Artifact{Name: name})
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return job.Artifact{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func names(refs []*ppb.FileRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.GetName())
	}
	slices.Sort(out)
	return out
}

// A build's base/ artifacts go to the base of the release's repository, in
// a publish before the one of its out/ packages; a file the publisher has
// is not sent again.
func TestPublishSendsBaseFirstThenPackages(t *testing.T) {
	t.Parallel()
	p, fake, jobs := newFakePublisher(t)
	// A large base package the publisher has from an earlier build: its
	// upload ends after the header.
	big := bytes.Repeat([]byte("zlib"), 2<<20)
	known := jobs.artifact(t, "base/zlib1g-dev_1.2.13.dfsg-1_amd64.deb", big)
	fake.objects[known.SHA256] = big
	j := &job.Job{ID: "J7", State: job.Succeeded, Spec: job.Spec{Build: &job.Build{Release: "mos-9.0", Target: "bookworm", Publish: true}}}
	j.Artifacts = []job.Artifact{
		jobs.artifact(t, "out/hello_1.0-1_amd64.deb", []byte("hello deb")),
		jobs.artifact(t, "out/hello_1.0-1.dsc", []byte("hello dsc")),
		jobs.artifact(t, "out/hello_1.0.orig.tar.gz", []byte("hello tarball")),
		jobs.artifact(t, "out/build.log", []byte("log")),
		known,
		jobs.artifact(t, "base/libc6_2.36-9_amd64.deb", []byte("libc6")),
	}
	var baseRepo string
	p.BasePublished = func(_ *job.Job, b BaseResult) { baseRepo = b.Repository }
	loc, err := p.publish(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if loc != "/srv/public/mos-9.0-bookworm" {
		t.Errorf("location %q, want the repository's", loc)
	}
	if baseRepo != "mos-9.0-bookworm-base" {
		t.Errorf("BasePublished got repository %q", baseRepo)
	}
	if len(fake.publishes) != 2 {
		t.Fatalf("%d publish requests, want 2", len(fake.publishes))
	}
	base, own := fake.publishes[0], fake.publishes[1]
	if !base.GetBase() || base.GetRequestId() != "job-J7-base" || base.GetRepository() != "mos-9.0-bookworm" ||
		!slices.Equal(names(base.GetFiles()), []string{"libc6_2.36-9_amd64.deb", "zlib1g-dev_1.2.13.dfsg-1_amd64.deb"}) {
		t.Errorf("first request, want the base: %v", base)
	}
	if own.GetBase() || own.GetRequestId() != "job-J7" || own.GetRepository() != "mos-9.0-bookworm" ||
		!slices.Equal(names(own.GetFiles()), []string{"hello_1.0-1.dsc", "hello_1.0-1_amd64.deb", "hello_1.0.orig.tar.gz"}) {
		t.Errorf("second request, want the packages: %v", own)
	}
	if n := fake.received[known.SHA256]; n != 0 {
		t.Errorf("the publisher received %d bytes of a file it had", n)
	}

	// Published again (a retry): the same request ids, nothing uploaded.
	before := len(fake.received)
	if _, err := p.publish(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if len(fake.received) != before || fake.publishes[2].GetRequestId() != "job-J7-base" || fake.publishes[3].GetRequestId() != "job-J7" {
		t.Errorf("retry: uploads %d -> %d, requests %v", before, len(fake.received), fake.publishes[2:])
	}
}

func TestPublishWithoutBaseAndRefusedBase(t *testing.T) {
	t.Parallel()
	p, fake, jobs := newFakePublisher(t)
	j := &job.Job{ID: "J8", State: job.Succeeded, Spec: job.Spec{Build: &job.Build{Release: "r", Target: "t", Publish: true}}}
	j.Artifacts = []job.Artifact{jobs.artifact(t, "out/a_1_all.deb", []byte("a"))}
	if _, err := p.publish(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if len(fake.publishes) != 1 || fake.publishes[0].GetBase() {
		t.Fatalf("a build without base artifacts: %v", fake.publishes)
	}

	// A refused base stops the publish for good, before the packages.
	fake.refuse = func(r *ppb.PublishRequest) error {
		if r.GetBase() {
			return status.Error(codes.AlreadyExists, "base package zlib1g 1:1.2.13 amd64: stored sha256 X, offered sha256 Y")
		}
		return nil
	}
	j.ID = "J9"
	j.Artifacts = append(j.Artifacts, jobs.artifact(t, "base/zlib1g_1.2.13_amd64.deb", []byte("zlib")))
	_, err := p.publish(context.Background(), j)
	if err == nil || permanent(err) != StateRefused || len(fake.publishes) != 2 || !fake.publishes[1].GetBase() {
		t.Fatalf("refused base: %v (permanent %v), requests %v", err, permanent(err), fake.publishes)
	}
}

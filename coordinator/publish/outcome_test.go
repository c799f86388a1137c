package publish

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/coordinator/job"
	ppb "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
)

type fakeJobs struct {
	path   string
	mu     sync.Mutex
	states []string
}

func (f *fakeJobs) ArtifactPath(job.Artifact) string { return f.path }
func (f *fakeJobs) SetPublish(_ context.Context, _ string, st string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, st)
	return nil
}
func (f *fakeJobs) List(context.Context, []job.State, int) ([]*job.Job, error) { return nil, nil }
func (f *fakeJobs) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return ""
	}
	return f.states[len(f.states)-1]
}

// failingClient fails every upload with err.
type failingClient struct {
	ppb.PublisherServiceClient
	err error
}

func (c failingClient) UploadArtifact(context.Context, ...grpc.CallOption) (grpc.ClientStreamingClient[ppb.UploadArtifactRequest, ppb.UploadArtifactResponse], error) {
	return nil, c.err
}

func newTestPublisher(t *testing.T, err error) (*Publisher, *fakeJobs, chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.deb")
	os.WriteFile(path, []byte("x"), 0o644)
	jobs := &fakeJobs{path: path}
	done := make(chan error, 1)
	p := &Publisher{cfg: Config{RetryInterval: 10 * time.Millisecond, Repository: "{release}-{target}"}, client: failingClient{err: err},
		jobs: jobs, logger: hclog.NewNullLogger(), queue: make(chan *job.Job, 1), canceled: map[string]string{}, wake: make(chan struct{}, 1)}
	p.Done = func(_ context.Context, _ *job.Job, _ string, err error) { done <- err }
	return p, jobs, done
}

func testJob() *job.Job {
	return &job.Job{ID: "7", State: job.Succeeded, Artifacts: []job.Artifact{{Name: "out/a.deb", SHA256: "ab", Size: 1}},
		Spec: job.Spec{Build: &job.Build{Release: "prob", Target: "bookworm-amd64", Publish: true}}}
}

// A publish that can never succeed ends at once: refused when the
// publisher refused the package itself, failed when the publisher cannot
// take it as configured (an unknown repository). Neither is retried.
func TestPermanentPublishErrorsEnd(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code codes.Code
		want string
	}{
		{codes.NotFound, StateFailed + ": "},
		{codes.FailedPrecondition, StateFailed + ": "},
		{codes.InvalidArgument, StateRefused + ": "},
		{codes.AlreadyExists, StateRefused + ": "},
	} {
		p, jobs, done := newTestPublisher(t, status.Error(c.code, `repository "prob-bookworm-amd64": not found`))
		p.publishWithRetry(context.Background(), testJob())
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%v: Done told success", c.code)
			}
		default:
			t.Errorf("%v: Done not called", c.code)
		}
		if got := jobs.last(); !strings.HasPrefix(got, c.want) || !strings.Contains(got, "not found") {
			t.Errorf("%v: publish state %q, want %q with the reason", c.code, got, c.want)
		}
		if st, _, reason := Parse(jobs.last()); reason == "" || (c.want == StateFailed+": ") != (st == StateFailed) {
			t.Errorf("%v: Parse(%q) = %q, %q", c.code, jobs.last(), st, reason)
		}
	}
}

// Cancelling a pending publish stops its retries and records why.
func TestCancelPendingPublish(t *testing.T) {
	t.Parallel()
	p, jobs, done := newTestPublisher(t, status.Error(codes.Unavailable, "connection refused"))
	ended := make(chan struct{})
	go func() { p.publishWithRetry(context.Background(), testJob()); close(ended) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(jobs.last(), "pending (attempt 2") {
		if time.Now().After(deadline) {
			t.Fatalf("never retried: %q", jobs.last())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Cancel(context.Background(), "7", "cancelled from the command line"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the publish went on after Cancel")
	}
	if got := jobs.last(); got != StateCanceled+": cancelled from the command line" {
		t.Fatalf("state after cancel %q", got)
	}
	if err := <-done; err == nil {
		t.Fatal("Done told success for a cancelled publish")
	}
}

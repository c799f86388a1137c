// Package publish hands successful package builds to the publisher: it
// streams the build's package files over gRPC (each verified by sha256 on
// arrival) and asks the publisher to publish them. A publisher that is down
// delays a publish without losing it: the job stays "pending" in the store
// and is tried again, also after a coordinator restart.
//
// A build's artifacts under base/ (see IsBase) are the upstream packages its
// buildroot installed; they go to the base of the release's repository, in
// a publish of their own before the build's packages (request ids
// "job-<id>-base" and "job-<id>"), so that a published package's base is
// always published. Files the publisher already has cost only their header.
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/chunks"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	ppb "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
)

// Publish states kept on a job.
const (
	StatePending   = "pending"
	StatePublished = "published"
	StateFailed    = "failed"
	// StateRefused: the publisher refused the package itself.
	StateRefused = "refused"
	// StateCanceled: stopped by a user while pending.
	StateCanceled = "canceled"
)

// Config is the coordinator config's `publisher:` section.
type Config struct {
	// Address of `publisher serve`.
	Address string `yaml:"address"`
	// Dev talks plaintext to a loopback publisher (single machine).
	Dev bool `yaml:"dev"`
	// TLS: the coordinator's client certificate, the publisher pins it.
	TLS tlsconfig.Files `yaml:"tls"`
	// Repository is the publisher repository for a build, with {release}
	// and {target} replaced; default "{release}-{target}".
	Repository string `yaml:"repository"`
	// Repositories overrides Repository per "release/target".
	Repositories map[string]string `yaml:"repositories"`
	// RetryInterval is how long to wait before trying a failed publish again.
	RetryInterval time.Duration `yaml:"retry_interval"`
}

// Validate checks the section.
func (c *Config) Validate() error {
	if c.Address == "" {
		return errors.New("publisher.address is empty")
	}
	if c.Dev {
		if err := tlsconfig.CheckLoopback(c.Address); err != nil {
			return fmt.Errorf("publisher.address: %w", err)
		}
	} else if c.TLS.Empty() {
		return errors.New("publisher: set tls.cert, tls.key and tls.ca (the publisher accepts only the coordinator's certificate), or dev: true on loopback")
	}
	return nil
}

// Jobs is what the hand-off needs from the coordinator's core.
type Jobs interface {
	ArtifactPath(a job.Artifact) string
	SetPublish(ctx context.Context, id, state string) error
	List(ctx context.Context, states []job.State, limit int) ([]*job.Job, error)
}

// Publisher hands builds to the publisher service.
type Publisher struct {
	cfg      Config
	conn     *grpc.ClientConn
	client   ppb.PublisherServiceClient
	jobs     Jobs
	logger   hclog.Logger
	queue    chan *job.Job
	mu       sync.Mutex
	canceled map[string]string // job id: why its publish was stopped
	wake     chan struct{}
	// Done, when set, is called once a job's publish ended (published or
	// failed for good) with where it went, in the publisher's goroutine.
	Done func(ctx context.Context, j *job.Job, location string, err error)
	// BasePublished, when set, is called after a job's base packages were
	// published, with what the publisher answered.
	BasePublished func(j *job.Job, base BaseResult)
}

// New dials the publisher (lazily: a publisher that is down is not an
// error here).
func New(cfg Config, jobs Jobs, logger hclog.Logger) (*Publisher, error) {
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 10 * time.Second
	}
	if cfg.Repository == "" {
		cfg.Repository = "{release}-{target}"
	}
	var creds credentials.TransportCredentials
	if cfg.Dev {
		creds = insecure.NewCredentials()
	} else {
		tc, err := tlsconfig.Client(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("publisher TLS: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("publisher %s: %w", cfg.Address, err)
	}
	return &Publisher{cfg: cfg, conn: conn, client: ppb.NewPublisherServiceClient(conn), jobs: jobs, logger: logger,
		queue: make(chan *job.Job, 1024), canceled: map[string]string{}, wake: make(chan struct{}, 1)}, nil
}

// Wants reports whether a finished job is to be published.
func Wants(j *job.Job) bool {
	return j.State == job.Succeeded && j.Spec.Build != nil && j.Spec.Build.Publish && !j.Verify
}

// Enqueue marks a finished job pending and queues its publish.
func (p *Publisher) Enqueue(ctx context.Context, j *job.Job) error {
	if err := p.jobs.SetPublish(ctx, j.ID, StatePending); err != nil {
		return err
	}
	p.queue <- j
	return nil
}

// Run publishes queued jobs, and on start those left pending by an earlier
// run, until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.conn.Close()
	pending, err := p.jobs.List(ctx, []job.State{job.Succeeded}, 0)
	if err != nil {
		return err
	}
	for _, j := range pending {
		if strings.HasPrefix(j.Publish, StatePending) {
			p.logger.Info("resuming publish", "job_id", j.ID)
			go func(j *job.Job) { p.queue <- j }(j)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-p.queue:
			p.publishWithRetry(ctx, j)
		}
	}
}

func (p *Publisher) publishWithRetry(ctx context.Context, j *job.Job) {
	for attempt := 1; ; attempt++ {
		if p.stopped(ctx, j) {
			return
		}
		loc, err := p.publish(ctx, j)
		if err == nil {
			p.logger.Info("published", "job_id", j.ID, "location", loc)
			if serr := p.jobs.SetPublish(ctx, j.ID, StatePublished+" "+loc); serr != nil {
				p.logger.Error("record publish", "job_id", j.ID, "error", serr)
			}
			if p.Done != nil {
				p.Done(ctx, j, loc, nil)
			}
			return
		}
		if st := permanent(err); st != "" {
			p.logger.Error("publish ended without retry", "job_id", j.ID, "state", st, "error", err)
			_ = p.jobs.SetPublish(ctx, j.ID, st+": "+err.Error())
			if p.Done != nil {
				p.Done(ctx, j, "", err)
			}
			return
		}
		p.logger.Warn("publish failed; will retry", "job_id", j.ID, "attempt", attempt, "error", err, "in", p.cfg.RetryInterval)
		p.mu.Lock()
		if _, ok := p.canceled[j.ID]; !ok {
			_ = p.jobs.SetPublish(ctx, j.ID, fmt.Sprintf("%s (attempt %d failed: %v)", StatePending, attempt, err))
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-time.After(p.cfg.RetryInterval):
		}
	}
}

// permanent says how a publish ends that retrying cannot help: refused
// when the publisher refused the package itself (its files, or the same
// name and version with other content), failed when the publisher cannot
// take it as configured (no such repository, not allowed). It returns ""
// for errors worth retrying.
func permanent(err error) string {
	switch grpcerr.Classify(err) {
	case grpcerr.BadRequest, grpcerr.Conflict:
		return StateRefused
	case grpcerr.NotFound, grpcerr.Precondition, grpcerr.Denied:
		return StateFailed
	}
	return ""
}

// Cancel stops the pending publish of job id: it is not tried again, also
// after a restart, and its state says why. An attempt already under way
// may still land.
func (p *Publisher) Cancel(ctx context.Context, id, reason string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.canceled[id] = reason
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.jobs.SetPublish(ctx, id, StateCanceled+": "+reason)
}

// stopped reports whether j's publish was cancelled, and tells Done.
func (p *Publisher) stopped(ctx context.Context, j *job.Job) bool {
	p.mu.Lock()
	reason, ok := p.canceled[j.ID]
	p.mu.Unlock()
	if ok && p.Done != nil {
		p.Done(ctx, j, "", errors.New("publish cancelled: "+reason))
	}
	return ok
}

// Parse splits a job's publish state into its kind (StatePending,
// StatePublished, StateRefused, StateFailed, StateCanceled or "" for none),
// where it was published and why it did not.
func Parse(s string) (state, location, reason string) {
	for _, st := range []string{StateRefused, StateFailed, StateCanceled} {
		if r, ok := strings.CutPrefix(s, st+": "); ok {
			return st, "", r
		}
	}
	switch {
	case strings.HasPrefix(s, StatePublished):
		return StatePublished, strings.TrimSpace(strings.TrimPrefix(s, StatePublished)), ""
	case strings.HasPrefix(s, StatePending):
		r := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(s, StatePending), " ("), ")")
		return StatePending, "", r
	}
	return "", "", ""
}

// Repository names the publisher repository for a build.
func (p *Publisher) Repository(b *job.Build) string {
	if r, ok := p.cfg.Repositories[b.Release+"/"+b.Target]; ok {
		return r
	}
	return strings.NewReplacer("{release}", b.Release, "{target}", b.Target).Replace(p.cfg.Repository)
}

// BaseResult is what the publisher answered to the publish of a job's
// base packages.
type BaseResult struct {
	// Repository is the base repository, "<repository>-base", and
	// Location where the publisher published it.
	Repository, Location string
	// Added counts the job's base packages the base did not have yet;
	// Packages and Bytes are the base's size after the publish.
	Added, Packages int
	Bytes           int64
}

// BaseDir is the directory of a build's artifacts that are its base: the
// upstream packages its buildroot installed, e.g.
// base/zlib1g-dev_1.2.13.dfsg-1_amd64.deb.
const BaseDir = "base/"

// IsBase reports whether the artifact name is one of the build's base
// packages rather than one of its own.
func IsBase(name string) bool { return strings.HasPrefix(name, BaseDir) }

func (p *Publisher) publish(ctx context.Context, j *job.Job) (string, error) {
	repo := p.Repository(j.Spec.Build)
	var own, base []job.Artifact
	for _, a := range j.Artifacts {
		switch {
		case !job.IsPackageFile(a.Name):
		case IsBase(a.Name):
			base = append(base, a)
		default:
			own = append(own, a)
		}
	}
	if len(own) == 0 {
		return "", grpcerr.New(grpcerr.BadRequest, "job %s produced no package files to publish", j.ID)
	}
	// The base first: a published package's base is published.
	if len(base) > 0 {
		resp, err := p.publishFiles(ctx, j, &ppb.PublishRequest{RequestId: "job-" + j.ID + "-base", Repository: repo, Base: true}, base)
		if err != nil {
			return "", fmt.Errorf("publish the base of job %s: %w", j.ID, err)
		}
		p.logger.Info("published the base", "job_id", j.ID, "repository", resp.GetRepository(), "added", resp.GetAdded(), "packages", resp.GetPackages(), "bytes", resp.GetSize())
		if p.BasePublished != nil {
			p.BasePublished(j, BaseResult{Repository: resp.GetRepository(), Location: resp.GetLocation(),
				Added: int(resp.GetAdded()), Packages: int(resp.GetPackages()), Bytes: resp.GetSize()})
		}
	}
	resp, err := p.publishFiles(ctx, j, &ppb.PublishRequest{RequestId: "job-" + j.ID, Repository: repo}, own)
	if err != nil {
		return "", err
	}
	return resp.GetLocation(), nil
}

// publishFiles uploads the artifacts the publisher does not have yet and
// sends req with all of them.
func (p *Publisher) publishFiles(ctx context.Context, j *job.Job, req *ppb.PublishRequest, files []job.Artifact) (*ppb.PublishResponse, error) {
	existed := 0
	for _, a := range files {
		ref := &ppb.FileRef{Name: path.Base(a.Name), Sha256: a.SHA256, Size: a.Size}
		had, err := p.upload(ctx, p.jobs.ArtifactPath(a), ref)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", a.Name, err)
		}
		if had {
			existed++
		}
		req.Files = append(req.Files, ref)
	}
	p.logger.Debug("uploaded", "job_id", j.ID, "base", req.GetBase(), "files", len(files), "already_there", existed)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	return p.client.Publish(cctx, req)
}

// upload streams one file to the publisher; existed says the publisher
// had it already. The publisher answers a file it has after the header:
// the stream then ends for the sender (io.EOF), which stops sending and
// reads the answer.
func (p *Publisher) upload(ctx context.Context, file string, ref *ppb.FileRef) (existed bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	stream, err := p.client.UploadArtifact(cctx)
	if err != nil {
		return false, err
	}
	err = stream.Send(&ppb.UploadArtifactRequest{Header: ref})
	if err == nil {
		err = chunks.Send(f, func(b []byte) error { return stream.Send(&ppb.UploadArtifactRequest{Chunk: b}) })
	}
	if err != nil && !errors.Is(err, io.EOF) {
		_, cerr := stream.CloseAndRecv()
		return false, errors.Join(err, cerr)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return false, err
	}
	return resp.GetExisted(), nil
}

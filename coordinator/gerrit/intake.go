// Package gerrit turns Gerrit events into package builds and reports the
// results back as review votes and messages.
//
// Events are accepted first and decided after. The transports (package
// transport: the SSH stream-events client and the webhook) only write each
// event down, through the intake, in the store (Store, implemented by the
// coordinator's store). The decider (decider.go) then decides the stored
// events, in order per change and per branch: it reads the few facts a
// decision needs, asks the pure decision step (package decide, which also
// holds the mapping rules) and carries the decision out (carry.go): branch
// head lookups, de-duplication, supersede, queueing builds. The reconciler
// (package reconcile) makes up for events never received; the reporter
// (reporter.go, with package report for what is said and how it is
// posted) tells Gerrit the results. Package event parses Gerrit's events;
// package record holds the types the store speaks.
package gerrit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/reconcile"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/gerrit/report"
	"github.com/kiln-build/kiln/coordinator/gerrit/transport"
)

// Builds queues package builds; the coordinator's scheduler implements it.
type Builds interface {
	// SubmitBuild queues a build. A build whose build key (sources, target,
	// recipe) matches a job queued, running or succeeded is not queued
	// again: that job is returned, with its result when it has finished.
	// An error wrapping ErrRefused refuses the request for good (it
	// is recorded, not tried again); any other is tried again later.
	SubmitBuild(ctx context.Context, req BuildRequest) (Submitted, error)
	// CancelBuilds cancels every queued or running build submitted with
	// the supersede key, giving reason, and returns their job ids; none
	// when no build with the key is live.
	CancelBuilds(ctx context.Context, supersedeKey, reason string) (jobIDs []string, err error)
}

// ErrRefused marks a build the coordinator refuses as asked (a release or
// target it does not have, an implausible package name): the event records
// the refusal with action decide.ActionRefused, nothing is queued, and the event
// is not handled again.
var ErrRefused = errors.New("build refused")

// BuildRequest asks for one package build of one target.
type BuildRequest struct {
	Release string
	Target  string
	Package string
	Sources []Source
	// Publish is true for release builds (merges): their artifacts are
	// published. Review builds are not.
	Publish bool
	// Priority is 100 for release builds and 50 for review builds.
	Priority int32
	// SupersedeKey, when set, lets a newer build cancel older queued or
	// running ones with the same key (a newer patch set of a change).
	SupersedeKey string
	// Origin says for people where the build came from.
	Origin string
}

// Submitted is the job that builds a request.
type Submitted struct {
	JobID string
	// Reused is true when JobID is an existing job of the same build key.
	Reused bool
	// Result is set when the reused job has already finished: no
	// BuildFinished call will come for it.
	Result *BuildResult
}

// Source is one git repository at an exact commit.
type Source struct {
	URL    string
	Commit string
	// Ref is where the commit can be fetched from (a branch or a patch set
	// ref such as refs/changes/34/1234/2).
	Ref string
	// Role is combined, code or packaging.
	Role string
}

// Priorities of Gerrit builds.
const (
	PriorityRelease int32 = 100
	PriorityReview  int32 = 50
)

// BuildResult is a finished job as the coordinator reports it.
type BuildResult struct {
	JobID string
	// State is succeeded, failed, error or canceled.
	State string
	// LogURL overrides the configured log URL template when set.
	LogURL string
	// Published says where a release build's packages were published.
	Published string
}

// Options are optional dependencies; zero values mean the real thing.
type Options struct {
	// Now is the clock.
	Now func() time.Time
	// Git reads branch heads; git ls-remote by default.
	Git HeadReader
	// Reviewer posts reviews; SSH or REST per server by default.
	Reviewer Reviewer
	// RetryInterval is how often reports Gerrit refused are tried again;
	// a minute by default.
	RetryInterval time.Duration
	// DecideRetry is the wait before a failed decision is tried again the
	// first time; it doubles after each failure. 5 s by default.
	DecideRetry time.Duration
	// WebhookMemory bounds the bytes of webhook bodies held at once; 64 MiB
	// by default.
	WebhookMemory int64
	// WebhookWait is how long a webhook request waits for room in that
	// budget before it is answered 503; 10 s by default.
	WebhookWait time.Duration
}

// HeadReader lists branch heads of a repository.
type HeadReader interface {
	// Heads returns branch name (without refs/heads/) → commit.
	Heads(ctx context.Context, url string) (map[string]string, error)
}

// Reviewer posts a review on a patch set.
type Reviewer interface {
	Review(ctx context.Context, server string, r report.Review) error
}

// Intake is the Gerrit intake.
type Intake struct {
	cfg      Config
	servers  map[string]*server
	order    []string
	decider  decide.Decider
	store    Store
	builds   Builds
	logger   hclog.Logger
	metrics  *metrics
	now      func() time.Time
	git      HeadReader
	reviewer Reviewer

	// keys serialise the decisions on one change or one branch (see
	// orderKey); decisions on others run at the same time.
	keys keyLocks
	// decideWake tells the decider that events may be due.
	decideWake  chan struct{}
	decideRetry time.Duration

	// webhook takes the webhooks plugin's posts.
	webhook *transport.Webhook
	// reportMu serialises the store's job results and report marks; it is
	// never held while Gerrit is called.
	reportMu sync.Mutex
	inserts  atomic.Int64

	// wake tells the reporter that reports may be due.
	wake       chan struct{}
	retryEvery time.Duration
	// postMu is held by a reporter pass, which posts to Gerrit.
	postMu sync.Mutex
	failed map[int64]bool // events whose report failed since the last retry
}

type server struct {
	cfg        ServerConfig
	reconciler *reconcile.Reconciler
	ssh        *transport.SSH // nil when neither stream nor SSH reviews are used
}

// New builds the intake: it validates cfg and reads the SSH keys. st is
// where it writes events, decisions, jobs and reports down. reg may be
// nil.
func New(cfg Config, st Store, builds Builds, logger hclog.Logger, reg prometheus.Registerer) (*Intake, error) {
	return NewWithOptions(cfg, st, builds, logger, reg, Options{})
}

// NewWithOptions is New with replaceable clock, git and reviewer.
func NewWithOptions(cfg Config, st Store, builds Builds, logger hclog.Logger, reg prometheus.Registerer, opts Options) (*Intake, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gerrit config: %w", err)
	}
	if builds == nil {
		return nil, errors.New("gerrit intake: no build queue")
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	m, err := decide.NewRules(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("gerrit rules: %w", err)
	}
	if st == nil {
		return nil, errors.New("gerrit intake: no store")
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	in := &Intake{
		cfg:      cfg,
		servers:  map[string]*server{},
		decider:  decide.Decider{Rules: m, Recheck: regexp.MustCompile(cfg.Recheck)},
		store:    st,
		builds:   builds,
		logger:   logger,
		metrics:  met,
		now:      opts.Now,
		git:      opts.Git,
		reviewer: opts.Reviewer,

		wake:        make(chan struct{}, 1),
		decideWake:  make(chan struct{}, 1),
		decideRetry: cmp.Or(opts.DecideRetry, 5*time.Second),
		retryEvery:  opts.RetryInterval,
		failed:      map[int64]bool{},
	}
	if in.now == nil {
		in.now = time.Now
	}
	secrets := map[string]string{}
	for _, sc := range cfg.Servers {
		secrets[sc.Name] = sc.WebhookSecret
	}
	in.webhook = transport.NewWebhook(transport.WebhookConfig{
		Secrets: secrets, Memory: opts.WebhookMemory, Wait: opts.WebhookWait, Logger: logger,
		Metrics: in.transportMetrics(),
	}, inbox{in})
	if in.retryEvery <= 0 {
		in.retryEvery = time.Minute
	}
	if in.git == nil {
		in.git = &reconcile.Git{Timeout: cfg.GitTimeout}
	}
	rest := map[string]*report.REST{}
	sshRev := map[string]report.Runner{}
	for _, sc := range cfg.Servers {
		s := &server{cfg: sc}
		if !sc.DisableStream || sc.RESTURL == "" {
			d, err := transport.NewSSH(transport.SSHConfig{Addr: sc.SSH, User: sc.User, PrivateKeyFile: sc.PrivateKeyFile,
				PrivateKeyPassphraseFile: sc.PrivateKeyPassphraseFile, PrivateKeyPassphraseEnv: sc.PrivateKeyPassphraseEnv,
				KnownHostsFile: sc.KnownHostsFile})
			if err != nil {
				return nil, fmt.Errorf("gerrit server %s: %w", sc.Name, err)
			}
			s.ssh = d
			if g, ok := in.git.(*reconcile.Git); ok {
				g.AddSSH(reconcile.GitSSH{URL: sc.GitURL, PrivateKeyFile: sc.PrivateKeyFile, KnownHostsFile: sc.KnownHostsFile,
					PassphraseEnv: sc.PrivateKeyPassphraseEnv})
				if d.Encrypted() && strings.HasPrefix(sc.GitURL, "ssh://") && os.Getenv("SSH_AUTH_SOCK") == "" {
					in.logger.Warn("git_url is read with the ssh command, which cannot use an encrypted private_key_file without an ssh-agent holding the key",
						"server", sc.Name, "private_key_file", sc.PrivateKeyFile)
				}
			}
		}
		if sc.RESTURL != "" {
			r, err := report.NewREST(sc.RESTURL, sc.User, sc.HTTPPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("gerrit server %s: %w", sc.Name, err)
			}
			rest[sc.Name] = r
		} else {
			sshRev[sc.Name] = s.ssh
		}
		s.reconciler = in.newReconciler(s)
		in.servers[sc.Name] = s
		in.order = append(in.order, sc.Name)
	}
	if in.reviewer == nil {
		in.reviewer = &report.Servers{REST: rest, SSH: sshRev}
	}
	err = registerDue(reg, in.order, func(ctx context.Context) (map[string]int, error) {
		return st.CountUnreported(ctx, in.now().Add(-reportFor))
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// Run listens to every server's stream and runs the reconcilers and the
// reporter, which posts results to Gerrit, until ctx ends.
func (in *Intake) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range in.order {
		s := in.servers[name]
		if !s.cfg.DisableStream {
			st := transport.NewStream(transport.StreamConfig{
				Server: name, SSH: s.ssh, Keepalive: in.cfg.Keepalive,
				Reconnect: transport.Backoff{Min: in.cfg.Reconnect.Min, Max: in.cfg.Reconnect.Max},
				Connected: func() { in.triggerReconcile(s) },
				Logger:    in.logger, Metrics: in.transportMetrics(),
			}, inbox{in})
			g.Go(func() error { return st.Run(ctx) })
		} else {
			in.triggerReconcile(s)
		}
		g.Go(func() error { return s.reconciler.Run(ctx) })
	}
	g.Go(func() error { return in.runDecider(ctx) })
	g.Go(func() error { return in.runReporter(ctx) })
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ListEvents returns the most recent events, newest first, without the
// noise.
func (in *Intake) ListEvents(ctx context.Context, limit int) ([]record.Event, error) {
	return in.store.ListEvents(ctx, limit, false)
}

// ListAllEvents is ListEvents with the noise.
func (in *Intake) ListAllEvents(ctx context.Context, limit int) ([]record.Event, error) {
	return in.store.ListEvents(ctx, limit, true)
}

// WebhookHandler accepts events POSTed by Gerrit's webhooks plugin at
// /gerrit/webhook/<server> (see transport.Webhook).
func (in *Intake) WebhookHandler() http.Handler { return in.webhook }

// inbox is the intake as the transports' inbox.
type inbox struct{ in *Intake }

func (i inbox) Accept(ctx context.Context, server string, lines [][]byte, via string) error {
	s := i.in.servers[server]
	if s == nil {
		return fmt.Errorf("gerrit server %q is not configured", server)
	}
	return i.in.accept(ctx, s, lines, via)
}

func (in *Intake) transportMetrics() transport.Metrics {
	m := in.metrics
	return transport.Metrics{Connects: m.connects, Up: m.up, Malformed: m.malformed, BodyBytes: m.bodyBytes, BodyWaits: m.bodyWaits}
}

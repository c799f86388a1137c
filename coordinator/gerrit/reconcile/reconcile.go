// Package reconcile makes up for events Kiln never got: after every
// reconnect of a server's stream, when Gerrit says it dropped events, and
// on an interval, it compares every tracked branch's head (read with git
// ls-remote) with the revision last built or seen, and has a release build
// queued for each head that moved, so a merge that happened while the
// stream was down is built, once. Git, the branch-head reader, ends a
// lookup at its timeout with every process it started.
package reconcile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// HeadReader lists branch heads of a repository.
type HeadReader interface {
	// Heads returns branch name (without refs/heads/) → commit.
	Heads(ctx context.Context, url string) (map[string]string, error)
}

// Target is what a reconciler reconciles: the tracked branches of one
// server, and the release builds it queues.
type Target interface {
	// Tracked lists the tracked branches with the revision last built or
	// seen ("" when none yet).
	Tracked(ctx context.Context) ([]record.Head, error)
	// Queue has a release build of the branch at rev queued unless one
	// was built or queued; queued says whether it was.
	Queue(ctx context.Context, project, branch, rev string) (queued bool, err error)
}

// Config configures one server's reconciler.
type Config struct {
	Server string
	// URL is the git URL of a project.
	URL func(project string) string
	Git HeadReader
	// Interval is how often it runs on its own; never when zero.
	Interval time.Duration
	Logger   hclog.Logger
	// Runs counts runs by server and result (ok, error); Queued counts
	// builds queued by server. Either may be nil.
	Runs, Queued *prometheus.CounterVec
}

// Reconciler reconciles one server's tracked branches.
type Reconciler struct {
	cfg     Config
	target  Target
	trigger chan struct{}
}

// New returns the reconciler of cfg.Server.
func New(cfg Config, t Target) *Reconciler {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Reconciler{cfg: cfg, target: t, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a run soon; it never blocks, and triggers during a run
// make one more.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run reconciles whenever triggered and on the interval, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	var tick <-chan time.Time
	if r.cfg.Interval > 0 {
		t := time.NewTicker(r.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
		case <-tick:
		}
		if err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("reconcile failed", "server", r.cfg.Server, "error", err)
		}
	}
}

// Once compares every tracked branch with its head and queues a release
// build for each head not yet built or queued.
func (r *Reconciler) Once(ctx context.Context) error {
	tracked, err := r.target.Tracked(ctx)
	if err != nil {
		r.count("error")
		return err
	}
	byProject := map[string][]record.Head{}
	var projects []string
	for _, h := range tracked {
		if _, ok := byProject[h.Project]; !ok {
			projects = append(projects, h.Project)
		}
		byProject[h.Project] = append(byProject[h.Project], h)
	}
	var errs []string
	queued := 0
	for _, p := range projects {
		heads, err := r.cfg.Git.Heads(ctx, r.cfg.URL(p))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, h := range byProject[p] {
			cur := heads[h.Branch]
			if cur == "" || cur == h.Revision {
				continue
			}
			ok, err := r.target.Queue(ctx, p, h.Branch, cur)
			if err != nil {
				errs = append(errs, err.Error())
			}
			if ok {
				queued++
				r.cfg.Logger.Info("branch head not built yet; queued", "server", r.cfg.Server, "project", p, "branch", h.Branch, "revision", cur)
				if r.cfg.Queued != nil {
					r.cfg.Queued.WithLabelValues(r.cfg.Server).Inc()
				}
			}
		}
	}
	r.cfg.Logger.Debug("reconciled", "server", r.cfg.Server, "branches", len(tracked), "queued", queued)
	if len(errs) > 0 {
		r.count("error")
		return fmt.Errorf("reconcile %s: %s", r.cfg.Server, strings.Join(errs, "; "))
	}
	r.count("ok")
	return nil
}

func (r *Reconciler) count(result string) {
	if r.cfg.Runs != nil {
		r.cfg.Runs.WithLabelValues(r.cfg.Server, result).Inc()
	}
}

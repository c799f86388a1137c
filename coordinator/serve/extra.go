package serve

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/gerrit"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/publish"
	"github.com/kiln-build/kiln/coordinator/store"
)

// Extra holds the optional subsystems' config sections.
type Extra struct {
	// Gerrit intake; off when absent.
	Gerrit *gerrit.Config `yaml:"gerrit"`
	// Publisher hand-off; off when absent.
	Publisher *publish.Config `yaml:"publisher"`
}

// Validate checks the optional sections.
func (e *Extra) Validate() error {
	if e.Gerrit != nil {
		if err := e.Gerrit.Validate(); err != nil {
			return fmt.Errorf("gerrit: %w", err)
		}
	}
	if e.Publisher != nil {
		if err := e.Publisher.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// HookDeps is what optional subsystems get to work with.
type HookDeps struct {
	Fleet     *fleet.Fleet
	Store     *store.Store
	Logger    hclog.Logger
	Registry  prometheus.Registerer
	PublicURL string
	// Releases are what builds are checked against before they are queued.
	Releases job.Releases
}

// Hooks is what optional subsystems add to the server.
type Hooks struct {
	Events  api.EventLister
	Runners []func(context.Context) error
	HTTP    map[string]http.Handler
	// Publish stops pending publishes; nil without a publisher.
	Publish api.PublishCanceler
}

// Start starts the configured optional subsystems and routes finished jobs:
// successful release builds to the publisher, then every build's outcome to
// Gerrit (after the publish, so the message can say where it went).
func (e *Extra) Start(ctx context.Context, d HookDeps) (Hooks, error) {
	h := Hooks{HTTP: map[string]http.Handler{}}
	var pub *publish.Publisher
	if e.Publisher != nil {
		var err error
		pub, err = publish.New(*e.Publisher, d.Fleet, d.Logger.Named("publish"))
		if err != nil {
			return h, err
		}
	}
	logURL := func(id string) string {
		if d.PublicURL == "" {
			return ""
		}
		return strings.TrimRight(d.PublicURL, "/") + "/jobs/" + id
	}
	var intake *gerrit.Intake
	if e.Gerrit != nil {
		sub := submitter{f: d.Fleet, logURL: logURL, publishing: pub != nil, releases: d.Releases}
		gst, err := d.Store.Gerrit(ctx)
		if err != nil {
			return h, fmt.Errorf("gerrit intake: %w", err)
		}
		intake, err = gerrit.New(*e.Gerrit, gst, sub, d.Logger.Named("gerrit"), d.Registry)
		if err != nil {
			return h, fmt.Errorf("gerrit intake: %w", err)
		}
		h.Events = events{intake}
		h.Runners = append(h.Runners, intake.Run)
		// /gerrit/webhook/<server>, and /gerrit/webhook for a single server.
		wh := intake.WebhookHandler()
		h.HTTP["/gerrit/webhook"] = wh
		h.HTTP["/gerrit/webhook/"] = wh
	}
	report := func(ctx context.Context, j *job.Job, published string) {
		if intake == nil {
			return
		}
		err := intake.BuildFinished(ctx, gerrit.BuildResult{JobID: j.ID, State: j.State.String(), LogURL: logURL(j.ID), Published: published})
		if err != nil {
			d.Logger.Warn("report build to Gerrit", "job_id", j.ID, "error", err)
		}
	}
	if pub != nil {
		pub.Done = func(ctx context.Context, j *job.Job, loc string, err error) {
			if err != nil {
				j.State = job.Error
			}
			report(ctx, j, loc)
		}
		h.Runners = append(h.Runners, pub.Run)
		h.Publish = pub
	}
	d.Fleet.OnFinished(func(ctx context.Context, j *job.Job) {
		if j.Spec.Build == nil {
			return
		}
		if pub != nil && publish.Wants(j) {
			if err := pub.Enqueue(ctx, j); err != nil {
				d.Logger.Error("queue publish", "job_id", j.ID, "error", err)
			}
			return
		}
		if j.Spec.Build.Publish && j.State == job.Succeeded && pub == nil {
			_ = d.Fleet.SetPublish(ctx, j.ID, publish.StateFailed+": no publisher configured (publisher: section)")
		}
		report(ctx, j, "")
	})
	return h, nil
}

// submitter queues Gerrit's builds as package build jobs.
type submitter struct {
	f      *fleet.Fleet
	logURL func(jobID string) string
	// publishing is true when successful release builds go to the
	// publisher, which reports them once published.
	publishing bool
	releases   job.Releases
}

func (s submitter) SubmitBuild(ctx context.Context, r gerrit.BuildRequest) (gerrit.Submitted, error) {
	b := &job.Build{Release: r.Release, Target: r.Target, Package: r.Package, Publish: r.Publish}
	for _, src := range r.Sources {
		b.Sources = append(b.Sources, job.Source{URL: src.URL, Commit: src.Commit, Ref: src.Ref, Role: src.Role})
	}
	spec := job.Spec{Kind: job.PackageBuild, Build: b, Priority: r.Priority,
		SupersedeKey: r.SupersedeKey, Origin: r.Origin, Labels: map[string]string{"target": r.Target}}
	// The same checks as a client's build: a refusal is recorded with the
	// event instead of a queued build.
	if err := spec.Validate(); err != nil {
		return gerrit.Submitted{}, fmt.Errorf("%w: %w", gerrit.ErrRefused, err)
	}
	if err := s.releases.Check(b); err != nil {
		return gerrit.Submitted{}, fmt.Errorf("%w: %w", gerrit.ErrRefused, err)
	}
	j, dedup, err := s.f.Submit(ctx, spec)
	if err != nil {
		return gerrit.Submitted{}, err
	}
	out := gerrit.Submitted{JobID: j.ID, Reused: dedup}
	if dedup {
		out.Result = s.result(j)
	}
	return out, nil
}

// result is the outcome Gerrit is told of a reused job that has already
// been reported as finished, or nil when its report is still to come: it
// is live, or its publish is.
func (s submitter) result(j *job.Job) *gerrit.BuildResult {
	if !j.State.Final() {
		return nil
	}
	res := &gerrit.BuildResult{JobID: j.ID, State: j.State.String(), LogURL: s.logURL(j.ID)}
	if s.publishing && publish.Wants(j) {
		switch st, loc, _ := publish.Parse(j.Publish); st {
		case publish.StatePublished:
			res.Published = loc
		case publish.StatePending, "":
			return nil // pending: the publisher's Done reports it
		default: // refused, failed, cancelled
			res.State = job.Error.String()
		}
	}
	return res
}

// CancelBuilds cancels the live builds of a supersede key: the review
// builds of a change that was abandoned or deleted.
func (s submitter) CancelBuilds(ctx context.Context, key, reason string) ([]string, error) {
	jobs, err := s.f.CancelBySupersedeKey(ctx, key, reason)
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids, err
}

type events struct{ in *gerrit.Intake }

func (e events) ListEvents(ctx context.Context, limit int, all bool) ([]api.Event, error) {
	list := e.in.ListEvents
	if all {
		list = e.in.ListAllEvents
	}
	recs, err := list(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Event, 0, len(recs))
	for _, r := range recs {
		out = append(out, api.Event{ID: r.ID, Server: r.Server, Type: r.Type, Project: r.Project, Branch: r.Branch,
			Change: r.Change, PatchSet: r.PatchSet, Revision: r.Revision, ReceivedAt: r.ReceivedAt,
			Action: r.Action, Reason: r.Reason, JobIDs: r.JobIDs})
	}
	return out, nil
}

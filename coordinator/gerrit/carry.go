package gerrit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/reconcile"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// stored is an accepted event being decided: id is its row in the store,
// lastTry is set on the last attempt to decide it.
type stored struct {
	event.Event
	id      int64
	lastTry bool
}

// handle decides what to do with one accepted event and does it: it reads
// the facts the decision needs, asks decide, and carries the decision
// out. An error means nothing was recorded: the decision is tried again.
func (in *Intake) handle(ctx context.Context, s *server, ev stored) error {
	name := s.cfg.Name
	if ev.Unknown > 0 {
		in.metrics.unknownFields.WithLabelValues(name).Add(float64(ev.Unknown))
	}
	srv := decide.Server{Name: name, User: s.cfg.User}
	var f decide.Facts
	if in.decider.Noise(srv, ev.Event) == "" && ev.Type != event.TypeDroppedOutput {
		var err error
		if f.Seen, err = in.store.Seen(ctx, decide.DedupKey(name, ev.Event)); err != nil {
			return err
		}
		if !f.Seen && decide.NeedsPatchSet(ev.Event) {
			if f.LatestPatchSet, err = in.store.LatestPatchSet(ctx, name, ev.Change); err != nil {
				return err
			}
		}
	}
	d := in.decider.Decide(srv, ev.Event, f)
	switch d.Kind {
	case decide.Record:
		if d.Action == decide.ActionNoise {
			return in.recordNoise(ctx, s, ev, d.Reason)
		}
		return in.record(ctx, s, ev, d.Action, d.Reason, nil)
	case decide.Reconcile:
		in.logger.Warn("gerrit dropped events; reconciling", "server", name)
		in.triggerReconcile(s)
		return in.record(ctx, s, ev, d.Action, d.Reason, nil)
	case decide.Track:
		if err := in.store.SetHead(ctx, name, ev.Project, ev.Branch, d.Rev, in.now()); err != nil {
			return err
		}
		if err := in.store.AddDedup(ctx, d.DedupKey, in.now()); err != nil {
			return err
		}
		return in.record(ctx, s, ev, d.Action, d.Reason, nil)
	case decide.Untrack:
		if err := in.store.DropHead(ctx, name, ev.Project, ev.Branch); err != nil {
			return err
		}
		if err := in.store.AddDedup(ctx, d.DedupKey, in.now()); err != nil {
			return err
		}
		return in.record(ctx, s, ev, d.Action, d.Reason, nil)
	case decide.Release:
		head, err := in.branchHead(ctx, s, ev, d.Rev)
		if err != nil {
			return err
		}
		return in.queueRelease(ctx, s, ev, d.Plan, head, d.DedupKey, ev.Type)
	case decide.Review:
		return in.queueReview(ctx, s, ev, d)
	case decide.Cancel:
		return in.cancelReviews(ctx, s, ev, d)
	}
	return fmt.Errorf("gerrit event %d: decision %d is not one the intake carries out", ev.id, d.Kind)
}

// countNoise counts an event decided as noise.
func (in *Intake) countNoise(s *server, ev event.Event) {
	name := s.cfg.Name
	switch {
	case !event.Used(ev.Type) && event.Known(ev.Type):
		in.metrics.events.WithLabelValues(name, "other", decide.ActionNoise).Inc()
	case !event.Used(ev.Type):
		in.metrics.unknownTypes.WithLabelValues(name).Inc()
		in.logger.Debug("ignoring unknown event type", "server", name, "type", ev.Type)
	default:
		in.metrics.events.WithLabelValues(name, ev.Type, decide.ActionNoise).Inc()
	}
}

// recordNoise records an event Kiln has no use for.
func (in *Intake) recordNoise(ctx context.Context, s *server, ev stored, reason string) error {
	in.countNoise(s, ev.Event)
	rec := recordOf(s, ev, in.now())
	rec.Action, rec.Reason = decide.ActionNoise, reason
	if _, err := in.store.RecordEvent(ctx, rec); err != nil {
		return err
	}
	return in.maybePrune(ctx)
}

func (in *Intake) record(ctx context.Context, s *server, ev stored, action, reason string, jobs []string) error {
	in.metrics.events.WithLabelValues(s.cfg.Name, ev.Type, action).Inc()
	rec := recordOf(s, ev, in.now())
	rec.Action, rec.Reason, rec.JobIDs = action, reason, jobs
	if _, err := in.store.RecordEvent(ctx, rec); err != nil {
		return err
	}
	return in.maybePrune(ctx)
}

func (in *Intake) maybePrune(ctx context.Context) error {
	if in.inserts.Add(1)%100 != 0 {
		return nil
	}
	return in.store.Prune(ctx, in.cfg.EventLogSize, 30*24*time.Hour, in.now())
}

func recordOf(s *server, ev stored, now time.Time) record.Event {
	return record.Event{
		ID: ev.id, Server: s.cfg.Name, Type: ev.Type, Project: ev.Project, Branch: ev.Branch,
		Change: ev.Change, PatchSet: ev.PatchSet, Revision: eventRevision(ev.Event), ReceivedAt: now,
	}
}

// eventRevision is the commit an event is about.
func eventRevision(ev event.Event) string {
	if ev.Type == event.TypeRefUpdated {
		return ev.NewRev
	}
	return ev.Revision
}

// retryable tells whether a failed head lookup fails the event's decision,
// to be tried again: when the git server did not answer in time, except on
// the event's last attempt. When it answered with an error the decision
// makes do without.
func retryable(ev stored, err error) bool {
	return errors.Is(err, reconcile.ErrTimeout) && !ev.lastTry
}

// branchHead returns the head of the event's branch now, or rev when the
// branch is gone. Release builds always take the head: events come late or
// in batches (a submitted chain of changes gives one change-merged per
// change, each with its own intermediate revision), and building the head
// only never publishes an older state after a newer one. When the head
// cannot be read in time the decision fails, to be tried again; the last
// attempt, or a git server's error, builds rev. Callers hold the event's
// order key.
func (in *Intake) branchHead(ctx context.Context, s *server, ev stored, rev string) (string, error) {
	heads, err := in.git.Heads(ctx, in.gitURL(s, ev.Project))
	if err != nil {
		if retryable(ev, err) {
			return "", fmt.Errorf("read the head of %s branch %s: %w", ev.Project, ev.Branch, err)
		}
		in.logger.Warn("cannot read branch head; building the event's revision", "server", s.cfg.Name,
			"project", ev.Project, "branch", ev.Branch, "revision", rev, "error", err)
		return rev, nil
	}
	if h := heads[ev.Branch]; h != "" {
		return h, nil
	}
	return rev, nil
}

func (in *Intake) gitURL(s *server, project string) string {
	return strings.ReplaceAll(s.cfg.GitURL, "{project}", project)
}

// queueRelease submits release builds of plan with the changed project at
// rev, unless that revision was already queued. Callers hold the branch's
// order key.
func (in *Intake) queueRelease(ctx context.Context, s *server, ev stored, plan decide.Plan, rev, dedup, origin string) error {
	name := s.cfg.Name
	if prev, dup, err := in.store.ReleaseQueued(ctx, name, ev.Project, ev.Branch, rev); err != nil {
		return err
	} else if dup {
		if ev.Change > 0 {
			if err := in.store.AttachChange(ctx, prev, ev.Change, ev.PatchSet); err != nil {
				return err
			}
			// The release build may have been reported already, to the
			// changes known then: this one is due now.
			in.wakeReporter()
		}
		if dedup != "" {
			if err := in.store.AddDedup(ctx, dedup, in.now()); err != nil {
				return err
			}
		}
		return in.record(ctx, s, ev, decide.ActionDuplicate, fmt.Sprintf("revision %s of %s already built or queued (event %d)", short(rev), ev.Branch, prev), nil)
	}
	srcs, heads, reason, err := in.sources(ctx, s, ev, plan, rev, "refs/heads/"+ev.Branch)
	if err != nil {
		return err
	}
	if reason != "" {
		return in.record(ctx, s, ev, decide.ActionIgnored, reason, nil)
	}
	desc := fmt.Sprintf("release: %s %s at %s, %s", ev.Project, ev.Branch, short(rev), origin)
	if ev.Change > 0 {
		desc += fmt.Sprintf(" of change %d", ev.Change)
	}
	desc += " from gerrit " + name
	sub, err := in.submit(ctx, s, ev, plan, srcs, true, desc)
	if errors.Is(err, ErrRefused) {
		return in.record(ctx, s, ev, decide.ActionRefused, err.Error(), sub.ids)
	}
	if err != nil {
		// Tried again; the builds submitted so far are found by their
		// build key then.
		return err
	}
	rec := recordOf(s, ev, in.now())
	rec.Revision, rec.Action, rec.JobIDs = rev, decide.ActionBuilt, sub.ids
	rec.Reason = fmt.Sprintf("release build of %s for %s (%s)", plan.Package, plan.Release, strings.Join(plan.Targets, ", "))
	if want := cmp.Or(ev.NewRev, ev.Revision); want != rev {
		rec.Reason += fmt.Sprintf(" at the branch head %s, which includes the event's %s", short(rev), short(want))
	}
	rec.Reason = sub.reason(rec.Reason)
	in.metrics.events.WithLabelValues(name, ev.Type, decide.ActionBuilt).Inc()
	return in.commitJobs(ctx, record.Queued{Event: rec, DedupKey: dedup, Jobs: sub.jobs, Finished: sub.finished, Heads: heads, Release: true})
}

// sources resolves the plan's projects: the changed one at rev (from ref),
// the others at the head of the same branch. A non-empty reason means the
// build cannot be made. A head that cannot be read in time is an error,
// to try again (see retryable).
func (in *Intake) sources(ctx context.Context, s *server, ev stored, plan decide.Plan, rev, ref string) ([]Source, []record.Head, string, error) {
	project, branch := ev.Project, ev.Branch
	var srcs []Source
	var heads []record.Head
	for _, ps := range plan.Sources {
		src := Source{URL: in.gitURL(s, ps.Project), Role: ps.Role}
		if ps.Project == project {
			src.Commit, src.Ref = rev, ref
		} else {
			all, err := in.git.Heads(ctx, src.URL)
			if err != nil && retryable(ev, err) {
				return nil, nil, "", fmt.Errorf("read the head of %s branch %s: %w", ps.Project, branch, err)
			}
			if err != nil {
				return nil, nil, fmt.Sprintf("cannot read the head of %s branch %s: %v", ps.Project, branch, err), nil
			}
			c := all[branch]
			if c == "" {
				return nil, nil, fmt.Sprintf("%s has no branch %s to build %s with", ps.Project, branch, project), nil
			}
			src.Commit, src.Ref = c, "refs/heads/"+branch
		}
		srcs = append(srcs, src)
		heads = append(heads, record.Head{Project: ps.Project, Branch: branch, Revision: src.Commit})
	}
	return srcs, heads, "", nil
}

// submission is what submit queued: the jobs to record, their ids, the
// results of reused jobs that already finished and, for people, which jobs
// were reused.
type submission struct {
	jobs     []record.Job
	ids      []string
	finished []record.Result
	reused   []string
}

// reason is what the event log says of the builds.
func (sub submission) reason(base string) string {
	if len(sub.reused) == 0 {
		return base
	}
	return base + "; reuses " + strings.Join(sub.reused, ", ") + ", already queued, running or built from the same sources and recipe"
}

func (in *Intake) submit(ctx context.Context, s *server, ev stored, plan decide.Plan, srcs []Source, release bool, origin string) (submission, error) {
	var sub submission
	kind, prio := record.KindReview, PriorityReview
	if release {
		kind, prio = record.KindRelease, PriorityRelease
	}
	for _, t := range plan.Targets {
		req := BuildRequest{
			Release: plan.Release, Target: t, Package: plan.Package, Sources: srcs,
			Publish: release, Priority: prio, Origin: origin,
		}
		if !release {
			req.SupersedeKey = decide.ReviewKey(s.cfg.Name, ev.Change, t)
		}
		got, err := in.builds.SubmitBuild(ctx, req)
		if err != nil {
			return sub, fmt.Errorf("submit %s build of %s for %s %s: %w", kind, plan.Package, plan.Release, t, err)
		}
		sub.ids = append(sub.ids, got.JobID)
		sub.jobs = append(sub.jobs, record.Job{
			JobID: got.JobID, Server: s.cfg.Name, Kind: kind, Change: ev.Change, PatchSet: ev.PatchSet,
			Revision: ev.Revision, Release: plan.Release, Target: t, Package: plan.Package,
		})
		if got.Reused {
			sub.reused = append(sub.reused, fmt.Sprintf("job %s for %s", got.JobID, t))
		}
		if got.Result != nil {
			res := *got.Result
			res.JobID = got.JobID
			sub.finished = append(sub.finished, record.Result(res))
		}
	}
	in.metrics.builds.WithLabelValues(s.cfg.Name, kind).Add(float64(len(sub.ids)))
	return sub, nil
}

// queueReview submits the review builds of a decision.
func (in *Intake) queueReview(ctx context.Context, s *server, ev stored, d decide.Decision) error {
	plan := d.Plan
	srcs, _, reason, err := in.sources(ctx, s, ev, plan, d.Rev, d.Ref)
	if err != nil {
		return err
	}
	if reason != "" {
		return in.record(ctx, s, ev, decide.ActionIgnored, reason, nil)
	}
	// The job list's change filter (coordinator/store/query.go) and the
	// job page (coordinator/web) read the change from this wording.
	origin := fmt.Sprintf("gerrit %s: review build of change %d patch set %d (%s %s)", s.cfg.Name, ev.Change, ev.PatchSet, ev.Project, ev.Branch)
	sub, err := in.submit(ctx, s, ev, plan, srcs, false, origin)
	if errors.Is(err, ErrRefused) {
		return in.record(ctx, s, ev, decide.ActionRefused, err.Error(), sub.ids)
	}
	if err != nil {
		return err // tried again
	}
	rec := recordOf(s, ev, in.now())
	rec.Action, rec.JobIDs = decide.ActionBuilt, sub.ids
	rec.Reason = fmt.Sprintf("review build of %s for %s (%s)", plan.Package, plan.Release, strings.Join(plan.Targets, ", "))
	if d.Reason != "" {
		rec.Reason = d.Reason + ": " + rec.Reason
	}
	rec.Reason = sub.reason(rec.Reason)
	in.metrics.events.WithLabelValues(s.cfg.Name, ev.Type, decide.ActionBuilt).Inc()
	return in.commitJobs(ctx, record.Queued{Event: rec, DedupKey: d.DedupKey, Jobs: sub.jobs, Finished: sub.finished, Supersede: true})
}

// cancelReviews cancels the queued and running review builds of an abandoned
// or deleted change and keeps every review build of it from voting: a
// build that finished meanwhile reports nothing either. The event is
// de-duplicated like others, so a replay after a reconnect does not cancel
// the builds of a change restored since. A restored change (an ignored
// change-restored event) is built again by its next patch set or a recheck
// comment.
func (in *Intake) cancelReviews(ctx context.Context, s *server, ev stored, d decide.Decision) error {
	name := s.cfg.Name
	// Reports are closed first: a build that finishes while the others are
	// being cancelled does not vote either.
	in.reportMu.Lock()
	err := in.store.CloseReports(ctx, name, ev.Change, in.now())
	in.reportMu.Unlock()
	if err != nil {
		return err
	}
	// The targets are those of the builds recorded for the change, not the
	// rules', which may have changed since the builds were queued.
	targets, err := in.store.ReviewTargets(ctx, name, ev.Change)
	if err != nil {
		return err
	}
	var ids []string
	for _, t := range targets {
		got, err := in.builds.CancelBuilds(ctx, decide.ReviewKey(name, ev.Change, t), d.Reason)
		ids = append(ids, got...)
		if err != nil {
			return fmt.Errorf("cancel review builds of change %d for %s: %w", ev.Change, t, err)
		}
	}
	if err := in.store.AddDedup(ctx, d.DedupKey, in.now()); err != nil {
		return err
	}
	if len(ids) == 0 {
		return in.record(ctx, s, ev, decide.ActionIgnored, d.Reason+"; no queued or running review build to cancel", nil)
	}
	return in.record(ctx, s, ev, decide.ActionCanceled, d.Reason+"; its queued and running review builds are cancelled and none will vote", ids)
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

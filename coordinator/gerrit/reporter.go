package gerrit

import (
	"context"
	"errors"
	"fmt"
	"github.com/kiln-build/kiln/coordinator/gerrit/report"
	"net/url"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// BuildFinished records a finished job and wakes the reporter: once every
// job of an event that asked for it has finished, the event is due and the
// reporter posts its report to Gerrit (a job reused by several events
// reports each): a Verified vote and a message with each target's result
// and log after review builds, a message saying where the package was
// published to every merged change after release builds. It does not wait
// for Gerrit. Results for jobs the intake did not submit are kept a day (in
// case the intake is about to record the job) and then dropped.
func (in *Intake) BuildFinished(ctx context.Context, res BuildResult) error {
	switch res.State {
	case record.StateSucceeded, record.StateFailed, record.StateError, record.StateCanceled:
	default:
		return fmt.Errorf("job %s: state %q: want succeeded, failed, error or canceled", res.JobID, res.State)
	}
	if res.LogURL == "" && in.cfg.LogURL != "" {
		res.LogURL = strings.ReplaceAll(in.cfg.LogURL, "{job}", url.PathEscape(res.JobID))
	}
	in.reportMu.Lock()
	ok, err := in.store.FinishJob(ctx, record.Result(res))
	if err == nil && !ok {
		// Not ours, or finished before the intake recorded it: keep it for
		// commitJobs, which applies it.
		err = in.store.SaveEarly(ctx, record.Result(res), in.now())
	}
	in.reportMu.Unlock()
	if err != nil {
		return err
	}
	if ok {
		in.wakeReporter()
	}
	return nil
}

// wakeReporter tells the reporter that reports may be due; it never blocks,
// and wakes while the reporter is busy make one more pass.
func (in *Intake) wakeReporter() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// runReporter posts due reports until ctx ends: at start (what an earlier
// run left), when woken, and every retry interval, when reports that
// failed are tried again. What is left unreported when ctx ends stays due
// in the store.
func (in *Intake) runReporter(ctx context.Context) error {
	t := time.NewTicker(in.retryEvery)
	defer t.Stop()
	retry := true
	for {
		if err := in.postDue(ctx, retry); err != nil && ctx.Err() == nil {
			in.logger.Warn("reporting to gerrit failed; trying again later", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-in.wake:
			retry = false
		case <-t.C:
			retry = true
		}
	}
}

// postDue posts the reports of due events: those received in the last day
// whose jobs have all finished and that are not marked reported. Events
// whose report failed are left for a pass with retry set. One pass runs at
// a time, so no report is posted twice; reportMu is held only to read and
// write the store, never while Gerrit is called.
func (in *Intake) postDue(ctx context.Context, retry bool) error {
	in.postMu.Lock()
	defer in.postMu.Unlock()
	if retry {
		clear(in.failed)
	}
	since := in.now().Add(-reportFor)
	var errs []error
	down := map[string]bool{}
	for after := int64(0); ; {
		in.reportMu.Lock()
		ids, err := in.store.Unreported(ctx, since, after, duePage)
		in.reportMu.Unlock()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if ctx.Err() != nil {
				return errors.Join(append(errs, ctx.Err())...)
			}
			if in.failed[id] {
				continue
			}
			switch err := in.post(ctx, id, down); {
			case errors.Is(err, errServerDown):
				// Left due for the next pass.
			case err != nil:
				in.failed[id] = true
				errs = append(errs, err)
			}
		}
		if len(ids) < duePage {
			break
		}
		after = ids[len(ids)-1]
	}
	return errors.Join(errs...)
}

// errServerDown means a post was not tried because its server failed
// earlier in the same pass.
var errServerDown = errors.New("gerrit server failed earlier in this pass")

// reportFor is how long after its event a report is tried.
const reportFor = 24 * time.Hour

// duePage is how many due events postDue reads at a time.
const duePage = 100

// post posts the report of a due event to each change not told yet and
// marks the event reported once all are.
//
// A server that failed a post earlier in the same pass (down) is not
// tried again in that pass: with a one-minute timeout per post, a hung
// server would otherwise hold the other servers' reports for minutes.
func (in *Intake) post(ctx context.Context, eventID int64, down map[string]bool) error {
	in.reportMu.Lock()
	p, err := in.pendingReport(ctx, eventID)
	in.reportMu.Unlock()
	if err != nil || p == nil {
		return err
	}
	if down[p.server] && len(p.changes) > 0 {
		return errServerDown
	}
	var errs []error
	for _, c := range p.skip {
		if err := in.markReported(ctx, eventID, c); err != nil {
			return err
		}
	}
	for _, c := range p.changes {
		rev := p.review
		rev.Change, rev.PatchSet = c[0], c[1]
		if p.kind == record.KindRelease || c[0] != p.review.Change {
			rev.Revision = ""
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := in.reviewer.Review(rctx, p.server, rev)
		cancel()
		if err != nil {
			in.metrics.reviews.WithLabelValues(p.server, "error").Inc()
			errs = append(errs, fmt.Errorf("report to gerrit %s change %d patch set %d: %w", p.server, c[0], c[1], err))
			down[p.server] = true
			break
		}
		in.metrics.reviews.WithLabelValues(p.server, "ok").Inc()
		in.logger.Info("reported to gerrit", "server", p.server, "change", c[0], "patch_set", c[1],
			"event_id", eventID, "labels", fmt.Sprint(rev.Labels))
		if err := in.markReported(ctx, eventID, c[0]); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return in.markReported(ctx, eventID, 0)
}

// markReported records a post that happened: also when ctx is ending, or
// the vote would be posted again after a restart.
func (in *Intake) markReported(ctx context.Context, eventID, change int64) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	in.reportMu.Lock()
	defer in.reportMu.Unlock()
	return in.store.MarkReported(ctx, eventID, change, in.now())
}

// pending is the report of an event and the changes still to get it.
type pending struct {
	server  string
	kind    string
	review  report.Review
	changes [][2]int64
	// skip are changes that get no post (the builds were superseded or
	// cancelled) but count as told.
	skip []int64
}

// pendingReport reads what is left to post of an event's report; nil when
// nothing is (some jobs still running, or reported already). Callers hold
// reportMu.
func (in *Intake) pendingReport(ctx context.Context, eventID int64) (*pending, error) {
	jobs, err := in.store.EventJobs(ctx, eventID)
	if err != nil || len(jobs) == 0 {
		return nil, err
	}
	for _, j := range jobs {
		if j.State == "" {
			return nil, nil // others still running
		}
	}
	first := jobs[0]
	// A release build's report goes to every merged change, and a change
	// can be attached after the report went to the others (its
	// change-merged came after the build ended): only the changes matter.
	if first.Kind != record.KindRelease {
		if done, err := in.store.Reported(ctx, eventID, 0); err != nil || done {
			return nil, err
		}
	}
	p := &pending{server: first.Server, kind: first.Kind}
	rev, ok := report.Compose(jobs, report.Votes{Label: in.cfg.Verified.Label, Success: in.cfg.Verified.Success, Failure: in.cfg.Verified.Failure}, in.cfg.Tag)
	p.review = rev
	changes := [][2]int64{{first.Change, first.PatchSet}}
	if first.Kind == record.KindRelease {
		if changes, err = in.store.EventChanges(ctx, eventID); err != nil {
			return nil, err
		}
	}
	for _, c := range changes {
		if c[0] <= 0 || c[1] <= 0 {
			continue
		}
		if done, err := in.store.Reported(ctx, eventID, c[0]); err != nil {
			return nil, err
		} else if !done && ok {
			p.changes = append(p.changes, c)
		} else if !done {
			p.skip = append(p.skip, c[0]) // nothing to post: marked as told
		}
	}
	return p, nil
}

// commitJobs writes down queued builds, then records the results known for
// them: those that arrived before that, those of reused jobs recorded for
// other events, and those of reused jobs that had finished when submitted
// (the coordinator tells of a job's end once, so these are recorded now).
// The reporter posts what that makes due.
func (in *Intake) commitJobs(ctx context.Context, q record.Queued) error {
	// The builds are submitted: write them down even when shutting down.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	in.reportMu.Lock()
	_, err := in.store.CommitQueued(ctx, q, in.now())
	var results, known []record.Result
	if err == nil {
		ids := make([]string, len(q.Jobs))
		for i, j := range q.Jobs {
			ids[i] = j.JobID
		}
		results, err = in.store.TakeEarly(ctx, ids)
		if err == nil {
			// Only from rows of the same kind: a release build that
			// reuses a review's job is done when it is published, which
			// the review's row does not say.
			kind := record.KindReview
			if q.Release {
				kind = record.KindRelease
			}
			known, err = in.store.KnownResults(ctx, ids, kind)
		}
	}
	in.reportMu.Unlock()
	if err != nil {
		return err
	}
	results = append(append(results, known...), q.Finished...)
	applied := map[string]bool{}
	var errs []error
	for _, r := range results {
		if applied[r.JobID] {
			continue
		}
		applied[r.JobID] = true
		errs = append(errs, in.BuildFinished(ctx, BuildResult(r)))
	}
	return errors.Join(errs...)
}

package gerrit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// BuildFinished records a finished job and, once every job of an event
// that asked for it has finished, reports that event to Gerrit (a job
// reused by several events reports each): a Verified vote and a message with
// each target's result and log after review builds, a message saying where
// the package was published to every merged change after release builds.
// Results for jobs the intake did not submit are kept a day (in case the
// intake is about to record the job) and then dropped. A report that fails
// is returned as an error and retried by Run every minute for a day.
func (in *Intake) BuildFinished(ctx context.Context, res BuildResult) error {
	switch res.State {
	case StateSucceeded, StateFailed, StateError, StateCanceled:
	default:
		return fmt.Errorf("job %s: state %q: want succeeded, failed, error or canceled", res.JobID, res.State)
	}
	if res.LogURL == "" && in.cfg.LogURL != "" {
		res.LogURL = strings.ReplaceAll(in.cfg.LogURL, "{job}", url.PathEscape(res.JobID))
	}
	in.reportMu.Lock()
	defer in.reportMu.Unlock()
	events, ok, err := in.store.finishJob(ctx, res)
	if err != nil {
		return err
	}
	if !ok {
		// Not ours, or finished before the intake recorded it: keep it for
		// commitJobs, which applies it.
		return in.store.saveEarly(ctx, res, in.now())
	}
	var errs []error
	for _, jobs := range events {
		errs = append(errs, in.report(ctx, jobs))
	}
	return errors.Join(errs...)
}

// retryReports reports events whose report failed before. It is called
// with reportMu unlocked.
func (in *Intake) retryReports(ctx context.Context) error {
	in.reportMu.Lock()
	defer in.reportMu.Unlock()
	ids, err := in.store.unreported(ctx, in.now().Add(-24*time.Hour))
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		jobs, err := in.store.eventJobs(ctx, id)
		if err == nil && len(jobs) > 0 {
			err = in.report(ctx, jobs)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runReportRetries retries failed reports every minute until ctx ends.
func (in *Intake) runReportRetries(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := in.retryReports(ctx); err != nil && ctx.Err() == nil {
			in.logger.Warn("retrying reports to gerrit failed; trying again later", "error", err)
		}
	}
}

// report posts the report of an event whose jobs may all have finished.
// Callers hold reportMu.
func (in *Intake) report(ctx context.Context, jobs []jobRow) error {
	for _, j := range jobs {
		if j.State == "" {
			return nil // others still running
		}
	}
	first := jobs[0]
	if done, err := in.store.reported(ctx, first.EventID, 0); err != nil || done {
		return err
	}
	changes := [][2]int64{{first.Change, first.PatchSet}}
	if first.Kind == kindRelease {
		var err error
		if changes, err = in.store.eventChanges(ctx, first.EventID); err != nil {
			return err
		}
	}
	rev, ok := in.composeReview(jobs)
	var errs []error
	for _, c := range changes {
		if !ok || c[0] <= 0 || c[1] <= 0 {
			break
		}
		if done, err := in.store.reported(ctx, first.EventID, c[0]); err != nil {
			return err
		} else if done {
			continue
		}
		rev.Change, rev.PatchSet = c[0], c[1]
		if first.Kind == kindRelease || c[0] != first.Change {
			rev.Revision = ""
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := in.reviewer.Review(rctx, first.Server, rev)
		cancel()
		if err != nil {
			in.metrics.reviews.WithLabelValues(first.Server, "error").Inc()
			errs = append(errs, fmt.Errorf("report to gerrit %s change %d patch set %d: %w", first.Server, c[0], c[1], err))
			continue
		}
		in.metrics.reviews.WithLabelValues(first.Server, "ok").Inc()
		in.logger.Info("reported to gerrit", "server", first.Server, "change", c[0], "patch_set", c[1],
			"event_id", first.EventID, "labels", fmt.Sprint(rev.Labels))
		if err := in.store.markReported(ctx, first.EventID, c[0], in.now()); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return in.store.markReported(ctx, first.EventID, 0, in.now())
}

// commitJobs writes down queued builds, then applies the results known for
// them: those that arrived before that, those of reused jobs recorded for
// other events, and those of reused jobs that had finished when submitted
// (the coordinator tells of a job's end once, so these are reported now).
func (in *Intake) commitJobs(ctx context.Context, q queued) error {
	// The builds are submitted: write them down even when shutting down.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	in.reportMu.Lock()
	_, err := in.store.commitQueued(ctx, q, in.now())
	var results, known []BuildResult
	if err == nil {
		ids := make([]string, len(q.jobs))
		for i, j := range q.jobs {
			ids[i] = j.JobID
		}
		results, err = in.store.takeEarly(ctx, ids)
		if err == nil {
			known, err = in.store.knownResults(ctx, ids)
		}
	}
	in.reportMu.Unlock()
	if err != nil {
		return err
	}
	results = append(append(results, known...), q.finished...)
	applied := map[string]bool{}
	var errs []error
	for _, r := range results {
		if applied[r.JobID] {
			continue
		}
		applied[r.JobID] = true
		errs = append(errs, in.BuildFinished(ctx, r))
	}
	return errors.Join(errs...)
}

// composeReview builds the review for an event's finished jobs; report is
// false when nothing should be posted (superseded review builds, or builds
// cancelled by hand or with their abandoned or deleted change).
func (in *Intake) composeReview(jobs []jobRow) (Review, bool) {
	first := jobs[0]
	r := Review{Change: first.Change, PatchSet: first.PatchSet, Revision: first.Revision, Tag: in.cfg.Tag}
	var b strings.Builder
	if first.Kind == kindRelease {
		fmt.Fprintf(&b, "Kiln release build of %s for %s:\n", first.Package, first.Release)
		for _, j := range jobs {
			switch {
			case j.State == StateSucceeded && j.Publish != "":
				fmt.Fprintf(&b, "\n* %s: published to %s", j.Target, j.Publish)
			case j.State == StateSucceeded:
				fmt.Fprintf(&b, "\n* %s: built", j.Target)
			default:
				fmt.Fprintf(&b, "\n* %s: %s, not published", j.Target, describe(j.State))
			}
			if j.LogURL != "" {
				fmt.Fprintf(&b, " (log: %s)", j.LogURL)
			}
		}
		r.Message = b.String()
		return r, true
	}
	vote := in.cfg.Verified.Success
	for _, j := range jobs {
		if j.State == StateCanceled {
			return Review{}, false // superseded (a newer build speaks) or cancelled
		}
		if j.State != StateSucceeded {
			vote = in.cfg.Verified.Failure
		}
	}
	verdict := "succeeded"
	if vote < 0 {
		verdict = "failed"
	}
	fmt.Fprintf(&b, "Kiln review build of %s for %s %s:\n", first.Package, first.Release, verdict)
	for _, j := range jobs {
		fmt.Fprintf(&b, "\n* %s: %s", j.Target, describe(j.State))
		if j.LogURL != "" {
			fmt.Fprintf(&b, " (log: %s)", j.LogURL)
		}
	}
	r.Message = b.String()
	r.Labels = map[string]int{in.cfg.Verified.Label: vote}
	return r, true
}

func describe(state string) string {
	switch state {
	case StateSucceeded:
		return "SUCCESS"
	case StateFailed:
		return "FAILURE"
	case StateError:
		return "ERROR (infrastructure; recheck to try again)"
	case StateCanceled:
		return "CANCELED"
	}
	return state
}

// serverReviewer sends each server's reviews over REST or SSH.
type serverReviewer struct {
	rest map[string]*restReviewer
	ssh  map[string]*sshDialer
}

func (s *serverReviewer) Review(ctx context.Context, server string, r Review) error {
	if rr := s.rest[server]; rr != nil {
		return rr.review(ctx, r)
	}
	d := s.ssh[server]
	if d == nil {
		return fmt.Errorf("gerrit server %q: not configured", server)
	}
	cmd := ReviewCommand(r)
	out, err := d.run(ctx, cmd)
	if err != nil {
		return fmt.Errorf("gerrit review: %w: %s", err, strings.TrimSpace(truncate(out, 1024)))
	}
	return nil
}

// ReviewCommand is the `gerrit review` command line for r, quoted for
// Gerrit's SSH command parser.
func ReviewCommand(r Review) string {
	args := []string{"gerrit", "review"}
	if r.Message != "" {
		args = append(args, "--message", quote(r.Message))
	}
	labels := make([]string, 0, len(r.Labels))
	for l := range r.Labels {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		args = append(args, "--label", quote(fmt.Sprintf("%s=%+d", l, r.Labels[l])))
	}
	if r.Tag != "" {
		args = append(args, "--tag", quote(r.Tag))
	}
	args = append(args, fmt.Sprintf("%d,%d", r.Change, r.PatchSet))
	return strings.Join(args, " ")
}

// quote wraps s in single quotes; Gerrit's command line parser keeps
// everything inside them, and a single quote is closed, escaped and reopened.
func quote(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD") // Gerrit reads the command line as UTF-8
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// restReviewer posts reviews with Gerrit's REST API.
type restReviewer struct {
	base     string
	user     string
	password string
	client   *http.Client
}

func newRESTReviewer(sc ServerConfig) (*restReviewer, error) {
	pw, err := os.ReadFile(sc.HTTPPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("read http_password_file: %w", err)
	}
	return &restReviewer{
		base:     strings.TrimSuffix(sc.RESTURL, "/"),
		user:     sc.User,
		password: strings.TrimSpace(string(pw)),
		client:   &http.Client{Timeout: time.Minute},
	}, nil
}

func (rr *restReviewer) review(ctx context.Context, r Review) error {
	body := map[string]any{"message": r.Message}
	if len(r.Labels) > 0 {
		body["labels"] = r.Labels
	}
	if r.Tag != "" {
		body["tag"] = r.Tag
	}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode review: %w", err)
	}
	rev := fmt.Sprint(r.PatchSet)
	if r.Revision != "" {
		rev = r.Revision
	}
	u := fmt.Sprintf("%s/a/changes/%d/revisions/%s/review", rr.base, r.Change, url.PathEscape(rev))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("review request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.SetBasicAuth(rr.user, rr.password)
	resp, err := rr.client.Do(req)
	if err != nil {
		return fmt.Errorf("post review: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post review to %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

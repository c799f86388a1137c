// Package report says what Kiln tells Gerrit when an event's builds have
// finished, and tells it: Compose writes the review (message and vote)
// from the finished jobs, and Servers posts it with gerrit review over SSH
// or with Gerrit's REST API. When a report is due, and which changes get
// it, is the intake's reporter's business.
package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// Review is one review message, with optional votes.
type Review struct {
	Change   int64
	PatchSet int64
	// Revision, when set, is the patch set's commit (REST posts to it).
	Revision string
	Message  string
	Labels   map[string]int
	Tag      string
}

// Votes are the label voted after review builds and its values.
type Votes struct {
	Label            string
	Success, Failure int
}

// Compose builds the review for an event's finished jobs (at least one);
// ok is false when nothing should be posted (superseded review builds, or
// builds cancelled by hand or with their abandoned or deleted change). A
// release build's review says where each target was published; a review
// build's votes Failure when a target failed, Success when all succeeded,
// and nothing when Kiln could not finish one (infrastructure) and none
// failed.
func Compose(jobs []record.Job, votes Votes, tag string) (r Review, ok bool) {
	first := jobs[0]
	r = Review{Change: first.Change, PatchSet: first.PatchSet, Revision: first.Revision, Tag: tag}
	var b strings.Builder
	if first.Kind == record.KindRelease {
		fmt.Fprintf(&b, "Kiln release build of %s for %s:\n", first.Package, first.Release)
		for _, j := range jobs {
			switch {
			case j.State == record.StateSucceeded && j.Publish != "":
				fmt.Fprintf(&b, "\n* %s: published to %s", j.Target, j.Publish)
			case j.State == record.StateSucceeded:
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
	// A build that failed votes against the change; one that Kiln could
	// not finish (state error: worker lost, containerd down) says nothing
	// of the change, so it does not vote unless another target failed.
	failed, broken := false, false
	for _, j := range jobs {
		switch j.State {
		case record.StateCanceled:
			return Review{}, false // superseded (a newer build speaks) or cancelled
		case record.StateSucceeded:
		case record.StateError:
			broken = true
		default:
			failed = true
		}
	}
	verdict := "succeeded"
	switch {
	case failed:
		verdict = "failed"
	case broken:
		verdict = "could not be finished because of an infrastructure failure; no vote. Comment \"recheck\" to build it again"
	}
	fmt.Fprintf(&b, "Kiln review build of %s for %s %s:\n", first.Package, first.Release, verdict)
	for _, j := range jobs {
		fmt.Fprintf(&b, "\n* %s: %s", j.Target, describe(j.State))
		if j.LogURL != "" {
			fmt.Fprintf(&b, " (log: %s)", j.LogURL)
		}
	}
	r.Message = b.String()
	switch {
	case failed:
		r.Labels = map[string]int{votes.Label: votes.Failure}
	case !broken:
		r.Labels = map[string]int{votes.Label: votes.Success}
	}
	return r, true
}

// describe is a job state as the review says it.
func describe(state string) string {
	switch state {
	case record.StateSucceeded:
		return "SUCCESS"
	case record.StateFailed:
		return "FAILURE"
	case record.StateError:
		return "ERROR (infrastructure; recheck to try again)"
	case record.StateCanceled:
		return "CANCELED"
	}
	return state
}

// Runner runs a command on a Gerrit server over SSH.
type Runner interface {
	Run(ctx context.Context, cmd string) ([]byte, error)
}

// Servers posts each server's reviews over REST or, with gerrit review,
// over SSH.
type Servers struct {
	REST map[string]*REST
	SSH  map[string]Runner
}

// Review posts r on server.
func (s *Servers) Review(ctx context.Context, server string, r Review) error {
	if rr := s.REST[server]; rr != nil {
		return rr.Review(ctx, r)
	}
	d := s.SSH[server]
	if d == nil {
		return fmt.Errorf("gerrit server %q: not configured", server)
	}
	cmd := ReviewCommand(r)
	out, err := d.Run(ctx, cmd)
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

// REST posts reviews with Gerrit's REST API.
type REST struct {
	base     string
	user     string
	password string
	client   *http.Client
}

// NewREST posts to the Gerrit at base (its rest_url) as user, with the
// HTTP password in passwordFile.
func NewREST(base, user, passwordFile string) (*REST, error) {
	pw, err := os.ReadFile(passwordFile)
	if err != nil {
		return nil, fmt.Errorf("read http_password_file: %w", err)
	}
	return &REST{
		base:     strings.TrimSuffix(base, "/"),
		user:     user,
		password: strings.TrimSpace(string(pw)),
		client:   &http.Client{Timeout: time.Minute},
	}, nil
}

// Review posts r.
func (rr *REST) Review(ctx context.Context, r Review) error {
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

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

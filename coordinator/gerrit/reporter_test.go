package gerrit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/gerrit/report"
)

// heldReviewer is a Gerrit whose reviews hang, as a hung server's do,
// until it is let go; then it records them.
type heldReviewer struct {
	started chan struct{} // a token when a review call starts
	free    chan struct{} // closed by letGo
	once    sync.Once

	mu      sync.Mutex
	posted  []report.Review
	changed chan struct{} // closed and replaced on every post
}

func newHeldReviewer() *heldReviewer {
	return &heldReviewer{started: make(chan struct{}, 1), free: make(chan struct{}), changed: make(chan struct{})}
}

func (r *heldReviewer) Review(ctx context.Context, _ string, rev report.Review) error {
	select {
	case r.started <- struct{}{}:
	default:
	}
	select {
	case <-r.free:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posted = append(r.posted, rev)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

func (r *heldReviewer) letGo() { r.once.Do(func() { close(r.free) }) }

// waitStarted waits until a review call is in flight.
func (r *heldReviewer) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-r.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no review was posted")
	}
}

// wait waits until at least n reviews were posted.
func (r *heldReviewer) wait(t *testing.T, n int) []report.Review {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		got, ch := append([]report.Review(nil), r.posted...), r.changed
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d reviews posted, want %d", len(got), n)
		}
	}
}

// promptly fails the test when f does not return within d.
func promptly(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not return in %s: it waits for Gerrit", what, d)
	}
}

// perChange counts reviews by change and checks each has the vote want
// gives it.
func perChange(t *testing.T, revs []report.Review, want func(change int64) int) map[int64]int {
	t.Helper()
	n := map[int64]int{}
	for _, r := range revs {
		n[r.Change]++
		if v := r.Labels["Verified"]; v != want(r.Change) {
			t.Errorf("change %d voted %d, want %d", r.Change, v, want(r.Change))
		}
	}
	return n
}

// hungWithPost starts an intake whose Gerrit hangs, with change's review
// (job-1, succeeded) being posted.
func hungWithPost(ctx context.Context, t *testing.T, change int) (*harness, *heldReviewer) {
	t.Helper()
	rv := newHeldReviewer()
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Reviewer: rv})
	t.Cleanup(rv.letGo) // before the intake stops
	h.srv.Send(patchsetCreated(nginx, "9.0", change, 1, psRev))
	h.builds.wait(t, 1, 10*time.Second)
	promptly(t, "BuildFinished", 30*time.Second, func() error {
		return h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateSucceeded})
	})
	rv.waitStarted(t)
	return h, rv
}

// TestHungGerritDoesNotStallIntake: while Gerrit does not answer a review,
// a flood of patch sets is still handled and recorded and build results
// are recorded; once Gerrit answers, every vote arrives, once.
func TestHungGerritDoesNotStallIntake(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, rv := hungWithPost(ctx, t, 1000)

	const flood = 200
	for i := range flood {
		change := 2000 + i
		h.srv.Send(patchsetCreated(nginx, "9.0", change, 1, fmt.Sprintf("%040x", change)))
	}
	h.builds.wait(t, 1+flood, 20*time.Second)
	h.sync()
	evs, err := h.in.ListEvents(ctx, 2*flood)
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	for _, e := range evs {
		if e.Type == event.TypePatchsetCreated && e.Change >= 2000 && e.Action == decide.ActionBuilt && len(e.JobIDs) == 1 {
			built++
		}
	}
	if built != flood {
		t.Fatalf("%d of %d patch sets logged as built while Gerrit hangs", built, flood)
	}

	// Even numbers fail.
	vote := func(change int64) int {
		if change%2 == 0 && change >= 2000 {
			return -1
		}
		return 1
	}
	// Changes are decided side by side: job-N is the N-th build submitted.
	reqs := h.builds.all()
	promptly(t, "recording results", 30*time.Second, func() error {
		for i := 1; i <= flood; i++ {
			var change int64
			if _, err := fmt.Sscanf(reqs[i].SupersedeKey, "gerrit/review/%d/", &change); err != nil {
				return fmt.Errorf("supersede key %q: %w", reqs[i].SupersedeKey, err)
			}
			state := record.StateSucceeded
			if vote(change) < 0 {
				state = record.StateFailed
			}
			if err := h.in.BuildFinished(ctx, BuildResult{JobID: fmt.Sprintf("job-%d", 1+i), State: state}); err != nil {
				return err
			}
		}
		return nil
	})
	var finished int
	if err := h.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM gerrit_jobs WHERE state != ''`).Scan(&finished); err != nil {
		t.Fatal(err)
	}
	if finished != 1+flood {
		t.Fatalf("%d results recorded, want %d", finished, 1+flood)
	}
	if got := rv.wait(t, 0); len(got) != 0 {
		t.Fatalf("%d reviews posted while Gerrit hangs", len(got))
	}
	if due := h.counter("kiln_gerrit_reports_due"); due != 1+flood {
		t.Errorf("%v reports due while Gerrit hangs, want %d", due, 1+flood)
	}

	rv.letGo()
	rv.wait(t, 1+flood)
	if err := h.in.postDue(ctx, true); err != nil {
		t.Fatal(err)
	}
	revs := rv.wait(t, 0)
	n := perChange(t, revs, vote)
	if len(revs) != 1+flood || len(n) != 1+flood {
		t.Fatalf("%d reviews on %d changes, want one on each of %d", len(revs), len(n), 1+flood)
	}
	if due := h.counter("kiln_gerrit_reports_due"); due != 0 {
		t.Errorf("%v reports due after all were posted", due)
	}
}

// TestResultDuringPostNotPostedTwice: results that arrive for an event
// while its review is being posted (the same job again, another event
// sharing the job) do not post that review again.
func TestResultDuringPostNotPostedTwice(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, rv := hungWithPost(ctx, t, 40)

	// The coordinator tells of the job again, and another change at the
	// same commit gets the finished job.
	promptly(t, "BuildFinished again", 30*time.Second, func() error {
		return h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateSucceeded})
	})
	h.builds.mu.Lock()
	h.builds.reuse = func(BuildRequest) (Submitted, bool) { return Submitted{JobID: "job-1", Reused: true}, true }
	h.builds.mu.Unlock()
	h.srv.Send(patchsetCreated(nginx, "9.0", 41, 1, psRev))
	h.sync()

	rv.letGo()
	rv.wait(t, 2)
	if err := h.in.postDue(ctx, true); err != nil {
		t.Fatal(err)
	}
	revs := rv.wait(t, 0)
	if n := perChange(t, revs, func(int64) int { return 1 }); len(revs) != 2 || n[40] != 1 || n[41] != 1 {
		t.Fatalf("reviews %+v, want one on 40 and one on 41", revs)
	}
}

// TestUnreportedPostedAfterRestart: a review Gerrit had not taken when the
// intake stopped is posted by the next intake on the same database,
// without another event or result.
func TestUnreportedPostedAfterRestart(t *testing.T) {
	t.Parallel()
	rv := newHeldReviewer()
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Reviewer: rv})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h.srv.Send(patchsetCreated(nginx, "9.0", 50, 3, psRev))
	h.builds.wait(t, 1, 10*time.Second)
	// A failed build, finished while Gerrit hangs.
	recorded := make(chan error, 1)
	go func() { recorded <- h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateFailed}) }()
	rv.waitStarted(t)

	h.opts.Reviewer = nil // the stand-in, over SSH
	h.restartIntake()
	revs, err := h.srv.WaitReviews(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := revs[0]; r.Change != 50 || r.PatchSet != 3 || r.Labels["Verified"] != "-1" {
		t.Fatalf("review %+v, want Verified=-1 on 50,3", r)
	}
	if got := rv.wait(t, 0); len(got) != 0 {
		t.Fatalf("the stopped intake posted %+v", got)
	}
	if err := <-recorded; err != nil {
		t.Fatalf("BuildFinished: %v", err)
	}
}

// A merge whose release build reuses the change's succeeded review build
// reports when the build is published, not with the review's result; and
// the merged change gets it whether its change-merged event came before or
// after the ref update.
func TestReusedReviewBuildReleaseReportsThePublish(t *testing.T) {
	for _, mergedFirst := range []bool{true, false} {
		h := newHarness(t, gerrittest.Options{}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		h.srv.Send(patchsetCreated(nginx, "9.0", 12345, 2, psRev))
		h.builds.wait(t, 1, 10*time.Second)
		if err := h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateSucceeded}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.srv.WaitReviews(ctx, 1); err != nil {
			t.Fatal(err)
		}
		h.builds.mu.Lock()
		h.builds.reuse = func(r BuildRequest) (Submitted, bool) {
			if r.Publish {
				return Submitted{JobID: "job-1", Reused: true}, true // its publish is pending
			}
			return Submitted{}, false
		}
		h.builds.mu.Unlock()
		base := h.commit(nginx, "9.0", "base")
		c1 := h.commit(nginx, "9.0", "change 1")
		merged := changeMerged(nginx, "9.0", 12345, 3, c1, c1)
		updated := refUpdated(nginx, "refs/heads/9.0", base, c1)
		if mergedFirst {
			h.srv.Send(merged)
			h.sync()
			h.srv.Send(updated)
		} else {
			h.srv.Send(updated)
			h.sync()
			h.srv.Send(merged)
		}
		h.sync()
		// A reporter pass of our own: once it returns, every report due
		// now has been posted (passes run one at a time).
		if err := h.in.postDue(ctx, true); err != nil {
			t.Fatal(err)
		}
		if n := len(h.srv.Reviews()); n != 1 {
			t.Fatalf("merged first %v: %d reviews before the publish, want only the review build's", mergedFirst, n)
		}
		if err := h.in.BuildFinished(ctx, BuildResult{JobID: "job-1", State: record.StateSucceeded, Published: "mos-9.0 snapshot 42"}); err != nil {
			t.Fatal(err)
		}
		revs, err := h.srv.WaitReviews(ctx, 2)
		if err != nil {
			t.Fatalf("merged first %v: %v", mergedFirst, err)
		}
		last := revs[len(revs)-1]
		t.Logf("merged first %v: %d reviews, the last on %d,%d", mergedFirst, len(revs), last.Change, last.PatchSet)
		if last.Change != 12345 || last.PatchSet != 3 || !strings.Contains(last.Message, "published to mos-9.0 snapshot 42") {
			t.Fatalf("merged first %v: release report on %d,%d: %q", mergedFirst, last.Change, last.PatchSet, last.Message)
		}
	}
}

// A release build whose result is known at once (a reused, published job)
// is reported to a merged change whose change-merged event arrives after
// the report went out.
func TestReleaseReportReachesAChangeAttachedLater(t *testing.T) {
	h := newHarness(t, gerrittest.Options{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.builds.mu.Lock()
	h.builds.reuse = func(r BuildRequest) (Submitted, bool) {
		if r.Publish {
			return Submitted{JobID: "job-9", Reused: true, Result: &BuildResult{JobID: "job-9", State: record.StateSucceeded, Published: "mos-9.0 snapshot 7"}}, true
		}
		return Submitted{}, false
	}
	h.builds.mu.Unlock()
	base := h.commit(nginx, "9.0", "base")
	c1 := h.commit(nginx, "9.0", "change 1")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", base, c1))
	h.sync()
	time.Sleep(300 * time.Millisecond) // the reporter runs with no change attached yet
	h.srv.Send(changeMerged(nginx, "9.0", 12345, 3, c1, c1))
	h.sync()
	revs, err := h.srv.WaitReviews(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := revs[0]; r.Change != 12345 || r.PatchSet != 3 || !strings.Contains(r.Message, "published to mos-9.0 snapshot 7") {
		t.Fatalf("release report on %d,%d: %q", r.Change, r.PatchSet, r.Message)
	}
}

// failingReviewer fails every review until told to succeed, counting calls.
type failingReviewer struct {
	mu    sync.Mutex
	ok    bool
	calls int
	done  []int64
}

func (r *failingReviewer) Review(_ context.Context, _ string, rev report.Review) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if !r.ok {
		return fmt.Errorf("gerrit unreachable")
	}
	r.done = append(r.done, rev.Change)
	return nil
}

func (r *failingReviewer) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, len(r.done)
}

// After a server fails a post, the rest of its due reports wait for the
// next pass instead of each waiting for its own failure.
func TestFailingServerIsNotTriedAgainInOnePass(t *testing.T) {
	rev := &failingReviewer{}
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Reviewer: rev, RetryInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 5 {
		h.srv.Send(patchsetCreated(nginx, "9.0", 100+i, 1, psRev))
	}
	h.builds.wait(t, 5, 10*time.Second)
	for i := range 5 {
		if err := h.in.BuildFinished(ctx, BuildResult{JobID: fmt.Sprintf("job-%d", i+1), State: record.StateSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // the reporter's own passes, each failing
	// One pass that retries everything: one call to the failing server.
	before, _ := rev.counts()
	if err := h.in.postDue(ctx, true); err == nil {
		t.Fatal("a pass against a failing server reported no error")
	}
	if after, _ := rev.counts(); after != before+1 {
		t.Fatalf("one pass made %d review calls to a failing server, want 1", after-before)
	}
	rev.mu.Lock()
	rev.ok = true
	rev.mu.Unlock()
	if err := h.in.postDue(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, posted := rev.counts(); posted != 5 {
		t.Fatalf("%d reports posted after the server came back, want 5", posted)
	}
}

package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
)

// Cancelling by supersede key cancels the queued and running jobs of that
// key, durably and with the reason in their logs, tells listeners, stops
// the worker's attempt, and leaves other jobs alone.
func TestCancelBySupersedeKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	f, st := openFleet(t, dir)
	finished := make(chan *job.Job, 10)
	f.OnFinished(func(_ context.Context, j *job.Job) { finished <- j })
	submit := func(labels map[string]string, key string) *job.Job {
		t.Helper()
		j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: labels, SupersedeKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	linux := map[string]string{"os": "linux"}
	running := submit(linux, "gerrit/review/7/linux")
	sess, _, err := f.Register(ctx, "w1", linux, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := f.Pull(ctx, sess, 0); err != nil || a == nil || a.ID != running.ID {
		t.Fatalf("pull: %v %v", a, err)
	}
	queued := submit(map[string]string{"os": "bsd"}, "gerrit/review/7/bsd")
	other := submit(linux, "gerrit/review/8/linux")

	const reason = "change 7 abandoned"
	for _, tc := range []struct {
		key string
		j   *job.Job
	}{{"gerrit/review/7/linux", running}, {"gerrit/review/7/bsd", queued}} {
		got, err := f.CancelBySupersedeKey(ctx, tc.key, reason)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != tc.j.ID || got[0].State != job.Canceled || got[0].Reason != reason {
			t.Fatalf("cancel %s: %+v, want job %s cancelled", tc.key, got, tc.j.ID)
		}
		select {
		case fin := <-finished:
			if fin.ID != tc.j.ID || fin.State != job.Canceled {
				t.Fatalf("listener told %+v, want job %s cancelled", fin, tc.j.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("listener not told of job %s", tc.j.ID)
		}
	}
	if got, err := f.CancelBySupersedeKey(ctx, "gerrit/review/7/linux", reason); err != nil || len(got) != 0 {
		t.Fatalf("second cancel: %+v %v, want nothing", got, err)
	}
	if _, err := f.CancelBySupersedeKey(ctx, "", reason); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty key: %v, want ErrInvalid", err)
	}
	cancel, _, err := f.Heartbeat(ctx, sess, []scheduler.RunningJob{{JobID: running.ID, Attempt: 1}}, false)
	if err != nil || len(cancel) != 1 || cancel[0].JobID != running.ID {
		t.Fatalf("heartbeat cancel %v %v, want the cancelled attempt", cancel, err)
	}
	if err := f.Complete(ctx, sess, running.ID, 1, scheduler.Outcome{}); !errors.Is(err, scheduler.ErrStale) {
		t.Fatalf("late result of the cancelled job: %v", err)
	}

	// After a restart the store says the same: cancelled with the reason in
	// the log, not restored as live; the other change's job still queued.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	f, st = openFleet(t, dir)
	defer st.Close()
	for _, id := range []string{running.ID, queued.ID} {
		j, _, err := f.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != job.Canceled || j.Reason != reason {
			t.Fatalf("job %s after restart: %s %q, want cancelled with %q", id, j.State, j.Reason, reason)
		}
		if f.sched.Live(id) != nil {
			t.Fatalf("cancelled job %s restored as live", id)
		}
	}
	if log := readLog(t, f, queued.ID, 0); log != "[kiln 2026-11-25T10:00:00Z] "+reason+"\n" {
		t.Fatalf("log of the queued job %q, want the reason", log)
	}
	if j, _, err := f.Get(ctx, other.ID); err != nil || j.State != job.Queued {
		t.Fatalf("other change's job after restart: %+v %v, want queued", j, err)
	}
}

// A build asked for with publishing whose sources and recipe a build without
// publishing already has (the merge of a reviewed commit) reuses that build
// and publishes it: when it succeeds if it is live, at once if it has
// succeeded. A reused live build leaves its review's supersede key.
func TestPublishingReusesAReviewBuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, _ := openFleet(t, t.TempDir())
	finished := make(chan *job.Job, 10)
	f.OnFinished(func(_ context.Context, j *job.Job) { finished <- j })
	build := func(pkg string, publish bool, key string) job.Spec {
		return job.Spec{Kind: job.PackageBuild, SupersedeKey: key, Build: &job.Build{Release: "mos-9.0", Target: "bookworm-amd64", Package: pkg, Publish: publish,
			Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: strings.Repeat("a", 40), Role: "combined"}}}}
	}
	next := func() *job.Job {
		t.Helper()
		select {
		case j := <-finished:
			return j
		case <-time.After(10 * time.Second):
			t.Fatal("listeners not told")
			return nil
		}
	}
	sess, _, err := f.Register(ctx, "w1", map[string]string{"target": "bookworm-amd64"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(id string) {
		t.Helper()
		if a, err := f.Pull(ctx, sess, 0); err != nil || a == nil || a.ID != id {
			t.Fatalf("pull: %v %v, want job %s", a, err, id)
		}
	}

	// Succeeded already: published now, nothing built again.
	review, _, err := f.Submit(ctx, build("nova", false, "gerrit/review/1/bookworm-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	run(review.ID)
	if err := f.Complete(ctx, sess, review.ID, 1, scheduler.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if j := next(); j.ID != review.ID || j.Spec.Build.Publish {
		t.Fatalf("review build finished as %+v", j)
	}
	merge, dedup, err := f.Submit(ctx, build("nova", true, ""))
	if err != nil || !dedup || merge.ID != review.ID || !merge.Spec.Build.Publish {
		t.Fatalf("merge build: %+v dedup %v %v, want job %s reused with publishing", merge, dedup, err, review.ID)
	}
	if j := next(); j.ID != review.ID || j.State != job.Succeeded || !j.Spec.Build.Publish {
		t.Fatalf("listeners told %+v, want the reused build with publishing", j)
	}
	if stored, _, _ := f.Get(ctx, review.ID); !stored.Spec.Build.Publish {
		t.Error("the store does not say the reused build is published")
	}
	if again, dedup, err := f.Submit(ctx, build("nova", true, "")); err != nil || !dedup || again.ID != review.ID {
		t.Fatalf("the same merge again: %+v %v %v", again, dedup, err)
	}
	select {
	case j := <-finished:
		t.Fatalf("a build already published was handed over again: %+v", j)
	case <-time.After(100 * time.Millisecond):
	}

	// Running: published when it succeeds; the review's next patch set no
	// longer cancels it.
	running, _, err := f.Submit(ctx, build("glance", false, "gerrit/review/2/bookworm-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	run(running.ID)
	merge, dedup, err = f.Submit(ctx, build("glance", true, ""))
	if err != nil || !dedup || merge.ID != running.ID || !merge.Spec.Build.Publish {
		t.Fatalf("merge of a running build: %+v dedup %v %v", merge, dedup, err)
	}
	if got, err := f.CancelBySupersedeKey(ctx, "gerrit/review/2/bookworm-amd64", "change 2 abandoned"); err != nil || len(got) != 0 {
		t.Fatalf("the review's key still cancels the build a merge reuses: %+v %v", got, err)
	}
	if err := f.Complete(ctx, sess, running.ID, 1, scheduler.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if j := next(); j.ID != running.ID || j.State != job.Succeeded || !j.Spec.Build.Publish {
		t.Fatalf("listeners told %+v, want the running build published", j)
	}
	if l := logOf(t, f, running.ID); !strings.Contains(l, "to be published") {
		t.Errorf("the log does not say why the build is published:\n%s", l)
	}
}

func logOf(t *testing.T, f *Fleet, id string) string {
	t.Helper()
	var b strings.Builder
	if _, err := f.StreamLog(context.Background(), id, 0, false, func(p []byte) error { b.Write(p); return nil }); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A live review build that a second change's review reuses is no longer
// cancelled by the first change's next patch set or abandonment.
func TestSharedReviewBuildLeavesItsSupersedeKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, _ := openFleet(t, t.TempDir())
	spec := func(key string) job.Spec {
		return job.Spec{Kind: job.PackageBuild, SupersedeKey: key, Build: &job.Build{Release: "mos-9.0", Target: "bookworm-amd64", Package: "nova",
			Sources: []job.Source{{URL: "https://git.example.org/nova", Commit: strings.Repeat("b", 40), Role: "combined"}}}}
	}
	a, _, err := f.Submit(ctx, spec("gerrit/review/1/bookworm-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	// The same change again (a recheck) keeps the key.
	if again, dedup, err := f.Submit(ctx, spec("gerrit/review/1/bookworm-amd64")); err != nil || !dedup || again.Spec.SupersedeKey == "" {
		t.Fatalf("recheck: %+v %v %v", again, dedup, err)
	}
	b, dedup, err := f.Submit(ctx, spec("gerrit/review/2/bookworm-amd64"))
	if err != nil || !dedup || b.ID != a.ID || b.Spec.SupersedeKey != "" {
		t.Fatalf("second change: %+v dedup %v %v, want job %s shared without a supersede key", b, dedup, err, a.ID)
	}
	for _, key := range []string{"gerrit/review/1/bookworm-amd64", "gerrit/review/2/bookworm-amd64"} {
		if got, err := f.CancelBySupersedeKey(ctx, key, "abandoned"); err != nil || len(got) != 0 {
			t.Fatalf("cancel %s: %+v %v, want nothing cancelled", key, got, err)
		}
	}
	if j, _, _ := f.Get(ctx, a.ID); j.State != job.Queued {
		t.Fatalf("shared build is %s, want still queued", j.State)
	}

	// A build asked for without a key (the CLI) that reuses a review's
	// live build is not cancelled by that review either.
	cliSpec := spec("gerrit/review/3/bookworm-amd64")
	cliSpec.Build.Sources[0].Commit = strings.Repeat("c", 40)
	review, _, err := f.Submit(ctx, cliSpec)
	if err != nil {
		t.Fatal(err)
	}
	cliSpec = spec("")
	cliSpec.Build.Sources[0].Commit = strings.Repeat("c", 40)
	if j, dedup, err := f.Submit(ctx, cliSpec); err != nil || !dedup || j.ID != review.ID || j.Spec.SupersedeKey != "" {
		t.Fatalf("CLI build reusing a review build: %+v dedup %v %v", j, dedup, err)
	}
	if got, err := f.CancelBySupersedeKey(ctx, "gerrit/review/3/bookworm-amd64", "abandoned"); err != nil || len(got) != 0 {
		t.Fatalf("the review's key cancels the build the CLI waits for: %+v %v", got, err)
	}
}

// A worker's labels change with its session kept: a job its new labels
// match is handed to it, and bad labels are refused.
func TestSetLabels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, _ := openFleet(t, t.TempDir())
	sess, _, err := f.Register(ctx, "w1", map[string]string{"target": "bookworm-amd64"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, _, err := f.Submit(ctx, job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: map[string]string{"target": "trixie-amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := f.Pull(ctx, sess, 0); err != nil || a != nil {
		t.Fatalf("pull before the label change: %v %v, want nothing", a, err)
	}
	if err := f.SetLabels(sess, map[string]string{"target": "bookworm-amd64|trixie-amd64"}); err != nil {
		t.Fatal(err)
	}
	if a, err := f.Pull(ctx, sess, 0); err != nil || a == nil || a.ID != j.ID {
		t.Fatalf("pull after the label change: %v %v, want job %s", a, err, j.ID)
	}
	if err := f.SetLabels(sess, map[string]string{"target": "bad value with spaces"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad labels: %v, want ErrInvalid", err)
	}
	if err := f.SetLabels("no-such-session", nil); !errors.Is(err, scheduler.ErrUnknownSession) {
		t.Fatalf("unknown session: %v", err)
	}
}

// Register bounds what a worker may claim: a number of labels and slots,
// each refused with a short message that does not echo the input.
func TestRegisterLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, st := openFleet(t, t.TempDir())
	defer st.Close()
	many := map[string]string{}
	for i := 0; i < 100000; i++ {
		many[fmt.Sprintf("label-%d", i)] = strings.Repeat("v", 8)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		slots  int
		want   string
	}{
		{"too many labels", many, 1, "100000 labels: at most"},
		{"too many slots", map[string]string{"os": "linux"}, 100000, "100000 slots: at most"},
		{"long value", map[string]string{"os": strings.Repeat("x", 1<<20)}, 1, "label \"os\""},
	} {
		_, _, err := f.Register(ctx, "w1", tc.labels, tc.slots, nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || len(err.Error()) > 300 {
			t.Errorf("%s: %.300v, want ErrInvalid with %q in at most 300 characters", tc.name, err, tc.want)
		}
	}
}

// With the store full, a submit is refused with ErrNoSpace (the API's
// ResourceExhausted) and a clear message, uses up no job id, and the
// fleet reports itself unhealthy until a write succeeds again.
func TestSubmitWhileTheStoreIsFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, st := openFleet(t, t.TempDir())
	defer st.Close()
	spec := func(n int) job.Spec {
		return job.Spec{Kind: job.Command, Command: []string{"make"}, Labels: map[string]string{"os": "linux"},
			Env: []string{"FILL=" + strings.Repeat("x", n)}}
	}
	first, _, err := f.Submit(ctx, spec(10))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Health(ctx); err != nil {
		t.Fatalf("health before: %v", err)
	}
	var pages int
	if err := st.DB().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.Submit(ctx, spec(64<<10))
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("submit on a full store: %v, want ErrNoSpace", err)
	}
	if err := f.Health(ctx); err == nil || !strings.Contains(err.Error(), "store") {
		t.Fatalf("health on a full store: %v", err)
	}
	if _, err := st.DB().ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	next, _, err := f.Submit(ctx, spec(10))
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq != first.Seq+1 {
		t.Fatalf("job after the refused submit is %d, want %d: the refused one used up an id", next.Seq, first.Seq+1)
	}
	if err := f.Health(ctx); err != nil {
		t.Fatalf("health after: %v", err)
	}
}

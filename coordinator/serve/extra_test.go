package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/gerrit"
	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/config"
)

// gerritEvent reads one of the Gerrit intake's sample events, for change
// instead of the sample's 12345 and with a patch set commit of its own.
func gerritEvent(t *testing.T, name, change string) string {
	t.Helper()
	return gerritEventAt(t, name, change, commitOf(change))
}

// gerritEventAt is gerritEvent with the patch set at commit rev.
func gerritEventAt(t *testing.T, name, change, rev string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "gerrit", "event", "testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("12345", change, "8b4f7e0f5bd8d6c5cd3f1fcdbb3bd0a0d4a6c2f1", rev).Replace(strings.TrimSpace(string(data)))
}

// commitOf is the patch set commit gerritEvent gives change.
func commitOf(change string) string {
	return strings.Repeat("0", 40-len(change)) + change
}

// gerritFleet is the Gerrit intake started on a real fleet, fed by the SSH
// stand-in.
type gerritFleet struct {
	srv   *gerrittest.Server
	st    *store.Store
	f     *fleet.Fleet
	hooks Hooks
}

// startGerritFleet starts the intake with the example configuration on a
// real fleet and waits for its stream; everything stops with the test.
func startGerritFleet(ctx context.Context, t *testing.T) *gerritFleet {
	t.Helper()
	return startGerritFleetWith(ctx, t, job.Releases{"mos-9.0": {"trusty-amd64": "deb", "centos7-x86_64": "rpm"}}, nil)
}

// startGerritFleetWith is startGerritFleet with the configured releases
// and the intake's configuration changed by edit.
func startGerritFleetWith(ctx context.Context, t *testing.T, releases job.Releases, edit func(*gerrit.Config)) *gerritFleet {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	srv := gerrittest.Start(t, gerrittest.Options{Accounts: []gerrittest.Account{{User: "kiln", Key: gerrittest.WriteClientKey(t, keyFile)}}})
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := srv.WriteKnownHosts(knownHosts); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/gerrit/gerrit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Gerrit gerrit.Config `yaml:"gerrit"`
	}
	if err := config.Decode("gerrit.yaml", data, &file); err != nil {
		t.Fatal(err)
	}
	gcfg := file.Gerrit
	gcfg.Servers = []gerrit.ServerConfig{{Name: "review", SSH: srv.Addr(), User: "kiln", PrivateKeyFile: keyFile,
		KnownHostsFile: knownHosts, GitURL: filepath.Join(dir, "git") + "/{project}"}}
	gcfg.Track = nil
	gcfg.Reconnect = gerrit.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	if edit != nil {
		edit(&gcfg)
	}

	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Minute}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	extra := Extra{Gerrit: &gcfg}
	hooks, err := extra.Start(ctx, HookDeps{Fleet: f, Store: st, Logger: hclog.NewNullLogger(), Registry: prometheus.NewRegistry(),
		Releases: releases})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, len(hooks.Runners))
	for _, run := range hooks.Runners {
		go func() { done <- run(rctx) }()
	}
	t.Cleanup(func() {
		stop()
		for range hooks.Runners {
			if err := <-done; err != nil {
				t.Errorf("runner: %v", err)
			}
		}
	})
	if err := srv.WaitStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return &gerritFleet{srv: srv, st: st, f: f, hooks: hooks}
}

// TestClosedChangeCancelsReviewBuilds runs the Gerrit intake on a real
// fleet, fed by the SSH stand-in: abandoning a change cancels its running
// review build and deleting one cancels its queued build, each with the
// reason, the worker is told to stop, and neither votes; another change's
// build still does.
func TestClosedChangeCancelsReviewBuilds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := startGerritFleet(ctx, t)
	srv, st, f, hooks := g.srv, g.st, g.f, g.hooks

	labels := map[string]string{"target": "trusty-amd64"}
	sess, _, err := f.Register(ctx, "w1", labels, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// queue sends a patch set of change and returns its review build.
	queue := func(change string) (built *job.Job) {
		t.Helper()
		srv.Send(gerritEvent(t, "v3-patchset-created.json", change))
		eventually(ctx, t, func() (bool, string) {
			jobs, err := f.List(ctx, nil, 10)
			for _, j := range jobs {
				if strings.Contains(j.Spec.Origin, "change "+change+" ") {
					built = j
				}
			}
			evs, _ := hooks.Events.ListEvents(ctx, 5, false)
			return built != nil, fmt.Sprintf("no build of change %s queued (%v); events %+v", change, err, evs)
		})
		return built
	}
	running := queue("1234")
	// The list reads the store, where a job is before the scheduler has
	// it: pull with a long poll, which waits for it.
	if a, err := f.Pull(ctx, sess, 10*time.Second); err != nil || a == nil || a.ID != running.ID {
		t.Fatalf("pull: %+v %v, want job %s", a, err, running.ID)
	}
	queued := queue("1235") // the worker's one slot is taken

	srv.Send(gerritEvent(t, "v3-change-abandoned.json", "1234"))
	srv.Send(gerritEvent(t, "v3-change-deleted.json", "1235"))
	for _, w := range []struct {
		j      *job.Job
		reason string
	}{{running, "change 1234 abandoned"}, {queued, "change 1235 deleted"}} {
		eventually(ctx, t, func() (bool, string) {
			j, _, err := f.Get(ctx, w.j.ID)
			if err != nil {
				return false, err.Error()
			}
			return j.State == job.Canceled && j.Reason == w.reason,
				fmt.Sprintf("job %s: %s %q, want cancelled with %q", j.ID, j.State, j.Reason, w.reason)
		})
	}
	stopRun, _, err := f.Heartbeat(ctx, sess, []scheduler.RunningJob{{JobID: running.ID, Attempt: 1}}, false)
	if err != nil || len(stopRun) != 1 || stopRun[0].JobID != running.ID {
		t.Fatalf("heartbeat: %v %v, want the worker told to stop job %s", stopRun, err, running.ID)
	}
	if err := f.Complete(ctx, sess, running.ID, 1, scheduler.Outcome{}); !errors.Is(err, scheduler.ErrStale) {
		t.Fatalf("result of the cancelled build: %v, want it refused", err)
	}
	// The event's line says what was done once the cancellation is
	// recorded, which may be just after the job shows it.
	eventually(ctx, t, func() (bool, string) {
		evs, err := hooks.Events.ListEvents(ctx, 2, false)
		if err != nil || len(evs) < 2 {
			return false, fmt.Sprintf("events %+v: %v", evs, err)
		}
		e := evs[1]
		return e.Type == "change-abandoned" && e.Action == "canceled" && len(e.JobIDs) == 1 && e.JobIDs[0] == running.ID,
			fmt.Sprintf("abandon logged as %+v, want canceled with job %s", e, running.ID)
	})

	// The intake hears of the cancelled builds (the fleet tells it in the
	// background); any report of theirs is posted before the next one.
	for _, id := range []string{running.ID, queued.ID} {
		eventually(ctx, t, func() (bool, string) {
			var state string
			err := st.DB().QueryRowContext(ctx, `SELECT state FROM gerrit_jobs WHERE job_id = ?`, id).Scan(&state)
			return state == record.StateCanceled, fmt.Sprintf("the intake did not hear that job %s was cancelled: state %q, %v", id, state, err)
		})
	}
	other := queue("1236")
	a, err := f.Pull(ctx, sess, 10*time.Second)
	if err != nil || a == nil || a.ID != other.ID {
		t.Fatalf("pull: %+v %v, want job %s (the cancelled one must not run)", a, err, other.ID)
	}
	if err := f.Complete(ctx, sess, a.ID, a.Attempt, scheduler.Outcome{}); err != nil {
		t.Fatal(err)
	}
	revs, err := srv.WaitReviews(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != 1 || revs[0].Change != 1236 || revs[0].Labels["Verified"] != "+1" {
		t.Fatalf("reviews = %+v, want only Verified=+1 on 1236", revs)
	}
}

// TestSharedReviewBuildVotesForEveryRequest: review builds whose build key
// matches an existing job (a recheck while it runs, another change at the
// same commit, a recheck after it succeeded) get that job from the fleet;
// each request is logged with it, saying so, and each votes: when the job
// finishes, or right away when it already has.
func TestSharedReviewBuildVotesForEveryRequest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := startGerritFleet(ctx, t)
	sess, _, err := g.f.Register(ctx, "w1", map[string]string{"target": "trusty-amd64"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev := commitOf("1240")
	// logged waits for the n-th newest event to be logged as built with
	// the job, reusing it when reused.
	logged := func(n int, typ string, change int64, jobID string, reused bool) {
		t.Helper()
		eventually(ctx, t, func() (bool, string) {
			// Still read when ctx has ended, to say what was logged.
			evs, err := g.hooks.Events.ListEvents(context.WithoutCancel(ctx), 10, false)
			if err != nil || len(evs) < n {
				return false, fmt.Sprintf("events %+v (%v), want %d", evs, err, n)
			}
			e := evs[0]
			ok := len(evs) == n && e.Type == typ && e.Change == change && e.Action == decide.ActionBuilt &&
				len(e.JobIDs) == 1 && e.JobIDs[0] == jobID && strings.Contains(e.Reason, "reuses job "+jobID) == reused
			return ok, fmt.Sprintf("newest event %+v (of %d), want %s of change %d built with job %s (reused: %v)",
				e, len(evs), typ, change, jobID, reused)
		})
	}

	g.srv.Send(gerritEventAt(t, "v3-patchset-created.json", "1240", rev))
	var first *job.Job
	eventually(ctx, t, func() (bool, string) {
		jobs, err := g.f.List(ctx, nil, 10)
		if len(jobs) == 1 {
			first = jobs[0]
		}
		return first != nil, fmt.Sprintf("jobs %v (%v), want the review build of change 1240", jobs, err)
	})
	logged(1, "patchset-created", 1240, first.ID, false)
	a, err := g.f.Pull(ctx, sess, 10*time.Second)
	if err != nil || a == nil || a.ID != first.ID {
		t.Fatalf("pull: %+v %v, want job %s", a, err, first.ID)
	}
	g.srv.Send(gerritEventAt(t, "v3-comment-added-recheck.json", "1240", rev))
	logged(2, "comment-added", 1240, first.ID, true)
	g.srv.Send(gerritEventAt(t, "v3-patchset-created.json", "1241", rev))
	logged(3, "patchset-created", 1241, first.ID, true)

	if err := g.f.Complete(ctx, sess, a.ID, a.Attempt, scheduler.Outcome{}); err != nil {
		t.Fatal(err)
	}
	votes := func(n int) map[int64]int {
		t.Helper()
		revs, err := g.srv.WaitReviews(ctx, n)
		if err != nil {
			t.Fatalf("%v; reviews %+v, want %d", err, g.srv.Reviews(), n)
		}
		got := map[int64]int{}
		for _, r := range revs {
			if r.Labels["Verified"] != "+1" {
				t.Fatalf("review %+v, want Verified=+1", r)
			}
			got[r.Change]++
		}
		return got
	}
	if got := votes(3); got[1240] != 2 || got[1241] != 1 {
		t.Fatalf("votes per change %v, want 2 on 1240 (patch set and recheck) and 1 on 1241", got)
	}

	// The build has succeeded: a recheck reuses it and votes at once.
	g.srv.Send(gerritEventAt(t, "v3-comment-added-recheck.json", "1241", rev))
	logged(4, "comment-added", 1241, first.ID, true)
	if got := votes(4); got[1240] != 2 || got[1241] != 2 {
		t.Fatalf("votes per change %v, want 2 on 1240 and 2 on 1241", got)
	}
	if jobs, err := g.f.List(ctx, nil, 10); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v (%v), want the one shared build", jobs, err)
	}
	// No request votes twice. A marker shows it: another change at the
	// same commit votes at once, and votes go out in the order of their
	// requests, so once the marker's vote is there an extra vote for an
	// earlier request is there too.
	g.srv.Send(gerritEventAt(t, "v3-patchset-created.json", "1242", rev))
	logged(5, "patchset-created", 1242, first.ID, true)
	for n := 5; ; n++ {
		revs, err := g.srv.WaitReviews(ctx, n)
		if err != nil {
			t.Fatalf("%v; reviews %+v, want the marker's vote on 1240", err, revs)
		}
		if revs[len(revs)-1].Change == 1242 {
			if len(revs) != 5 {
				t.Fatalf("reviews %+v, want 5: the 4 requests' and the marker's", revs)
			}
			break
		}
	}
}

// eventually polls cond until it holds; when ctx ends first, the test fails
// with what cond last said.
func eventually(ctx context.Context, t *testing.T, cond func() (ok bool, state string)) {
	t.Helper()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if ctx.Err() != nil {
			t.Fatal(state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGerritWebhookPerServer: with two Gerrit servers, each with its own
// webhook secret, each reaches the coordinator's HTTP listener at
// /gerrit/webhook/<name> with its own secret only.
func TestGerritWebhookPerServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := startGerritFleetWith(ctx, t, job.Releases{"mos-9.0": {"trusty-amd64": "deb", "centos7-x86_64": "rpm"}}, func(c *gerrit.Config) {
		c.Servers[0].WebhookSecret = "first-secret"
		second := c.Servers[0]
		second.Name, second.WebhookSecret, second.DisableStream = "second", "second-secret", true
		c.Servers = append(c.Servers, second)
	})
	// As serve mounts the hooks.
	mux := http.NewServeMux()
	for p, h := range g.hooks.HTTP {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	event := gerritEvent(t, "v3-patchset-created.json", "501")
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/gerrit/webhook/review?secret=first-secret", http.StatusNoContent},
		{"/gerrit/webhook/second?secret=second-secret", http.StatusNoContent},
		{"/gerrit/webhook/second?secret=first-secret", http.StatusUnauthorized},
		{"/gerrit/webhook/review?secret=second-secret", http.StatusUnauthorized},
		{"/gerrit/webhook?secret=first-secret", http.StatusNotFound}, // which server?
		{"/gerrit/webhook/third?secret=first-secret", http.StatusNotFound},
	} {
		resp, err := srv.Client().Post(srv.URL+tc.path, "application/json", strings.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s: %d %s, want %d", tc.path, resp.StatusCode, body, tc.want)
		}
	}
	// Each server's event is its own: one review build each.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		evs, err := g.hooks.Events.ListEvents(ctx, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		built := map[string]bool{}
		for _, e := range evs {
			if e.Action == decide.ActionBuilt {
				built[e.Server] = true
			}
		}
		if built["review"] && built["second"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events = %+v, want one built per server", evs)
		}
	}
}

package serve

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/gerrit"
	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/config"
)

// gerritEvent reads one of the Gerrit intake's sample events, for change
// instead of the sample's 12345 and with a patch set commit of its own.
func gerritEvent(t *testing.T, name, change string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "gerrit", "testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.Repeat("0", 40-len(change)) + change
	return strings.NewReplacer("12345", change, "8b4f7e0f5bd8d6c5cd3f1fcdbb3bd0a0d4a6c2f1", rev).Replace(strings.TrimSpace(string(data)))
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

	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Minute}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	extra := Extra{Gerrit: &gcfg}
	hooks, err := extra.Start(ctx, HookDeps{Fleet: f, Store: st, Logger: hclog.NewNullLogger(), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, len(hooks.Runners))
	for _, run := range hooks.Runners {
		go func() { done <- run(rctx) }()
	}
	defer func() {
		stop()
		for range hooks.Runners {
			if err := <-done; err != nil {
				t.Errorf("runner: %v", err)
			}
		}
	}()
	if err := srv.WaitStreams(ctx, 1); err != nil {
		t.Fatal(err)
	}

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
			evs, _ := hooks.Events.ListEvents(ctx, 5)
			return built != nil, fmt.Sprintf("no build of change %s queued (%v); events %+v", change, err, evs)
		})
		return built
	}
	running := queue("1234")
	if a, err := f.Pull(ctx, sess, 0); err != nil || a == nil || a.ID != running.ID {
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
	evs, err := hooks.Events.ListEvents(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if e := evs[1]; e.Type != "change-abandoned" || e.Action != "canceled" || len(e.JobIDs) != 1 || e.JobIDs[0] != running.ID {
		t.Fatalf("abandon logged as %+v, want canceled with job %s", e, running.ID)
	}

	// The intake hears of the cancelled builds (the fleet tells it in the
	// background); any report of theirs is posted before the next one.
	for _, id := range []string{running.ID, queued.ID} {
		eventually(ctx, t, func() (bool, string) {
			var state string
			err := st.DB().QueryRowContext(ctx, `SELECT state FROM gerrit_jobs WHERE job_id = ?`, id).Scan(&state)
			return state == gerrit.StateCanceled, fmt.Sprintf("the intake did not hear that job %s was cancelled: state %q, %v", id, state, err)
		})
	}
	other := queue("1236")
	a, err := f.Pull(ctx, sess, 0)
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

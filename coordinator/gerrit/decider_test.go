package gerrit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/gerrit/reconcile"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// gatedGit reads heads with git, except that lookups of URLs containing
// hold wait until the gate opens (or their context ends) and then read
// from instead, when set, with a timeout of 300 ms.
type gatedGit struct {
	git     *reconcile.Git
	held    *reconcile.Git
	hold    string
	from    string
	once    sync.Once
	gate    chan struct{}
	started chan string
}

func newGatedGit(hold, from string) *gatedGit {
	return &gatedGit{git: &reconcile.Git{}, held: &reconcile.Git{Timeout: 300 * time.Millisecond}, hold: hold, from: from,
		gate: make(chan struct{}), started: make(chan string, 100)}
}

func (g *gatedGit) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedGit) Heads(ctx context.Context, url string) (map[string]string, error) {
	if strings.Contains(url, g.hold) {
		g.started <- url
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if g.from != "" {
			return g.held.Heads(ctx, g.from)
		}
	}
	return g.git.Heads(ctx, url)
}

func (g *gatedGit) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no lookup of the held repository started")
	}
}

// eventOf returns the logged event of project and type.
func (h *harness) eventOf(project, typ string) (record.Event, bool) {
	h.t.Helper()
	evs, err := h.in.ListAllEvents(context.Background(), 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		if e.Project == project && e.Type == typ {
			return e, true
		}
	}
	return record.Event{}, false
}

// waitAction waits until the event of project and type has one of actions.
func (h *harness) waitAction(project, typ string, timeout time.Duration, actions ...string) record.Event {
	h.t.Helper()
	var e record.Event
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var ok bool
		if e, ok = h.eventOf(project, typ); ok {
			for _, a := range actions {
				if e.Action == a {
					return e
				}
			}
		}
	}
	h.t.Fatalf("%s event of %s: %+v after %s, want action %v", typ, project, e, timeout, actions)
	return e
}

// TestSlowProjectDoesNotDelayOthers: while the git server of one project
// does not answer, other projects' events are decided at once; the
// stalled event fails with the reason, is tried again, and is finally
// built at its own revision.
func TestSlowProjectDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	const hung = "mos/packages/trusty/hung"
	git := newGatedGit("/"+hung, gerrittest.SilentGitServer(t))
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Git: git, DecideRetry: 100 * time.Millisecond})
	defer git.open()
	head := h.commit(nginx, "9.0", "packaging")
	h.srv.Send(changeMerged(hung, "9.0", 1, 1, mergedRev, mergedRev))
	git.waitStarted(t)
	// The hung lookup is held; other projects go on.
	h.srv.Send(patchsetCreated(nginx, "9.0", 2, 1, psRev))
	h.srv.Send(changeMerged(nginx, "9.0", 3, 1, head, head))
	got := h.builds.wait(t, 2, 10*time.Second)
	if got[0].Package != "nginx" || got[1].Package != "nginx" {
		t.Fatalf("builds = %+v, want nginx's two", got)
	}
	if e, _ := h.eventOf(hung, event.TypeChangeMerged); e.Action != decide.ActionReceived {
		t.Fatalf("held event = %+v, want it still received", e)
	}
	// The server does not answer: the lookup times out, and the decision
	// is tried again.
	git.open()
	e := h.waitAction(hung, event.TypeChangeMerged, 10*time.Second, decide.ActionFailed)
	if !strings.Contains(e.Reason, "timed out after 300ms") || !strings.Contains(e.Reason, "trying again") {
		t.Errorf("failed event reason %q, want the timeout and the retry", e.Reason)
	}
	e = h.waitAction(hung, event.TypeChangeMerged, 20*time.Second, decide.ActionBuilt, decide.ActionError)
	if e.Action != decide.ActionBuilt || e.Revision != mergedRev {
		t.Fatalf("after the last attempt: %+v, want built at the event's revision", e)
	}
	if n := h.counter("kiln_gerrit_decision_retries_total"); n != maxAttempts-1 {
		t.Errorf("%v retries, want %d", n, maxAttempts-1)
	}
	if n := len(h.builds.all()); n != 3 {
		t.Errorf("%d builds, want 3", n)
	}
}

// TestWebhookAnswersBeforeDeciding: the webhook answers once the event is
// stored, while its decision waits for git; an intake stopped then
// decides it after it starts again, and builds it once.
func TestWebhookAnswersBeforeDeciding(t *testing.T) {
	t.Parallel()
	git := newGatedGit("/"+nginx, "")
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Git: git})
	defer git.open()
	head := h.commit(nginx, "9.0", "merged")
	srv := httptest.NewServer(h.in.WebhookHandler())
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/gerrit/webhook/review?secret=s3cret", "application/json",
		strings.NewReader(changeMerged(nginx, "9.0", 7, 1, head, head)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("webhook status %d", resp.StatusCode)
	}
	git.waitStarted(t) // the decision waits for git; the answer did not
	if e, _ := h.eventOf(nginx, event.TypeChangeMerged); e.Action != decide.ActionReceived {
		t.Fatalf("event = %+v, want received", e)
	}
	h.restartIntake()
	git.open()
	e := h.waitAction(nginx, event.TypeChangeMerged, 10*time.Second, decide.ActionBuilt)
	h.sync()
	if got := h.builds.all(); len(got) != 1 || got[0].Sources[0].Commit != head || len(e.JobIDs) != 1 {
		t.Fatalf("builds = %+v, event %+v: want one release build of %s", got, e, head)
	}
}

// TestRefusedBuildRecordedAtOnce: a build the queue refuses for good is
// recorded as an error with the reason, not tried again; one it fails to
// queue for now is tried again and built.
func TestRefusedBuildRecordedAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{DecideRetry: 50 * time.Millisecond})
	failures := 1
	h.builds.refuse = func(req BuildRequest) error {
		if strings.Contains(req.Origin, "change 1001 ") {
			return fmt.Errorf("release %s is not configured: %w", req.Release, ErrRefused)
		}
		if strings.Contains(req.Origin, "change 1002 ") && failures > 0 {
			failures--
			return errors.New("store busy")
		}
		return nil
	}
	h.srv.Send(patchsetCreated(nginx, "9.0", 1001, 1, psRev))
	h.srv.Send(patchsetCreated(nginx, "9.0", 1002, 1, psRev))
	h.builds.wait(t, 1, 10*time.Second)
	h.sync()
	evs, err := h.in.ListEvents(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]record.Event{}
	for _, e := range evs {
		got[e.Change] = e
	}
	if e := got[1001]; e.Action != decide.ActionRefused || !strings.Contains(e.Reason, "release mos-9.0 is not configured") {
		t.Errorf("refused event = %+v", e)
	}
	if e := got[1002]; e.Action != decide.ActionBuilt {
		t.Errorf("event failed once = %+v, want built", e)
	}
	if n := h.counter("kiln_gerrit_decision_retries_total"); n != 1 {
		t.Errorf("%v retries, want 1 (the store busy only)", n)
	}
}

// redirectGit reads heads with real git; lookups of URLs containing hung
// go to the URL to instead (a server that never answers), and are
// announced on started.
type redirectGit struct {
	git     *reconcile.Git
	hung    string
	to      string
	started chan string
}

func (g *redirectGit) Heads(ctx context.Context, url string) (map[string]string, error) {
	if strings.Contains(url, g.hung) {
		g.started <- url
		url = g.to
	}
	return g.git.Heads(ctx, url)
}

// TestHungGitServerDoesNotDelayOthers: a git server that accepts and
// never answers holds a real git ls-remote until git_timeout; meanwhile
// other projects' events are decided as usual, and the stalled event ends
// with a recorded failure that is tried again.
func TestHungGitServerDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	const hung = "mos/packages/trusty/hung"
	const timeout = 6 * time.Second
	git := &redirectGit{git: &reconcile.Git{Timeout: timeout}, hung: "/" + hung, to: gerrittest.SilentGitServer(t), started: make(chan string, 100)}
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{Git: git, DecideRetry: time.Minute})
	head := h.commit(nginx, "9.0", "packaging")
	start := time.Now()
	h.srv.Send(changeMerged(hung, "9.0", 1, 1, mergedRev, mergedRev))
	select {
	case <-git.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no lookup of the hung repository started")
	}
	h.srv.Send(patchsetCreated(nginx, "9.0", 2, 1, psRev))
	h.srv.Send(changeMerged(nginx, "9.0", 3, 1, head, head))
	got := h.builds.wait(t, 2, 2*timeout)
	if got[0].Package != "nginx" || got[1].Package != "nginx" {
		t.Fatalf("builds = %+v, want nginx's two", got)
	}
	// Decided while the hung lookup still runs, not after it timed out.
	if e, _ := h.eventOf(hung, event.TypeChangeMerged); e.Action != decide.ActionReceived {
		t.Fatalf("after %s the hung event is %+v: the other projects waited for it", time.Since(start), e)
	}
	e := h.waitAction(hung, event.TypeChangeMerged, 3*timeout, decide.ActionFailed)
	if !strings.Contains(e.Reason, "timed out after 6s") || !strings.Contains(e.Reason, "attempt 1 of") || !strings.Contains(e.Reason, "trying again") {
		t.Errorf("failed event reason %q, want the timeout and the retry", e.Reason)
	}
	if n := h.counter("kiln_gerrit_decision_retries_total"); n != 1 {
		t.Errorf("%v retries, want 1", n)
	}
}

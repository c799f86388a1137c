package gerrit

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/testenv"
)

const (
	psRev     = "8b4f7e0f5bd8d6c5cd3f1fcdbb3bd0a0d4a6c2f1"
	mergedRev = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
	parentRev = "1f1e0a1c6fe14b6c4fd9c0d5f3d4d1c5b1a2e3f4"
	changeID  = "I0123456789abcdef0123456789abcdef01234567"
	nginx     = "mos/packages/trusty/nginx"
)

// fakeBuilds records submitted builds and cancellations. Like the
// scheduler, it takes a build as live until a newer one with the same
// supersede key or a cancellation ends it.
type fakeBuilds struct {
	mu      sync.Mutex
	reqs    []BuildRequest
	ended   map[string]bool // job ids superseded or cancelled
	cancels []cancelCall
	changed chan struct{}
	// onSubmit, when set, runs after each submission with the new job id.
	onSubmit func(id string)
	// reuse, when set, may answer a submission with an existing job, as
	// the scheduler does for a build key it has seen.
	reuse func(req BuildRequest) (Submitted, bool)
	// refuse, when set, may refuse a submission with an error.
	refuse func(req BuildRequest) error
}

// cancelCall is one CancelBuilds call and the job ids it cancelled.
type cancelCall struct {
	Key, Reason string
	JobIDs      []string
}

func newFakeBuilds() *fakeBuilds {
	return &fakeBuilds{changed: make(chan struct{}), ended: map[string]bool{}}
}

// liveLocked lists the live jobs with the supersede key.
func (f *fakeBuilds) liveLocked(key string) []string {
	var ids []string
	for i, r := range f.reqs {
		id := fmt.Sprintf("job-%d", i+1)
		if key != "" && r.SupersedeKey == key && !f.ended[id] {
			ids = append(ids, id)
		}
	}
	return ids
}

func (f *fakeBuilds) SubmitBuild(_ context.Context, req BuildRequest) (Submitted, error) {
	f.mu.Lock()
	if f.refuse != nil {
		if err := f.refuse(req); err != nil {
			f.mu.Unlock()
			return Submitted{}, err
		}
	}
	if f.reuse != nil {
		if got, ok := f.reuse(req); ok {
			f.mu.Unlock()
			return got, nil
		}
	}
	for _, id := range f.liveLocked(req.SupersedeKey) {
		f.ended[id] = true
	}
	f.reqs = append(f.reqs, req)
	close(f.changed)
	f.changed = make(chan struct{})
	id := fmt.Sprintf("job-%d", len(f.reqs))
	hook := f.onSubmit
	f.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	return Submitted{JobID: id}, nil
}

func (f *fakeBuilds) CancelBuilds(_ context.Context, key, reason string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := f.liveLocked(key)
	for _, id := range ids {
		f.ended[id] = true
	}
	f.cancels = append(f.cancels, cancelCall{Key: key, Reason: reason, JobIDs: ids})
	return ids, nil
}

func (f *fakeBuilds) cancelled() []cancelCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cancelCall(nil), f.cancels...)
}

func (f *fakeBuilds) all() []BuildRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]BuildRequest(nil), f.reqs...)
}

// wait waits until at least n builds were submitted.
func (f *fakeBuilds) wait(t *testing.T, n int, timeout time.Duration) []BuildRequest {
	t.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		got, ch := append([]BuildRequest(nil), f.reqs...), f.changed
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waited %s for %d builds, got %d: %+v", timeout, n, len(got), got)
		}
	}
}

type harness struct {
	t      *testing.T
	dir    string
	srv    *gerrittest.Server
	builds *fakeBuilds
	cfg    Config
	opts   Options // the intake's; Now, Git and Reviewer stay real when zero
	db     *sql.DB
	st     *store.Gerrit // the intake's storage
	in     *Intake
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	marker int
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newHarness starts a Gerrit stand-in, git repositories and an intake with
// the shipped example rules; change adjusts the configuration.
func newHarness(t *testing.T, opts gerrittest.Options, change func(*Config, *gerrittest.Server)) *harness {
	t.Helper()
	return newHarnessWith(t, opts, change, Options{})
}

// newHarnessWith is newHarness with the intake's options.
func newHarnessWith(t *testing.T, opts gerrittest.Options, change func(*Config, *gerrittest.Server), io Options) *harness {
	t.Helper()
	testenv.Tool(t, "git")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	opts.Accounts = append(opts.Accounts, gerrittest.Account{User: "kiln", Key: gerrittest.WriteClientKey(t, keyFile)})
	opts.GitRoot = filepath.Join(dir, "git")
	srv := gerrittest.Start(t, opts)
	known := filepath.Join(dir, "known_hosts")
	if err := srv.WriteKnownHosts(known); err != nil {
		t.Fatal(err)
	}
	cfg := loadExample(t)
	cfg.Servers = []ServerConfig{{
		Name: "review", SSH: srv.Addr(), User: "kiln", PrivateKeyFile: keyFile, KnownHostsFile: known,
		GitURL: filepath.Join(dir, "git") + "/{project}", WebhookSecret: "s3cret",
	}}
	cfg.Track = nil
	cfg.Keepalive = 500 * time.Millisecond
	cfg.Reconnect = Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	cfg.ReconcileInterval = time.Hour
	cfg.LogURL = "https://kiln.example.com/jobs/{job}/log"
	if change != nil {
		change(&cfg, srv)
		if a := cfg.Servers[0].SSH; a != srv.Addr() {
			if err := srv.WriteKnownHosts(known, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The coordinator's store, as serve gives it to the intake.
	st, err := store.Open(context.Background(), filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gst, err := st.Gerrit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, srv: srv, builds: newFakeBuilds(), cfg: cfg, opts: io, db: st.DB(), st: gst}
	h.start()
	return h
}

// start builds and runs a fresh intake on the harness's database.
func (h *harness) start() {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info, Output: tlogWriter{h.t}})
	in, err := NewWithOptions(h.cfg, h.st, h.builds, logger, h.reg, h.opts)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.in, h.cancel, h.done = in, cancel, make(chan error, 1)
	go func() { h.done <- in.Run(ctx) }()
	h.t.Cleanup(h.stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := h.srv.WaitStreams(wctx, 1); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

// restartIntake stops the intake and starts a new one on the same database,
// as a coordinator restart does.
func (h *harness) restartIntake() {
	h.t.Helper()
	h.stop()
	// Let the stand-in notice, so that the new intake's stream is the only
	// one events go to.
	for deadline := time.Now().Add(5 * time.Second); h.srv.Streams() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	h.start()
}

// restartServer kills the stand-in, runs between (may be nil) while it is
// down, restarts it and waits for the intake to stream again.
func (h *harness) restartServer(between func()) {
	h.t.Helper()
	h.srv.Kill()
	for deadline := time.Now().Add(5 * time.Second); h.srv.Streams() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if between != nil {
		between()
	}
	if err := h.srv.Restart(); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.WaitStreams(ctx, 1); err != nil {
		h.t.Fatal(err)
	}
}

// git runs git in the repository of project, creating it first.
func (h *harness) git(project string, args ...string) string {
	h.t.Helper()
	repo := filepath.Join(h.dir, "git", project)
	if _, err := os.Stat(filepath.Join(repo, ".git")); err != nil {
		if err := os.MkdirAll(repo, 0o755); err != nil {
			h.t.Fatal(err)
		}
		h.run(repo, "init", "-q")
	}
	return h.run(repo, args...)
}

func (h *harness) run(repo string, args ...string) string {
	h.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Kiln Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Kiln Test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		h.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit adds a commit on branch of project and returns its id.
func (h *harness) commit(project, branch, msg string) string {
	h.t.Helper()
	h.git(project, "checkout", "-q", "-B", branch)
	h.git(project, "commit", "-q", "--allow-empty", "-m", msg)
	return h.git(project, "rev-parse", "HEAD")
}

// sync sends a marker event and waits until the intake logged it: every
// event sent before has then been handled.
func (h *harness) sync() {
	h.t.Helper()
	h.marker++
	project := fmt.Sprintf("marker/m%d", h.marker)
	h.srv.Send(patchsetCreated(project, "master", 1, 1, psRev))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := h.in.ListEvents(context.Background(), 5)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Project == project && h.decided() {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("marker event %s not handled in time", project)
}

// decided tells whether every accepted event has been decided.
func (h *harness) decided() bool {
	h.t.Helper()
	n, err := h.st.PendingCount(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n == 0
}

// counter sums the values of a counter or gauge vector.
func (h *harness) counter(name string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// Event lines in Gerrit 3.x shape.

func patchsetCreated(project, branch string, change, ps int, rev string) string {
	return fmt.Sprintf(`{"uploader":{"name":"Ann Dev","email":"ann@example.com","username":"ann"},"patchSet":{"number":%[3]d,"revision":"%[4]s","parents":["%[5]s"],"ref":"refs/changes/%02[6]d/%[2]d/%[3]d","uploader":{"name":"Ann Dev","username":"ann"},"createdOn":1700000000,"kind":"REWORK"},"change":{"project":"%[1]s","branch":"%[7]s","id":"I%040[2]d","number":%[2]d,"subject":"A change","owner":{"name":"Ann Dev","username":"ann"},"url":"https://review.example.com/c/%[1]s/+/%[2]d","status":"NEW"},"project":"%[1]s","refName":"refs/heads/%[7]s","changeKey":{"id":"I%040[2]d"},"type":"patchset-created","eventCreatedOn":1700000001}`,
		project, change, ps, rev, parentRev, change%100, branch)
}

func changeMerged(project, branch string, change, ps int, rev, newRev string) string {
	return fmt.Sprintf(`{"submitter":{"name":"Bob Core","username":"bob"},"newRev":"%[5]s","patchSet":{"number":%[3]d,"revision":"%[4]s","ref":"refs/changes/%02[6]d/%[2]d/%[3]d","createdOn":1700000000},"change":{"project":"%[1]s","branch":"%[7]s","id":"I%040[2]d","number":%[2]d,"subject":"A change","status":"MERGED"},"project":"%[1]s","refName":"refs/heads/%[7]s","changeKey":{"id":"I%040[2]d"},"type":"change-merged","eventCreatedOn":1700000500}`,
		project, change, ps, rev, newRev, change%100, branch)
}

func refUpdated(project, ref, oldRev, newRev string) string {
	return fmt.Sprintf(`{"submitter":{"name":"Bob Core","username":"bob"},"refUpdate":{"oldRev":"%s","newRev":"%s","refName":"%s","project":"%s"},"type":"ref-updated","eventCreatedOn":1700000499}`,
		oldRev, newRev, ref, project)
}

func commentAdded(project, branch string, change, ps int, rev, comment string, at int) string {
	return fmt.Sprintf(`{"author":{"name":"Ann Dev","username":"ann"},"approvals":[{"type":"Code-Review","value":"0"}],"comment":%q,"patchSet":{"number":%d,"revision":"%s","ref":"refs/changes/%02d/%d/%d"},"change":{"project":"%s","branch":"%s","number":%d,"status":"NEW"},"project":"%s","refName":"refs/heads/%s","changeKey":{"id":"I%040d"},"type":"comment-added","eventCreatedOn":%d}`,
		comment, ps, rev, change%100, change, ps, project, branch, change, project, branch, change, at)
}

func changeAbandoned(project, branch string, change, ps int, rev, reason string, at int) string {
	return fmt.Sprintf(`{"abandoner":{"name":"Ann Dev","username":"ann"},"reason":%q,"patchSet":{"number":%d,"revision":"%s","ref":"refs/changes/%02d/%d/%d","createdOn":1700000000},"change":{"project":"%s","branch":"%s","id":"I%040d","number":%d,"status":"ABANDONED"},"project":"%s","refName":"refs/heads/%s","changeKey":{"id":"I%040d"},"type":"change-abandoned","eventCreatedOn":%d}`,
		reason, ps, rev, change%100, change, ps, project, branch, change, change, project, branch, change, at)
}

func changeDeleted(project, branch string, change, at int) string {
	return fmt.Sprintf(`{"deleter":{"name":"Ann Dev","username":"ann"},"change":{"project":"%s","branch":"%s","id":"I%040d","number":%d,"status":"NEW"},"project":"%s","refName":"refs/heads/%s","changeKey":{"id":"I%040d"},"type":"change-deleted","eventCreatedOn":%d}`,
		project, branch, change, change, project, branch, change, at)
}

package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/internal/tlsconfig"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// slowGitHTTP serves repositories under root with git http-backend, the
// first request of every git command (its ref advertisement) answered only
// after delay, or, while held, not before release is called.
type slowGitHTTP struct {
	URL     string
	delay   time.Duration
	mu      sync.Mutex
	held    chan struct{}
	asked   chan struct{}
	backend http.Handler
}

func newSlowGitHTTP(t *testing.T, root string, delay time.Duration) *slowGitHTTP {
	t.Helper()
	s := &slowGitHTTP{delay: delay, asked: make(chan struct{}, 100), backend: &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}}
	addr := freeAddr(t)
	srv := &http.Server{Addr: addr, Handler: s}
	go srv.ListenAndServe() //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	(&cluster{t: t}).waitListening(addr)
	s.URL = "http://" + addr + "/"
	return s
}

// hold makes ref advertisements wait until release.
func (s *slowGitHTTP) hold() {
	s.mu.Lock()
	s.held = make(chan struct{})
	s.mu.Unlock()
}

func (s *slowGitHTTP) release() {
	s.mu.Lock()
	if s.held != nil {
		close(s.held)
		s.held = nil
	}
	s.delay = 0
	s.mu.Unlock()
}

func (s *slowGitHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/info/refs") {
		s.asked <- struct{}{}
		s.mu.Lock()
		held, delay := s.held, s.delay
		s.mu.Unlock()
		if held != nil {
			select {
			case <-held:
			case <-r.Context().Done():
				return
			}
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	s.backend.ServeHTTP(w, r)
}

// webhooksPlugin posts an event as Gerrit's webhooks plugin does with its
// defaults: each try gives up after 5 s, and a failed delivery is tried
// again a second later, 5 tries in all. It returns the statuses seen.
func webhooksPlugin(t *testing.T, url, body string) []string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var seen []string
	for try := 1; try <= 5; try++ {
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			resp.Body.Close()
			seen = append(seen, resp.Status)
			if resp.StatusCode/100 == 2 {
				return seen
			}
		} else {
			seen = append(seen, err.Error())
		}
		time.Sleep(time.Second)
	}
	return seen
}

// gerritIntake is a coordinator with a Gerrit intake whose git server
// answers slowly, and no worker: builds stay queued, and are counted.
type gerritIntake struct {
	c       *cluster
	git     *slowGitHTTP
	gitRoot string
	cfg     string
}

func newGerritIntake(t *testing.T, gitDelay time.Duration) *gerritIntake {
	t.Helper()
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "id_ed25519")
	stand := gerrittest.Start(t, gerrittest.Options{Accounts: []gerrittest.Account{{User: "kiln", Key: gerrittest.WriteClientKey(t, keyFile)}}})
	knownHosts := filepath.Join(keyDir, "known_hosts")
	if err := stand.WriteKnownHosts(knownHosts); err != nil {
		t.Fatal(err)
	}
	return newGerritIntakeAt(t, gitDelay, stand.Addr(), keyFile, knownHosts)
}

// newGerritIntakeAt is newGerritIntake with Gerrit's SSH daemon at addr.
func newGerritIntakeAt(t *testing.T, gitDelay time.Duration, addr, keyFile, knownHosts string) *gerritIntake {
	t.Helper()
	testenv.Tool(t, "git")
	g := &gerritIntake{gitRoot: t.TempDir()}
	g.git = newSlowGitHTTP(t, g.gitRoot, gitDelay)
	c := &cluster{t: t, addr: freeAddr(t), httpAddr: freeAddr(t), state: t.TempDir()}
	g.c, g.cfg = c, filepath.Join(c.state, "coordinator.yaml")
	os.WriteFile(g.cfg, []byte(fmt.Sprintf(`heartbeat_interval: 1s
lost_after: 4s
releases:
  rel:
    deb_suffix: "+rel{revision}"
    targets:
      bookworm-amd64: deb
gerrit:
  servers:
    - name: review
      ssh: %s
      user: kiln
      private_key_file: %s
      known_hosts_file: %s
      git_url: %s{project}
      webhook_secret: s3cret
  git_timeout: 30s
  rules:
    - name: linux
      sources:
        - project: "{customer}/packages/{distribution}/{package}"
          role: combined
      branches:
        - branch: "{fuel}"
          release: rel
          targets: [bookworm-amd64]
          package: "{package}"
`, addr, keyFile, knownHosts, g.git.URL)), 0o644)
	g.start()
	c.connect()
	return g
}

func (g *gerritIntake) start() {
	g.c.coord = start(g.c.t, "coordinator", "coordinator", "serve", "--dev", "--config", g.cfg, "--state-dir", g.c.state,
		"--listen", g.c.addr, "--http-listen", g.c.httpAddr)
	g.c.waitListening(g.c.addr)
	g.c.waitListening(g.c.httpAddr)
}

// branch makes project's repository with a commit on branch and returns it.
func (g *gerritIntake) branch(t *testing.T, project, branch string) string {
	t.Helper()
	dir := filepath.Join(g.gitRoot, project)
	gs := &gitServer{}
	os.MkdirAll(dir, 0o755)
	gs.git(t, dir, "init", "-q", "-b", branch)
	gs.git(t, dir, "-c", "user.name=Kiln Tests", "-c", "user.email=tests@kiln.invalid", "commit", "-q", "--allow-empty", "-m", "merged")
	return strings.TrimSpace(gs.git(t, dir, "rev-parse", "HEAD"))
}

// waitDecided waits until the event of project is decided and returns it.
func (g *gerritIntake) waitDecided(t *testing.T, project string, timeout time.Duration) *pb.Event {
	t.Helper()
	var last *pb.Event
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := g.c.client.ListEvents(context.Background(), &pb.ListEventsRequest{Limit: 100})
		if err != nil {
			continue // restarting
		}
		for _, e := range resp.GetEvents() {
			if e.GetProject() == project {
				last = e
				if e.GetAction() != "received" && e.GetAction() != "failed" {
					return e
				}
			}
		}
	}
	t.Fatalf("event of %s not decided after %s: %v", project, timeout, last)
	return nil
}

// builds lists the package builds queued.
func (g *gerritIntake) builds(t *testing.T) []*pb.Job {
	t.Helper()
	resp, err := g.c.client.ListJobs(context.Background(), &pb.ListJobsRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetJobs()
}

func mergedEvent(project, branch, rev string, change int) string {
	return fmt.Sprintf(`{"submitter":{"name":"Bob","username":"bob"},"newRev":"%[3]s","patchSet":{"number":1,"revision":"%[3]s","ref":"refs/changes/%02[4]d/%[4]d/1","createdOn":1700000000},"change":{"project":"%[1]s","branch":"%[2]s","id":"I%040[4]d","number":%[4]d,"subject":"A change","status":"MERGED"},"project":"%[1]s","refName":"refs/heads/%[2]s","changeKey":{"id":"I%040[4]d"},"type":"change-merged","eventCreatedOn":1700000500}`,
		project, branch, rev, change%100+change)
}

// TestGerritWebhookSlowGitBuildsOnce: Gerrit's webhooks plugin, with its
// 5 s timeout and 5 tries, delivers a change-merged on a branch never built
// before while the git server takes 6 s to answer ls-remote. The delivery
// is acknowledged at once, and the merge is built exactly once.
func TestGerritWebhookSlowGitBuildsOnce(t *testing.T) {
	g := newGerritIntake(t, 6*time.Second)
	project := "acme/packages/bookworm/slow"
	head := g.branch(t, project, "9.0")
	start := time.Now()
	seen := webhooksPlugin(t, "http://"+g.c.httpAddr+"/gerrit/webhook/review?secret=s3cret", mergedEvent(project, "9.0", head, 42))
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "204") || time.Since(start) > 4*time.Second { // under Gerrit's 5 s and the git server's 6 s
		t.Fatalf("deliveries: %q in %s, want one 204 at once", seen, time.Since(start))
	}
	e := g.waitDecided(t, project, time.Minute)
	if e.GetAction() != "built" || e.GetRevision() != head || len(e.GetJobIds()) != 1 {
		t.Fatalf("event = %v, want built at %s", e, head)
	}
	if jobs := g.builds(t); len(jobs) != 1 || jobs[0].GetId() != e.GetJobIds()[0] {
		t.Fatalf("jobs = %v, want the one build", jobs)
	}
}

// TestGerritEventSurvivesKill: the coordinator is killed after it
// acknowledged an event and while it is deciding it (waiting for git).
// After a restart the event is decided and built once.
func TestGerritEventSurvivesKill(t *testing.T) {
	g := newGerritIntake(t, 0)
	project := "acme/packages/bookworm/killed"
	head := g.branch(t, project, "9.0")
	g.git.hold()
	seen := webhooksPlugin(t, "http://"+g.c.httpAddr+"/gerrit/webhook/review?secret=s3cret", mergedEvent(project, "9.0", head, 43))
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "204") {
		t.Fatalf("deliveries: %q, want one 204", seen)
	}
	select {
	case <-g.git.asked: // deciding: waiting for the branch head
	case <-time.After(30 * time.Second):
		t.Fatal("the coordinator never asked git for the branch head")
	}
	g.c.coord.kill()
	g.git.release()
	g.start()
	e := g.waitDecided(t, project, time.Minute)
	if e.GetAction() != "built" || e.GetRevision() != head || len(e.GetJobIds()) != 1 {
		t.Fatalf("event = %v, want built at %s", e, head)
	}
	if jobs := g.builds(t); len(jobs) != 1 || jobs[0].GetId() != e.GetJobIds()[0] {
		t.Fatalf("jobs = %v, want the one build", jobs)
	}
}

// TestGerritEventsListNoise: events list shows what was done with each
// event; with --all also the noise, with the reason. A --limit beyond
// the server's maximum is refused, not cut.
func TestGerritEventsListNoise(t *testing.T) {
	g := newGerritIntake(t, 0)
	project := "acme/packages/bookworm/noisy"
	head := g.branch(t, project, "9.0")
	url := "http://" + g.c.httpAddr + "/gerrit/webhook/review?secret=s3cret"
	comment := fmt.Sprintf(`{"author":{"name":"Ann","username":"ann"},"comment":"Patch Set 1: Code-Review+1","patchSet":{"number":1,"revision":"%[1]s","ref":"refs/changes/44/44/1"},"change":{"project":"%[2]s","branch":"9.0","number":44,"status":"NEW"},"project":"%[2]s","refName":"refs/heads/9.0","type":"comment-added","eventCreatedOn":1700000001}`, head, project)
	for _, body := range []string{comment, `{"type":"reviewer-added","change":{"project":"x","branch":"y","number":1}}`, mergedEvent(project, "9.0", head, 45)} {
		if seen := webhooksPlugin(t, url, body); len(seen) != 1 || !strings.HasPrefix(seen[0], "204") {
			t.Fatalf("deliveries: %q", seen)
		}
	}
	g.waitDecided(t, project, time.Minute)
	out, errOut, code := g.c.cli("events", "list")
	if code != 0 || !strings.Contains(out, "change-merged") || strings.Contains(out, "comment-added") || strings.Contains(out, "reviewer-added") {
		t.Fatalf("events list: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = g.c.cli("events", "list", "--all")
	for _, want := range []string{"change-merged", "comment-added", "the comment does not ask for a recheck", "reviewer-added", "Kiln does not act on reviewer-added events"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("events list --all: %d, want %q in\n%s%s", code, want, out, errOut)
		}
	}
	out, errOut, code = g.c.cli("events", "list", "--limit", "100000")
	if code == 0 || !strings.Contains(errOut, "100000") {
		t.Fatalf("events list --limit 100000: %d\n%s%s; want it refused, naming the limit", code, out, errOut)
	}
}

// standIn builds and starts gerrit-standin, letting in a new key of the
// account kiln; it returns its address, the key, a known_hosts file for
// it, the directory it reads events from and its process.
func standIn(t *testing.T) (addr, keyFile, knownHosts, events string, p *proc) {
	t.Helper()
	dir := t.TempDir()
	standin := filepath.Join(dir, "gerrit-standin")
	if out, err := exec.Command("go", "build", "-o", standin, "github.com/kiln-build/kiln/coordinator/gerrit/gerrittest/gerrit-standin").CombinedOutput(); err != nil {
		t.Fatalf("build gerrit-standin: %v\n%s", err, out)
	}
	keyFile = filepath.Join(dir, "id_ed25519")
	pub := gerrittest.WriteClientKey(t, keyFile)
	os.WriteFile(filepath.Join(dir, "kiln.pub"), ssh.MarshalAuthorizedKey(pub), 0o644)
	events = filepath.Join(dir, "events")
	os.MkdirAll(events, 0o755)
	addr, knownHosts = freeAddr(t), filepath.Join(dir, "known_hosts")
	p = start(t, standin, "gerrit-standin", "--listen", addr, "--host-key", filepath.Join(dir, "host_key"),
		"--authorized-keys", filepath.Join(dir, "kiln.pub"), "--known-hosts", knownHosts, "--events", events)
	(&cluster{t: t}).waitListening(addr)
	return addr, keyFile, knownHosts, events, p
}

// TestGerritStandInDrivesStream: the runnable stand-in (gerrit-standin)
// serves an event file over SSH stream-events to a coordinator, which
// builds from it.
func TestGerritStandInDrivesStream(t *testing.T) {
	addr, keyFile, knownHosts, events, _ := standIn(t)
	g := newGerritIntakeAt(t, 0, addr, keyFile, knownHosts)
	project := "acme/packages/bookworm/standin"
	head := g.branch(t, project, "9.0")
	os.WriteFile(filepath.Join(events, "001-merged.json"), []byte(mergedEvent(project, "9.0", head, 46)+"\n"), 0o644)
	e := g.waitDecided(t, project, time.Minute)
	if e.GetAction() != "built" || e.GetRevision() != head || len(e.GetJobIds()) != 1 {
		t.Fatalf("event = %v, want built at %s", e, head)
	}
}

// TestGerritStandInBuildVotes: the stand-in drives the whole SSH path: an
// event file streamed to the coordinator, a review build in a real
// buildroot, and the Verified vote recorded by the stand-in, which prints
// it.
func TestGerritStandInBuildVotes(t *testing.T) {
	addr, keyFile, knownHosts, events, standin := standIn(t)
	p := newPipeline(t, func(g *gitServer) string {
		return fmt.Sprintf(`gerrit:
  servers:
    - name: review
      ssh: %s
      user: kiln
      private_key_file: %s
      known_hosts_file: %s
      git_url: %s{project}
  reconnect:
    min: 100ms
    max: 1s
  rules:
    - name: linux
      sources:
        - project: "{customer}/packages/{distribution}/{package}"
          role: combined
      where:
        distribution: 'bookworm'
      branches:
        - branch: "{fuel}"
          release: rel
          targets: [%s]
          package: "{package}"
`, addr, keyFile, knownHosts, g.url, "kiln-test-deb")
	})
	project := "acme/packages/bookworm/kiln-hello"
	_, base := p.g.repo(t, project, "../examples/hello")
	dir := filepath.Join(p.g.base, project)
	p.g.git(t, dir, "branch", "9.0", base)
	os.WriteFile(filepath.Join(dir, "hello.c"), []byte("#error this patch set does not compile\n"), 0o644)
	broken := p.g.commit(t, project, "a patch set that does not compile")
	p.g.git(t, dir, "update-ref", "refs/changes/35/1235/1", broken)
	p.g.git(t, dir, "reset", "-q", "--hard", base)
	event := fmt.Sprintf(`{"uploader":{"name":"Ann","username":"ann"},"patchSet":{"number":1,"revision":"%s","ref":"refs/changes/35/1235/1","createdOn":1700000000,"kind":"REWORK"},"change":{"project":"%s","branch":"9.0","id":"I1235","number":1235,"subject":"break it","status":"NEW"},"project":"%s","refName":"refs/heads/9.0","type":"patchset-created","eventCreatedOn":1700000001}`,
		broken, project, project)
	os.WriteFile(filepath.Join(events, "001-patchset.json"), []byte(event+"\n"), 0o644)
	var vote map[string]any
	for deadline := time.Now().Add(5 * time.Minute); vote == nil; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			out, _, _ := p.c.cli("events", "list")
			t.Fatalf("the stand-in printed no review\nevents:\n%s", out)
		}
		log, _ := os.ReadFile(standin.log)
		for _, line := range strings.Split(string(log), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["Change"] == float64(1235) {
				vote = r
			}
		}
	}
	labels, _ := vote["Labels"].(map[string]any)
	if vote["PatchSet"] != float64(1) || labels["Verified"] != "-1" || !strings.Contains(fmt.Sprint(vote["Message"]), "FAILURE") {
		t.Fatalf("review printed by the stand-in: %v, want Verified -1 on 1235,1 with the failure", vote)
	}

	// The change filter of ListJobs and of the web pages finds the review
	// build by the origin the intake gave it, and its page names the
	// change and patch set.
	resp, err := p.c.client.ListJobs(context.Background(), &pb.ListJobsRequest{Change: 1235})
	if err != nil || len(resp.GetJobs()) != 1 {
		t.Fatalf("ListJobs change 1235: %v %v, want the review build", resp.GetJobs(), err)
	}
	id := resp.GetJobs()[0].GetId()
	if other, err := p.c.client.ListJobs(context.Background(), &pb.ListJobsRequest{Change: 1234}); err != nil || len(other.GetJobs()) != 0 {
		t.Errorf("ListJobs change 1234: %v %v, want none", other.GetJobs(), err)
	}
	if out, errOut, code := p.c.cli("jobs", "list", "--change", "1235", "--json"); code != 0 || !strings.Contains(out, `"id": "`+id+`"`) {
		t.Errorf("jobs list --change 1235: exit %d\n%s\n%s", code, out, errOut)
	}
	tc, err := tlsconfig.Client(*p.c.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
	for path, want := range map[string]string{
		"/jobs?change=1235": `href="/jobs/` + id + `"`,
		"/jobs/" + id:       `<a href="/jobs?change=1235">change 1235</a>, patch set 1`,
	} {
		page, err := web.Get("https://" + p.c.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(page.Body)
		page.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s lacks %q:\n%s", path, want, body)
		}
	}
}

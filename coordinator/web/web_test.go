package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
)

// testFleet is a real fleet on a store in a temporary directory, with a
// worker session to run jobs as a worker would.
type testFleet struct {
	*fleet.Fleet
	t    *testing.T
	sess string
}

func newTestFleet(t *testing.T) *testFleet {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Hour}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := f.Register(ctx, "w1", map[string]string{"os": "linux"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &testFleet{Fleet: f, t: t, sess: sess}
}

// submit queues a job.
func (tf *testFleet) submit(spec job.Spec) *job.Job {
	tf.t.Helper()
	j, _, err := tf.Submit(context.Background(), spec)
	if err != nil {
		tf.t.Fatal(err)
	}
	return j
}

// start queues a command job and hands it to the worker.
func (tf *testFleet) start(command ...string) *job.Job {
	tf.t.Helper()
	j := tf.submit(job.Spec{Kind: job.Command, Command: command, Labels: map[string]string{"os": "linux"}})
	got, err := tf.Pull(context.Background(), tf.sess, 0)
	if err != nil || got == nil || got.ID != j.ID {
		tf.t.Fatalf("pull: %v %v, want job %s", got, err, j.ID)
	}
	return got
}

func (tf *testFleet) print(id string, s string) {
	tf.t.Helper()
	if err := tf.AppendLog(tf.sess, id, 1, []byte(s)); err != nil {
		tf.t.Fatal(err)
	}
}

func (tf *testFleet) finish(id string, o scheduler.Outcome) {
	tf.t.Helper()
	if err := tf.Complete(context.Background(), tf.sess, id, 1, o); err != nil {
		tf.t.Fatal(err)
	}
}

// upload stores an artifact of a running job and returns its record.
func (tf *testFleet) upload(id, name string, content []byte) job.Artifact {
	tf.t.Helper()
	sum := sha256.Sum256(content)
	a := job.Artifact{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))}
	if err := tf.PutArtifact(tf.sess, id, 1, a, bytes.NewReader(content)); err != nil {
		tf.t.Fatal(err)
	}
	return a
}

func serve(t *testing.T, f Fleet, cfg Config) *httptest.Server {
	t.Helper()
	s := New(cfg, f)
	mux := http.NewServeMux()
	s.Register(mux)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestRenderLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     Line
	}{
		{"plain", "hello world", Line{{Text: "hello world"}}},
		{"empty", "", Line{}},
		{"colour and reset", "a\x1b[31mred\x1b[0mb", Line{{Text: "a"}, {Class: "fg1", Text: "red"}, {Text: "b"}}},
		{"bold bright on blue", "\x1b[1;92;44mok\x1b[m", Line{{Class: "fg10 bg4 b", Text: "ok"}}},
		{"256 colours", "\x1b[38;5;9mx\x1b[38;5;200my\x1b[39mz", Line{{Class: "fg9", Text: "x"}, {Text: "yz"}}},
		{"true colour ignored", "\x1b[38;2;255;0;0mx", Line{{Text: "x"}}},
		{"cursor movement dropped", "a\x1b[2Kb\x1b[1;1Hc\x1b[?25l", Line{{Text: "abc"}}},
		{"osc title with BEL", "\x1b]0;owned\x07text", Line{{Text: "text"}}},
		{"osc hyperlink keeps its text", "\x1b]8;;javascript:alert(1)\x1b\\click\x1b]8;;\x1b\\", Line{{Text: "click"}}},
		{"dcs dropped", "a\x1bPq#0;2;0;0;0\x1b\\b", Line{{Text: "ab"}}},
		{"unterminated osc", "a\x1b]2;never ends", Line{{Text: "a"}}},
		{"charset selection", "\x1b(Bx", Line{{Text: "x"}}},
		{"carriage return overwrites", "10%\r50%\r100%", Line{{Text: "100%"}}},
		{"crlf", "line\r", Line{{Text: "line"}}},
		{"control characters", "a\x00b\x07c\x08d\x7fe\tf", Line{{Text: "abcde\tf"}}},
		{"c1 csi", "a\u009b31mb", Line{{Text: "a31mb"}}},
		{"bidi override", "abc\u202edef\u2066", Line{{Text: "abcdef"}}},
		{"invalid utf-8", "a\xff\xfeb", Line{{Text: "a\ufffd\ufffdb"}}},
		{"html is text", "<script>alert(1)</script>", Line{{Text: "<script>alert(1)</script>"}}},
	}
	for _, tc := range cases {
		got := RenderLine([]byte(tc.in))
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("%s: RenderLine(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestSplitterKeepsPartialLines(t *testing.T) {
	t.Parallel()
	var sp lineSplitter
	lines, used := sp.add([]byte("one\ntw"))
	if len(lines) != 1 || used != 4 {
		t.Fatalf("first: %q %d", lines, used)
	}
	lines, used = sp.add([]byte("o\n"))
	if len(lines) != 1 || lines[0][0].Text != "two" || used != 4 {
		t.Fatalf("second: %q %d", lines, used)
	}
	long := bytes.Repeat([]byte("é"), maxPartial) // 2 bytes a rune
	lines, used = sp.add(long)
	if len(lines) != 1 || used > maxPartial || used%2 != 0 {
		t.Fatalf("long partial line: %d lines, %d bytes used; want one line cut at a rune start within %d", len(lines), used, maxPartial)
	}
}

// Hostile data in a job, a source URL, a log and a Gerrit event is shown
// as text and never becomes markup, script or a javascript: link.
func TestHostileDataIsText(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	j := tf.start("sh", "-c", "<script>alert(1)</script>")
	tf.print(j.ID, "<script>alert(2)</script>\n\x1b]0;title\x07\x1b]8;;javascript:alert(3)\x1b\\click\x1b]8;;\x1b\\ \x1b[31mred\x1b[0m\n")
	pkg := tf.submit(job.Spec{Kind: job.PackageBuild, Labels: map[string]string{"target": "bookworm"},
		Origin: `<img src=x onerror=alert(4)>`,
		Build: &job.Build{Release: "r1", Target: "bookworm", Package: "hello",
			Sources: []job.Source{{URL: "javascript:alert(5)", Commit: strings.Repeat("a", 40), Role: "combined"}}}})
	// A package name the API would refuse, as a store written by another
	// version or by hand might hold it.
	evil := &job.Job{ID: "evil", Seq: 1 << 40, State: job.Failed, CreatedAt: time.Now(), Reason: "\x1b[2J<script>alert(9)</script>",
		Spec: job.Spec{Kind: job.PackageBuild, Origin: "gerrit g: review build of change 9 patch set 1 (<script>alert(10)</script> main)",
			Build: &job.Build{Release: "<script>alert(11)</script>", Target: "bookworm", Package: `<script>alert(8)</script>"><img src=x>`}}}
	if err := tf.Store().Put(context.Background(), evil); err != nil {
		t.Fatal(err)
	}
	events := fakeEvents{{ID: 1, Server: "gerrit", Type: "patchset-created", Project: "<script>alert(6)</script>",
		Branch: "main", Change: 7, PatchSet: 2, Action: "built", Reason: `"><b onmouseover=alert(7)>`, JobIDs: []string{`"><script>`}}}
	srv := serve(t, tf, Config{Events: events})

	for _, page := range []string{"/jobs/" + j.ID, "/jobs/" + pkg.ID, "/", "/events", "/?state=running", "/jobs/evil", "/jobs", "/jobs?release=%3Cscript%3E"} {
		resp, body := get(t, srv.URL+page)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s\n%s", page, resp.Status, body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", page, csp)
		}
		for _, bad := range []string{"<script>alert", "<img", "<b ", `href="javascript:`, "\x1b", "\x07"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: page holds %q:\n%s", page, bad, body)
			}
		}
		for _, s := range regexpAll(`<script[^>]*>`, body) {
			if s != `<script src="/static/log.js" defer>` {
				t.Errorf("%s: script element %s", page, s)
			}
		}
		// Every < in the page starts real markup: data's are escaped.
		if tags := regexpAll(`<[a-z][^>]*\s(style|on[a-z]+)=[^>]*>|<style`, body); tags != nil {
			t.Errorf("%s: inline style or event handler: %q", page, tags)
		}
	}
	_, body := get(t, srv.URL+"/jobs/"+j.ID)
	for _, want := range []string{"&lt;script&gt;alert(2)&lt;/script&gt;", `click <span class="fg1">red</span>`, "&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %q:\n%s", want, body)
		}
	}
	_, body = get(t, srv.URL+"/jobs/"+pkg.ID)
	if !strings.Contains(body, "&lt;img src=x onerror=alert(4)&gt;") || !strings.Contains(body, `href="#ZgotmplZ"`) {
		t.Errorf("package job page: origin not escaped or javascript: link not neutralised:\n%s", body)
	}
	_, body = get(t, srv.URL+"/jobs/evil")
	for _, want := range []string{"&lt;script&gt;alert(8)&lt;/script&gt;&#34;&gt;&lt;img src=x&gt;", "␛[2J&lt;script&gt;alert(9)", "&lt;script&gt;alert(10)", "&lt;script&gt;alert(11)"} {
		if !strings.Contains(body, want) {
			t.Errorf("page of a job with a hostile package name lacks %q:\n%s", want, body)
		}
	}
	_, body = get(t, srv.URL+"/events")
	if !strings.Contains(body, "&lt;script&gt;alert(6)&lt;/script&gt;") || !strings.Contains(body, "/jobs/%22%3E%3Cscript%3E") {
		t.Errorf("events page:\n%s", body)
	}
}

func regexpAll(re, s string) []string { return regexp.MustCompile(re).FindAllString(s, -1) }

type fakeEvents []api.Event

func (e fakeEvents) ListEvents(context.Context, int, bool) ([]api.Event, error) { return e, nil }

// sseEvent is one server-sent event.
type sseEvent struct {
	ID, Event string
	Lines     []Line
	State     string
}

// readEvents reads events from an event stream until it ends or until
// stop says so.
func readEvents(t *testing.T, body io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	var data string
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data == "" {
				continue
			}
			var m struct {
				Lines []Line `json:"lines"`
				State string `json:"state"`
			}
			if err := json.Unmarshal([]byte(data), &m); err != nil {
				t.Fatalf("event data %q: %v", data, err)
			}
			cur.Lines, cur.State = m.Lines, m.State
			out = append(out, cur)
			if stop != nil && stop(cur) {
				return out
			}
			cur, data = sseEvent{}, ""
		case strings.HasPrefix(line, "id: "):
			cur.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}

func text(evs []sseEvent) string {
	var b strings.Builder
	for _, e := range evs {
		for _, l := range e.Lines {
			for _, s := range l {
				b.WriteString(s.Text)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// openEvents opens a job's event stream from lastID ("" for none).
func openEvents(t *testing.T, ctx context.Context, url, lastID string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return resp
}

// A browser following a running job's log sees lines printed after it
// connected; after losing the connection it resumes from the last event
// id and gets exactly the lines it has not seen, and the stream ends when
// the job does.
func TestLogEventsFollowAndResume(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	j := tf.start("make")
	srv := serve(t, tf, Config{})
	url := srv.URL + "/jobs/" + j.ID + "/log/events"
	tf.print(j.ID, "one\n\x1b[32mtwo\x1b[0m\nthr")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c1, stop1 := context.WithCancel(ctx)
	resp := openEvents(t, c1, url, "")
	first := readEvents(t, resp.Body, func(e sseEvent) bool { return strings.Contains(text([]sseEvent{e}), "two") })
	if got := text(first); !strings.HasSuffix(got, "one\ntwo\n") || strings.Contains(got, "thr") {
		t.Fatalf("first event %q: want the complete lines up to two, not the unfinished one", got)
	}
	tf.print(j.ID, "ee\nfour\n")
	second := readEvents(t, resp.Body, func(e sseEvent) bool { return strings.Contains(text([]sseEvent{e}), "four") })
	if got := text(second); got != "three\nfour\n" {
		t.Fatalf("after connecting: %q, want three and four", got)
	}
	lastID := second[len(second)-1].ID
	stop1()
	resp.Body.Close()

	tf.print(j.ID, "five\n")
	tf.finish(j.ID, scheduler.Outcome{})
	resp = openEvents(t, ctx, url+"?offset=0", lastID) // Last-Event-ID wins over the page's offset
	rest := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	if len(rest) == 0 || rest[len(rest)-1].Event != "end" || rest[len(rest)-1].State != "succeeded" {
		t.Fatalf("resumed stream %+v: want it to end with the job's state", rest)
	}
	got := text(rest)
	if !strings.HasPrefix(got, "five\n") || strings.Contains(got, "four") || !strings.Contains(got, "finished: succeeded") {
		t.Fatalf("resumed from %s: %q, want five, then the coordinator's note, and nothing seen before", lastID, got)
	}

	// Resuming from every id gives exactly the log after that byte offset.
	var raw bytes.Buffer
	if _, err := tf.StreamLog(ctx, j.ID, 0, false, func(b []byte) error { raw.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	all := readEvents(t, openEvents(t, ctx, url, "").Body, nil)
	if text(all) != renderedText(raw.Bytes()) {
		t.Fatalf("whole stream %q, want %q", text(all), renderedText(raw.Bytes()))
	}
	for i, e := range all {
		var off int
		fmt.Sscan(e.ID, &off)
		want := renderedText(raw.Bytes()[off:])
		resp := openEvents(t, ctx, url, e.ID)
		got := readEvents(t, resp.Body, nil)
		resp.Body.Close()
		if text(got) != want {
			t.Errorf("resume after event %d (id %s): %q, want %q", i, e.ID, text(got), want)
		}
	}

	resp, _ = get(t, url, "Last-Event-ID", "-1")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("negative Last-Event-ID: %s", resp.Status)
	}
	resp, _ = get(t, srv.URL+"/jobs/nosuchjob/log/events")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown job: %s", resp.Status)
	}
}

func renderedText(b []byte) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		for _, s := range RenderLine([]byte(strings.TrimSuffix(l, "\n"))) {
			out.WriteString(s.Text)
		}
		out.WriteByte('\n')
	}
	return out.String()
}

// The job page links each recorded artifact; the link streams its content
// and nothing else is reachable through it.
func TestArtifacts(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	j := tf.start("dpkg-buildpackage")
	content := []byte("a package\n")
	a := tf.upload(j.ID, "out/hello_1.0 #1.deb", content)
	tf.finish(j.ID, scheduler.Outcome{Artifacts: []job.Artifact{a}})
	srv := serve(t, tf, Config{})

	_, page := get(t, srv.URL+"/jobs/"+j.ID)
	href := "/jobs/" + j.ID + "/artifacts/out/hello_1.0%20%231.deb"
	if !strings.Contains(page, `href="`+href+`"`) || !strings.Contains(page, a.SHA256) {
		t.Fatalf("job page lacks the artifact link %s or its sha256:\n%s", href, page)
	}
	resp, body := get(t, srv.URL+href)
	sum := sha256.Sum256([]byte(body))
	if resp.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != a.SHA256 {
		t.Fatalf("download: %s, content %q", resp.Status, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("download headers: %v", resp.Header)
	}
	for _, p := range []string{"out/other.deb", "hello_1.0%20%231.deb", "..%2f..%2fcoordinator.db", "%2e%2e/%2e%2e/coordinator.db", "../../coordinator.db"} {
		resp, body := get(t, srv.URL+"/jobs/"+j.ID+"/artifacts/"+p)
		if resp.StatusCode == http.StatusOK || strings.Contains(body, "SQLite") {
			t.Errorf("artifact %s: %s, want no content", p, resp.Status)
		}
	}
}

// The overview shows why a queued job waits, what runs where, and the
// fleet's capacity; the state filter lists jobs of one state.
func TestOverview(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	running := tf.start("make", "running-job")
	waiting := tf.submit(job.Spec{Kind: job.Command, Command: []string{"make", "waiting-job"}, Labels: map[string]string{"target": "centos7"}})
	_, reason, err := tf.Get(context.Background(), waiting.ID)
	if err != nil || reason == "" {
		t.Fatalf("waiting reason %q %v", reason, err)
	}
	srv := serve(t, tf, Config{})
	_, body := get(t, srv.URL+"/")
	for _, want := range []string{"/jobs/" + waiting.ID, `<td class="waiting">` + reason + "</td>", "/jobs/" + running.ID, "make running-job", "<strong>1</strong> of <strong>1</strong> online slots busy"} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q:\n%s", want, body)
		}
	}
	_, body = get(t, srv.URL+"/?state=queued")
	if !strings.Contains(body, "/jobs/"+waiting.ID+"\"") || strings.Contains(body, "/jobs/"+running.ID+"\"") {
		t.Errorf("queued filter:\n%s", body)
	}
	if resp, _ := get(t, srv.URL+"/?state=bogus"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad state: %s", resp.Status)
	}
	_, body = get(t, srv.URL+"/jobs/"+waiting.ID)
	if !strings.Contains(body, "Why it waits") {
		t.Errorf("job page of a waiting job lacks the reason:\n%s", body)
	}
}

// Drain forms work only where actions are on, only by POST, and only from
// the pages' own origin on a loopback host.
func TestDrainForm(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	srv := serve(t, tf, Config{Actions: LoopbackActions})
	off := serve(t, tf, Config{})
	post := func(base, path string, header ...string) int {
		t.Helper()
		code, _ := postForm(t, base+path, header...)
		return code
	}
	_, body := get(t, srv.URL+"/workers")
	tok := formToken(t, body)
	state := func() scheduler.WorkerState { return tf.Workers()[0].State }
	for _, tc := range []struct {
		name   string
		base   string
		header []string
	}{
		{"no origin", srv.URL, []string{"token", tok}},
		{"other site", srv.URL, []string{"token", tok, "Origin", "https://evil.example"}},
		{"other site by referer", srv.URL, []string{"token", tok, "Referer", "https://evil.example/workers"}},
		{"cross-site fetch", srv.URL, []string{"token", tok, "Origin", srv.URL, "Sec-Fetch-Site", "same-site"}},
		{"rebound name", srv.URL, []string{"token", tok, "Host", "evil.example", "Origin", "http://evil.example"}},
		{"no token", srv.URL, []string{"Origin", srv.URL}},
		{"actions off", off.URL, []string{"token", tok, "Origin", off.URL}},
	} {
		if code := post(tc.base, "/workers/w1/drain", tc.header...); code != http.StatusForbidden || state() != scheduler.WorkerOnline {
			t.Errorf("%s: %d, worker %s; want 403 and online", tc.name, code, state())
		}
	}
	if resp, _ := get(t, srv.URL+"/workers/w1/drain"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET drain: %s", resp.Status)
	}
	if code := post(srv.URL, "/workers/w1/drain", "token", tok, "Origin", srv.URL); code != http.StatusSeeOther || state() != scheduler.WorkerDraining {
		t.Fatalf("same-origin drain: %d, worker %s", code, state())
	}
	_, body = get(t, srv.URL+"/workers")
	if !strings.Contains(body, `action="/workers/w1/undrain"`) {
		t.Errorf("workers page lacks the undrain form:\n%s", body)
	}
	if code := post(srv.URL, "/workers/w1/undrain", "token", tok, "Referer", srv.URL+"/workers"); code != http.StatusSeeOther || state() != scheduler.WorkerOnline {
		t.Fatalf("same-origin undrain: %d, worker %s", code, state())
	}
	if code := post(srv.URL, "/workers/nobody/drain", "token", tok, "Origin", srv.URL); code != http.StatusNotFound {
		t.Errorf("unknown worker: %d", code)
	}
	_, body = get(t, off.URL+"/workers")
	if strings.Contains(body, "<form") || !strings.Contains(body, "Read-only") {
		t.Errorf("read-only workers page:\n%s", body)
	}
}

func TestReviewOf(t *testing.T) {
	t.Parallel()
	for _, o := range []string{
		"gerrit review: review build of change 12 patch set 3 (team/pkg main)",
		"gerrit review review: change 12 patch set 3 (team/pkg main)", // the intake's earlier wordings
		"review: change 12 patch set 3 (team/pkg main) from gerrit review",
	} {
		if r := reviewOf(o); r == nil || r.Change != 12 || r.PatchSet != 3 {
			t.Errorf("review origin %q: %+v", o, r)
		}
	}
	for _, o := range []string{"", "gerrit review release: merge of 12 (p main)", "gerrit review: release build of team/pkg main at 1234567",
		"release: team/pkg main at 1234567, change-merged of change 12 from gerrit review", "cli"} {
		if r := reviewOf(o); r != nil {
			t.Errorf("%q: %+v, want no review", o, r)
		}
	}
}

// A long log is rendered in the page up to a limit; the page tells the
// live log where to go on from, at a line's start.
func TestJobPageLongLog(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	j := tf.start("make")
	line := strings.Repeat("x", 99) + "\n"
	tf.print(j.ID, strings.Repeat(line, 2*inlineLog/len(line)))
	srv := serve(t, tf, Config{})
	_, body := get(t, srv.URL+"/jobs/"+j.ID)
	m := regexp.MustCompile(`data-offset="(\d+)" data-done="false"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no offset for the live log:\n%s", body[:2000])
	}
	var raw bytes.Buffer
	if _, err := tf.StreamLog(context.Background(), j.ID, 0, false, func(b []byte) error { raw.Write(b); return nil }); err != nil {
		t.Fatal(err)
	}
	var off int
	fmt.Sscan(m[1], &off)
	if off < inlineLog || off >= raw.Len() || raw.Bytes()[off-1] != '\n' {
		t.Fatalf("page rendered %d of %d bytes; want at least %d, not all, ending at a newline", off, raw.Len(), inlineLog)
	}
	if got, want := strings.Count(body, strings.TrimSuffix(line, "\n")), strings.Count(raw.String()[:off], line); got != want {
		t.Errorf("page shows %d lines, want the %d before offset %d", got, want, off)
	}
}

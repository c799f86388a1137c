package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/internal/testenv"
)

// A running job's page in a real browser (Debian's chromium, driven over
// the DevTools protocol): lines the job prints after the page loaded
// appear, colours render as classes, a log line holding a script does not
// run, the page notices the job's end, and nothing breaks the page's
// Content-Security-Policy. A page that does break it is reported, so the
// check is known to work.
func TestBrowserFollowsLiveLog(t *testing.T) {
	bin := testenv.Tool(t, "chromium")
	tf := newTestFleet(t)
	j := tf.start("make")
	tf.print(j.ID, "before the page\n\x1b[31mred line\x1b[0m\n<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\">\n")

	s := New(Config{}, tf)
	mux := http.NewServeMux()
	s.Register(mux)
	mux.Handle("GET /csp-probe", secure(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><p style="color: red">inline style</p>`)
	})))
	connected := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/log/events") {
			connected <- struct{}{}
		}
		mux.ServeHTTP(w, r)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = s.Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone; srv.Close() })

	b := startBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.call(t, m, nil)
	}
	b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + j.ID})
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("the page did not open its live log within 30s")
	}
	logText := `document.getElementById("log").textContent`
	b.waitFor(t, logText, func(v any) bool { s, _ := v.(string); return strings.Contains(s, "before the page") })

	tf.print(j.ID, "printed after the page loaded\n\x1b[1;32mgreen and bold <img src=x onerror=\"window.pwned = 3\">\x1b[0m\n")
	b.waitFor(t, logText, func(v any) bool { s, _ := v.(string); return strings.Contains(s, "green and bold") })
	for expr, want := range map[string]any{
		`document.querySelectorAll("#log span.fg1").length`:         1.0,
		`document.querySelectorAll("#log span.fg2.b").length`:       1.0,
		`document.querySelectorAll("#log script, #log img").length`: 0.0,
		`typeof window.pwned`: "undefined",
		`document.getElementById("log").textContent.split("printed after the page loaded").length`: 2.0,
	} {
		if got := b.eval(t, expr); got != want {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}

	tf.finish(j.ID, scheduler.Outcome{})
	b.waitFor(t, `document.getElementById("job-state").textContent`, func(v any) bool { return v == "succeeded" })
	if got := b.eval(t, logText).(string); !strings.Contains(got, "finished: succeeded") {
		t.Errorf("log after the end lacks the coordinator's last note:\n%s", got)
	}
	if v := b.violations(); len(v) > 0 {
		t.Errorf("the job page broke its Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		b.screenshot(t, filepath.Join(dir, "job.png"))
		for _, page := range []string{"overview:/", "workers:/workers"} {
			name, path, _ := strings.Cut(page, ":")
			b.call(t, "Page.navigate", map[string]any{"url": srv.URL + path})
			b.waitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
			b.screenshot(t, filepath.Join(dir, name+".png"))
		}
	}

	b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/csp-probe"})
	deadline := time.Now().Add(20 * time.Second)
	for len(b.violations()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a page with an inline style was not reported as breaking the CSP: the check above proves nothing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is a headless chromium and a DevTools connection to its page.
type browser struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	next    int
	replies map[int]chan cdpMessage
	logs    []string // console errors, CSP reports and exceptions
}

type cdpMessage struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir="+dir,
		"--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	// Chromium writes its DevTools port to the profile once it listens.
	var port string
	deadline := time.Now().Add(60 * time.Second)
	for port == "" {
		select {
		case <-exited:
			t.Fatalf("chromium exited before it listened:\n%s", stderr.String())
		default:
		}
		if b, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort")); err == nil && strings.Contains(string(b), "\n") {
			port = strings.SplitN(string(b), "\n", 2)[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("chromium did not open its DevTools port within 60s:\n%s", stderr.String())
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("chromium's target list: %v", err)
	}
	var wsURL string
	for _, tg := range targets {
		if tg.Type == "page" {
			wsURL = tg.WebSocketDebuggerURL
		}
	}
	if wsURL == "" {
		t.Fatalf("chromium has no page target: %+v", targets)
	}
	ws, err := websocket.Dial(wsURL, "", "http://127.0.0.1")
	if err != nil {
		t.Fatalf("connect to chromium's page: %v", err)
	}
	ws.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { ws.Close() })
	b := &browser{ws: ws, replies: map[int]chan cdpMessage{}}
	go b.read()
	return b
}

func (b *browser) read() {
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(b.ws, &m); err != nil {
			b.mu.Lock()
			for id, ch := range b.replies {
				close(ch)
				delete(b.replies, id)
			}
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.replies[m.ID]; ch != nil {
				ch <- m
				delete(b.replies, m.ID)
			}
		} else if s := problem(m); s != "" {
			b.logs = append(b.logs, s)
		}
		b.mu.Unlock()
	}
}

// problem says what is wrong in an event: a console or log error (CSP
// violations are reported as such) or an uncaught exception.
func problem(m cdpMessage) string {
	switch m.Method {
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Source, Text, URL string }
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Entry.Level == "error" || strings.Contains(p.Entry.Text, "Content Security Policy") {
			return p.Entry.Source + ": " + p.Entry.Text + " " + p.Entry.URL
		}
	case "Runtime.consoleAPICalled":
		var p struct{ Type string }
		_ = json.Unmarshal(m.Params, &p)
		if p.Type == "error" {
			return "console error: " + string(m.Params)
		}
	case "Runtime.exceptionThrown":
		return "exception: " + string(m.Params)
	}
	return ""
}

func (b *browser) violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logs...)
}

func (b *browser) call(t *testing.T, method string, params any) json.RawMessage {
	t.Helper()
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.replies[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if err := websocket.JSON.Send(b.ws, msg); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the connection to chromium closed", method)
		}
		if m.Error != nil {
			t.Fatalf("%s: %s", method, m.Error.Message)
		}
		return m.Result
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer from chromium within 30s", method)
	}
	return nil
}

// screenshot saves the page as a PNG image, 1200 pixels wide.
func (b *browser) screenshot(t *testing.T, file string) {
	t.Helper()
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false})
	res := b.call(t, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
	var r struct{ Data []byte }
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, r.Data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression in the page and returns its value.
func (b *browser) eval(t *testing.T, expr string) any {
	t.Helper()
	res := b.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	var r struct {
		Result           struct{ Value any }
		ExceptionDetails json.RawMessage
	}
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		return "exception: " + string(r.ExceptionDetails)
	}
	return r.Result.Value
}

// waitFor evaluates expr until ok accepts its value, for up to 20s.
func (b *browser) waitFor(t *testing.T, expr string, ok func(any) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := b.eval(t, expr)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20s for %s; it is %v", expr, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A queued job is cancelled from its page in a real browser: the form
// posts from the page's own origin, the fleet cancels the job, and the
// page it leads back to says so. With KILN_WEB_SCREENSHOTS set, the job
// list and the release pages are saved too.
func TestBrowserCancelsJob(t *testing.T) {
	bin := testenv.Tool(t, "chromium")
	rf := newReleaseFleet(t, "mos-9.0")
	built := rf.build("mos-9.0", "hello", 1)
	queued := rf.submit(pkgSpec("mos-9.0", "world", "cli", 2))
	srv := serve(t, rf, Config{Actions: LoopbackActions, Releases: rf.rel, ReleaseNames: []string{"mos-9.0"}})

	b := startBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.call(t, m, nil)
	}
	b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + queued.ID})
	state := `document.getElementById("job-state") && document.getElementById("job-state").textContent`
	b.waitFor(t, state, func(v any) bool { return v == "queued" })
	// Clicked after the evaluation returns: the click leaves the page.
	b.eval(t, `setTimeout(() => document.querySelector('form[action$="/cancel"] button').click(), 0), true`)
	b.waitFor(t, state, func(v any) bool { return v == "canceled" })
	if j, _, err := rf.Get(context.Background(), queued.ID); err != nil || j.State != job.Canceled {
		t.Fatalf("after the cancel form: %v %v, want canceled", j, err)
	}
	if v := b.violations(); len(v) > 0 {
		t.Errorf("the job page broke its Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		for _, page := range []string{"jobs:/jobs?release=mos-9.0", "releases:/releases", "release:/releases/mos-9.0", "build:/jobs/" + built.ID} {
			name, path, _ := strings.Cut(page, ":")
			b.call(t, "Page.navigate", map[string]any{"url": srv.URL + path})
			b.waitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
			b.screenshot(t, filepath.Join(dir, name+".png"))
		}
	}
}

// In a real browser, the overview shows why a queued job waits, a
// finished build's page shows its record, and its artifact downloads with
// the sha256 the page shows. With KILN_WEB_SCREENSHOTS set, the Gerrit
// events page is saved too.
func TestBrowserWaitingReasonAndArtifactDownload(t *testing.T) {
	bin := testenv.Tool(t, "chromium")
	rf := newReleaseFleet(t, "mos-9.0")
	built := rf.build("mos-9.0", "hello", 1)
	waiting := rf.submit(job.Spec{Kind: job.Command, Command: []string{"make", "waiting-job"}, Labels: map[string]string{"target": "centos7"}})
	_, reason, err := rf.Get(context.Background(), waiting.ID)
	if err != nil || reason == "" {
		t.Fatalf("waiting reason %q %v", reason, err)
	}
	events := fakeEvents{{ID: 1, Server: "gerrit", Type: "patchset-created", Project: "team/hello", Branch: "main", Change: 7, PatchSet: 2,
		Action: "built", Reason: "review build queued", JobIDs: []string{built.ID}, ReceivedAt: time.Now()}}
	srv := serve(t, rf, Config{Events: events, Releases: rf.rel, ReleaseNames: []string{"mos-9.0"}})

	b := startBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.call(t, m, nil)
	}
	b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.waitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
	row := fmt.Sprintf(`Array.from(document.querySelectorAll("tr")).filter(r => r.querySelector('a[href="/jobs/%s"]')).map(r => r.querySelector("td.waiting").textContent).join("|")`, waiting.ID)
	if got := b.eval(t, row); got != reason {
		t.Errorf("overview's row of the waiting job says %q, want %q", got, reason)
	}

	dir := t.TempDir()
	b.call(t, "Browser.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": dir})
	b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + built.ID})
	b.waitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
	text, _ := b.eval(t, `document.body.innerText`).(string)
	for _, want := range []string{"sha256:c0ffee", "libc6", built.Record.Sources[0].Commit} {
		if !strings.Contains(text, want) {
			t.Errorf("the build's page lacks %q:\n%s", want, text)
		}
	}
	name := "hello_1.0-1_amd64.deb"
	shown, _ := b.eval(t, fmt.Sprintf(`Array.from(document.querySelectorAll("tr")).filter(r => r.querySelector("a[download]") && r.querySelector("a").textContent == %q).map(r => r.querySelector("code.sum").textContent).join("|")`, name)).(string)
	b.eval(t, fmt.Sprintf(`setTimeout(() => Array.from(document.querySelectorAll("a[download]")).find(a => a.textContent == %q).click(), 0), true`, name))
	var got []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			if _, err := os.Stat(filepath.Join(dir, name+".crdownload")); os.IsNotExist(err) {
				got = data
				break
			}
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(dir)
			t.Fatalf("the browser did not download %s within 30s; the folder holds %v", name, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sum := sha256.Sum256(got)
	if hex.EncodeToString(sum[:]) != shown || shown != built.Artifacts[0].SHA256 {
		t.Errorf("downloaded %s has sha256 %x; the page shows %q; the job recorded %s", name, sum, shown, built.Artifacts[0].SHA256)
	}
	if v := b.violations(); len(v) > 0 {
		t.Errorf("the pages broke their Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		b.call(t, "Page.navigate", map[string]any{"url": srv.URL + "/events"})
		b.waitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
		b.screenshot(t, filepath.Join(dir, "events.png"))
	}
}

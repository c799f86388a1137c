package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/web/webtest"
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

	b := webtest.StartBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.Call(t, m, nil)
	}
	b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + j.ID})
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("the page did not open its live log within 30s")
	}
	logText := `document.getElementById("log").textContent`
	b.WaitFor(t, logText, func(v any) bool { s, _ := v.(string); return strings.Contains(s, "before the page") })

	tf.print(j.ID, "printed after the page loaded\n\x1b[1;32mgreen and bold <img src=x onerror=\"window.pwned = 3\">\x1b[0m\n")
	b.WaitFor(t, logText, func(v any) bool { s, _ := v.(string); return strings.Contains(s, "green and bold") })
	for expr, want := range map[string]any{
		`document.querySelectorAll("#log span.fg1").length`:         1.0,
		`document.querySelectorAll("#log span.fg2.b").length`:       1.0,
		`document.querySelectorAll("#log script, #log img").length`: 0.0,
		`typeof window.pwned`: "undefined",
		`document.getElementById("log").textContent.split("printed after the page loaded").length`: 2.0,
	} {
		if got := b.Eval(t, expr); got != want {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}

	tf.finish(j.ID, scheduler.Outcome{})
	b.WaitFor(t, `document.getElementById("job-state").textContent`, func(v any) bool { return v == "succeeded" })
	if got := b.Eval(t, logText).(string); !strings.Contains(got, "finished: succeeded") {
		t.Errorf("log after the end lacks the coordinator's last note:\n%s", got)
	}
	if v := b.Violations(); len(v) > 0 {
		t.Errorf("the job page broke its Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		b.Screenshot(t, filepath.Join(dir, "job.png"))
		for _, page := range []string{"overview:/", "workers:/workers"} {
			name, path, _ := strings.Cut(page, ":")
			b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + path})
			b.WaitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
			b.Screenshot(t, filepath.Join(dir, name+".png"))
		}
	}

	b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/csp-probe"})
	deadline := time.Now().Add(20 * time.Second)
	for len(b.Violations()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a page with an inline style was not reported as breaking the CSP: the check above proves nothing")
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

	b := webtest.StartBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.Call(t, m, nil)
	}
	b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + queued.ID})
	state := `document.getElementById("job-state") && document.getElementById("job-state").textContent`
	b.WaitFor(t, state, func(v any) bool { return v == "queued" })
	// Clicked after the evaluation returns: the click leaves the page.
	b.Eval(t, `setTimeout(() => document.querySelector('form[action$="/cancel"] button').click(), 0), true`)
	b.WaitFor(t, state, func(v any) bool { return v == "canceled" })
	if j, _, err := rf.Get(context.Background(), queued.ID); err != nil || j.State != job.Canceled {
		t.Fatalf("after the cancel form: %v %v, want canceled", j, err)
	}
	if v := b.Violations(); len(v) > 0 {
		t.Errorf("the job page broke its Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		for _, page := range []string{"jobs:/jobs?release=mos-9.0", "releases:/releases", "release:/releases/mos-9.0", "build:/jobs/" + built.ID} {
			name, path, _ := strings.Cut(page, ":")
			b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + path})
			b.WaitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
			b.Screenshot(t, filepath.Join(dir, name+".png"))
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

	b := webtest.StartBrowser(t, bin)
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.Call(t, m, nil)
	}
	b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/"})
	b.WaitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
	row := fmt.Sprintf(`Array.from(document.querySelectorAll("tr")).filter(r => r.querySelector('a[href="/jobs/%s"]')).map(r => r.querySelector("td.waiting").textContent).join("|")`, waiting.ID)
	if got := b.Eval(t, row); got != reason {
		t.Errorf("overview's row of the waiting job says %q, want %q", got, reason)
	}

	dir := t.TempDir()
	b.Call(t, "Browser.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": dir})
	b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/jobs/" + built.ID})
	b.WaitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
	text, _ := b.Eval(t, `document.body.innerText`).(string)
	for _, want := range []string{"sha256:c0ffee", "libc6", built.Record.Sources[0].Commit} {
		if !strings.Contains(text, want) {
			t.Errorf("the build's page lacks %q:\n%s", want, text)
		}
	}
	name := "hello_1.0-1_amd64.deb"
	shown, _ := b.Eval(t, fmt.Sprintf(`Array.from(document.querySelectorAll("tr")).filter(r => r.querySelector("a[download]") && r.querySelector("a").textContent == %q).map(r => r.querySelector("code.sum").textContent).join("|")`, name)).(string)
	b.Eval(t, fmt.Sprintf(`setTimeout(() => Array.from(document.querySelectorAll("a[download]")).find(a => a.textContent == %q).click(), 0), true`, name))
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
	if v := b.Violations(); len(v) > 0 {
		t.Errorf("the pages broke their Content-Security-Policy or threw: %q", v)
	}
	if dir := os.Getenv("KILN_WEB_SCREENSHOTS"); dir != "" {
		b.Call(t, "Page.navigate", map[string]any{"url": srv.URL + "/events"})
		b.WaitFor(t, `document.readyState`, func(v any) bool { return v == "complete" })
		b.Screenshot(t, filepath.Join(dir, "events.png"))
	}
}

package web

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
)

// pkgSpec is a package build that no worker of newTestFleet takes: it
// stays queued. n makes its sources, and so its build, distinct.
func pkgSpec(release, pkg, origin string, n int) job.Spec {
	return job.Spec{Kind: job.PackageBuild, Origin: origin, Build: &job.Build{Release: release, Target: "bookworm", Package: pkg,
		Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: fmt.Sprintf("%040x", n), Role: "combined"}}}}
}

var jobLinkRE = regexp.MustCompile(`<td><a href="/jobs/([^"/]+)"><code>`)

// listed returns the jobs a job list links, in order, and its Older link.
func listed(t *testing.T, body string) (ids []string, older string) {
	t.Helper()
	for _, m := range jobLinkRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	if m := regexp.MustCompile(`<a href="([^"]*)" rel="next">Older</a>`).FindStringSubmatch(body); m != nil {
		older = html.UnescapeString(m[1])
	}
	return ids, older
}

// walk follows a job list's Older links from path to the last page and
// returns every job listed, in order.
func walk(t *testing.T, base, path string) []string {
	t.Helper()
	var all []string
	for pages := 0; path != ""; pages++ {
		if pages > 100 {
			t.Fatalf("paging from %s does not end", path)
		}
		resp, body := get(t, base+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s\n%s", path, resp.Status, body)
		}
		ids, older := listed(t, body)
		if len(ids) > 3 {
			t.Fatalf("%s: %d jobs on a page of 3", path, len(ids))
		}
		all = append(all, ids...)
		path = older
	}
	return all
}

// The job list filters by state, release, package, origin and change in
// the store's query, and its Older links page through every match exactly
// once, keeping the filters.
func TestJobListFiltersAndPages(t *testing.T) {
	t.Parallel()
	tf := newTestFleet(t)
	type want struct {
		id                   string
		release, pkg, origin string
		running              bool
	}
	var jobs []want
	add := func(release, pkg, origin string) {
		j := tf.submit(pkgSpec(release, pkg, origin, len(jobs)))
		jobs = append(jobs, want{id: j.ID, release: release, pkg: pkg, origin: origin})
	}
	for i := 0; i < 4; i++ {
		add("r1", "hello", fmt.Sprintf("gerrit g: review build of change 12 patch set %d (team/hello main)", i+1))
		add("r2", "hello", "cli")
		add("r1", "world", "gerrit g review: change 123 patch set 1 (team/world main)")
	}
	run := tf.start("make", "all")
	jobs = append(jobs, want{id: run.ID, origin: "", running: true})
	srv := serve(t, tf, Config{PageSize: 3})

	newestFirst := func(keep func(want) bool) []string {
		var out []string
		for i := len(jobs) - 1; i >= 0; i-- {
			if keep(jobs[i]) {
				out = append(out, jobs[i].id)
			}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		keep  func(want) bool
	}{
		{"", func(want) bool { return true }},
		{"package=hello", func(w want) bool { return w.pkg == "hello" }},
		{"release=r1", func(w want) bool { return w.release == "r1" }},
		{"release=r1&package=hello", func(w want) bool { return w.release == "r1" && w.pkg == "hello" }},
		{"state=running", func(w want) bool { return w.running }},
		{"state=queued&release=r2", func(w want) bool { return w.release == "r2" }},
		{"origin=cli", func(w want) bool { return w.origin == "cli" }},
		{"change=12", func(w want) bool { return strings.Contains(w.origin, "change 12 ") }},
		{"change=123", func(w want) bool { return strings.Contains(w.origin, "change 123 ") }},
		{"change=12&origin=patch+set+2", func(w want) bool { return strings.Contains(w.origin, "change 12 patch set 2 ") }},
		{"package=nothing", func(want) bool { return false }},
	} {
		path := "/jobs"
		if tc.query != "" {
			path += "?" + tc.query
		}
		got, exp := walk(t, srv.URL, path), newestFirst(tc.keep)
		if strings.Join(got, " ") != strings.Join(exp, " ") {
			t.Errorf("%s: listed %v, want %v", path, got, exp)
		}
	}

	// A page past the first keeps the filters in its links and the form.
	_, body := get(t, srv.URL+"/jobs?package=hello&release=r1")
	_, older := listed(t, body)
	q, err := url.ParseQuery(strings.TrimPrefix(older, "/jobs?"))
	if err != nil || q.Get("package") != "hello" || q.Get("release") != "r1" || q.Get("page") == "" {
		t.Fatalf("Older link %q lacks the filters or the page", older)
	}
	_, body = get(t, srv.URL+older)
	for _, want := range []string{`<a href="/jobs?package=hello&amp;release=r1" rel="first">Newest</a>`, `name="package" value="hello"`, `name="release" value="r1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("second page lacks %q:\n%s", want, body)
		}
	}

	// A review build's page links the list of its change's builds.
	if _, body := get(t, srv.URL+"/jobs/"+jobs[0].id); !strings.Contains(body, `<a href="/jobs?change=12">change 12</a>, patch set 1`) {
		t.Errorf("review build's page lacks the link to its change's builds:\n%s", body)
	}

	// The overview's old state links go on to the list.
	_, body = get(t, srv.URL+"/?state=running")
	if ids, _ := listed(t, body); strings.Join(ids, " ") != run.ID {
		t.Errorf("/?state=running lists %v, want %s", ids, run.ID)
	}

	for _, bad := range []string{"state=bogus", "change=abc", "change=-1", "page=0", "page=x"} {
		resp, body := get(t, srv.URL+"/jobs?"+bad)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", bad, resp.Status)
		}
		if !strings.Contains(body, "Bad Request") {
			t.Errorf("%s: error page:\n%s", bad, body)
		}
	}
}

// releaseFleet is a test fleet with a configured release and a worker that
// builds its packages.
type releaseFleet struct {
	*testFleet
	rel *fleet.Releases
}

func newReleaseFleet(t *testing.T, releases ...string) *releaseFleet {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := map[string]fleet.Release{}
	for _, r := range releases {
		cfg[r] = fleet.Release{DebSuffix: "+{revision}", Targets: map[string]string{"bookworm": "deb"}}
	}
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Hour, Releases: cfg}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := f.Register(ctx, "w1", map[string]string{"target": "bookworm"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &releaseFleet{testFleet: &testFleet{Fleet: f, t: t, sess: sess}, rel: fleet.NewReleases(f)}
}

// build builds a package of a release to success, with its binary and a
// base package it used, and published.
func (rf *releaseFleet) build(release, pkg string, n int) *job.Job {
	rf.t.Helper()
	spec := pkgSpec(release, pkg, "cli", n)
	spec.Build.Publish = true
	j := rf.submit(spec)
	got, err := rf.Pull(context.Background(), rf.sess, 0)
	if err != nil || got == nil || got.ID != j.ID {
		rf.t.Fatalf("pull: %v %v, want job %s", got, err, j.ID)
	}
	bin := rf.upload(j.ID, pkg+"_1.0-1_amd64.deb", []byte("binary of "+pkg))
	base := rf.upload(j.ID, "base/libc6_2.36-9_amd64.deb", []byte("libc6"))
	rf.finish(j.ID, scheduler.Outcome{Artifacts: []job.Artifact{bin, base}, Record: &job.Record{
		Sources: got.Spec.Build.Sources, ChrootDigest: "sha256:c0ffee", Version: "1.0-1",
		Artifacts: []job.Artifact{bin, base}, Installed: []job.Package{{Name: "libc6", Version: "2.36-9", Architecture: "amd64"}}}})
	// What the publisher records once the repository has the package.
	if err := rf.SetPublish(context.Background(), j.ID, "published to "+release); err != nil {
		rf.t.Fatal(err)
	}
	done, _, err := rf.Get(context.Background(), j.ID)
	if err != nil || done.State != job.Succeeded {
		rf.t.Fatalf("build of %s: %v %v", pkg, done, err)
	}
	return done
}

// The release pages show the seal and since when, each package's newest
// build with its revision, publish state and last verification, and the
// base size; names and free text are shown as text, and names that need
// escaping in a URL still lead to their page.
func TestReleasePages(t *testing.T) {
	t.Parallel()
	const hostile = `<script>alert(1)</script>`
	// Release and package names are label-like (letters, digits, - _ . / :);
	// these are the ones that could break a path or pass for a scheme.
	rels := []string{"mos-9.0", "javascript:alert", "team/../x"}
	rf := newReleaseFleet(t, rels...)
	ctx := context.Background()
	built := map[string]*job.Job{}
	for i, r := range rels {
		built[r] = rf.build(r, "javascript:pkg", i)
		rf.build(r, "world", 10+i)
	}
	if _, err := rf.rel.Seal(ctx, "mos-9.0", true, hostile); err != nil {
		t.Fatal(err)
	}
	finished := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if err := rf.Store().AddVerification(ctx, &store.Verification{Release: "mos-9.0", RequestedBy: hostile, CreatedAt: finished,
		Items: []store.VerifyItem{{Package: "javascript:pkg", Target: "bookworm", JobID: built["mos-9.0"].ID, Version: "1.0-1",
			RebuildJobID: "77", Result: store.VerifyDifferent, Differing: []string{`x"><img src=x onerror=alert(2)>.deb`},
			Detail: hostile, FinishedAt: finished}}}); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, rf, Config{Releases: rf.rel, ReleaseNames: rels})

	resp, body := get(t, srv.URL+"/releases")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/releases: %s\n%s", resp.Status, body)
	}
	hrefs := map[string]string{"mos-9.0": "/releases/mos-9.0", "javascript:alert": "/releases/javascript:alert", "team/../x": "/releases/team%2F..%2Fx"}
	for r, href := range hrefs {
		if !strings.Contains(body, `<a href="`+href+`">`+html.EscapeString(r)+`</a>`) {
			t.Errorf("/releases lacks the link %s to %s:\n%s", href, r, body)
		}
	}
	if !strings.Contains(body, "sealed since 2") || !strings.Contains(body, "by &lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("/releases lacks the seal with its time and who, escaped:\n%s", body)
	}
	checkInert(t, "/releases", body)

	for r, href := range hrefs {
		resp, body := get(t, srv.URL+href)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s\n%s", href, resp.Status, body)
			continue
		}
		checkInert(t, href, body)
		for _, want := range []string{
			"<h1>Release " + html.EscapeString(r) + "</h1>",
			`">javascript:pkg</a></td>`,
			`href="/jobs?package=javascript%3Apkg&amp;release=` + url.QueryEscape(r) + `"`,
			`href="/jobs/` + built[r].ID + `"`,
			"1 packages, 5 B", // one distinct base package of 5 bytes
			"<td>" + fmt.Sprint(built[r].Spec.Build.Revision) + "</td>",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q:\n%s", href, want, body)
			}
		}
	}
	_, body = get(t, srv.URL+"/releases/mos-9.0")
	for _, want := range []string{
		`<span class="state s-failed">different</span> 2026-11-30 08:00:00Z by <a href="/jobs/77">`,
		"&lt;script&gt;alert(1)&lt;/script&gt;",
		"x&#34;&gt;&lt;img src=x onerror=alert(2)&gt;.deb",
		"never verified", // world
		"sealed since",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/releases/mos-9.0 lacks %q:\n%s", want, body)
		}
	}
	_, body = get(t, srv.URL+"/releases/javascript:alert")
	if !strings.Contains(body, "<dd>open</dd>") || strings.Contains(body, "different") {
		t.Errorf("an open release without verifications:\n%s", body)
	}
	if resp, _ := get(t, srv.URL+"/releases/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown release: %s, want 404", resp.Status)
	}
	off := serve(t, rf, Config{})
	if resp, body := get(t, off.URL+"/releases"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "show no releases") {
		t.Errorf("releases off: %s\n%s", resp.Status, body)
	}
	if resp, _ := get(t, off.URL+"/releases/mos-9.0"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("release page with releases off: %s, want 404", resp.Status)
	}
}

// checkInert fails when a page holds markup, script or a javascript: link
// that did not come from its templates.
func checkInert(t *testing.T, page, body string) {
	t.Helper()
	for _, bad := range []string{"<script", "<img", `href="javascript:`, `action="javascript:`} {
		if strings.Contains(body, bad) {
			t.Errorf("%s: page holds %q:\n%s", page, bad, body)
		}
	}
}

// postForm posts a form as a browser would, with the given headers, and
// returns the status and where it redirects. A "token" pair is the form's
// token field rather than a header.
func postForm(t *testing.T, target string, header ...string) (int, string) {
	t.Helper()
	return postFormWith(t, http.DefaultClient, target, header...)
}

func postFormWith(t *testing.T, c *http.Client, target string, header ...string) (int, string) {
	t.Helper()
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	form := url.Values{}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "token" {
			form.Set("token", header[i+1])
		}
	}
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		switch header[i] {
		case "token":
		case "Host":
			req.Host = header[i+1]
		default:
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// A job page's cancel, rebuild and rebuild-to-verify forms are offered
// where they apply, work only where actions are on and only from the
// pages' own origin on a loopback host, and do what the API's calls do.
func TestJobActions(t *testing.T) {
	t.Parallel()
	rf := newReleaseFleet(t, "mos-9.0")
	ctx := context.Background()
	pub := &fakePublish{}
	srv := serve(t, rf, Config{Actions: LoopbackActions, Publish: pub})
	off := serve(t, rf, Config{})

	built := rf.build("mos-9.0", "hello", 1)
	queued := rf.submit(pkgSpec("mos-9.0", "world", "cli", 2))
	state := func(id string) job.State {
		j, _, err := rf.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j.State
	}

	_, body := get(t, srv.URL+"/jobs/"+queued.ID)
	if !strings.Contains(body, `action="/jobs/`+queued.ID+`/cancel"`) || strings.Contains(body, "/rebuild\"") {
		t.Errorf("queued job's page: want a cancel form and no rebuild:\n%s", body)
	}
	tok := formToken(t, body)
	_, body = get(t, srv.URL+"/jobs/"+built.ID)
	if strings.Contains(body, "/cancel\"") || !strings.Contains(body, `action="/jobs/`+built.ID+`/rebuild"`) || !strings.Contains(body, `action="/jobs/`+built.ID+`/verify"`) {
		t.Errorf("built job's page: want rebuild and verify forms and no cancel:\n%s", body)
	}
	_, body = get(t, off.URL+"/jobs/"+queued.ID)
	if strings.Contains(body, "<form method=\"post\"") {
		t.Errorf("job page with actions off offers a form:\n%s", body)
	}

	for _, tc := range []struct {
		name   string
		base   string
		header []string
	}{
		{"no origin", srv.URL, []string{"token", tok}},
		{"other site", srv.URL, []string{"token", tok, "Origin", "https://evil.example"}},
		{"other site by referer", srv.URL, []string{"token", tok, "Referer", "https://evil.example/jobs/" + queued.ID}},
		{"cross-site fetch", srv.URL, []string{"token", tok, "Origin", srv.URL, "Sec-Fetch-Site", "cross-site"}},
		{"rebound name", srv.URL, []string{"token", tok, "Host", "evil.example", "Origin", "http://evil.example"}},
		{"no token", srv.URL, []string{"Origin", srv.URL}},
		{"wrong token", srv.URL, []string{"token", "AAAA" + tok[4:], "Origin", srv.URL}},
		{"actions off", off.URL, []string{"token", tok, "Origin", off.URL}},
	} {
		for _, a := range []string{"cancel", "rebuild", "verify"} {
			id := queued.ID
			if a != "cancel" {
				id = built.ID
			}
			if code, _ := postForm(t, tc.base+"/jobs/"+id+"/"+a, tc.header...); code != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", tc.name, a, code)
			}
		}
	}
	if st := state(queued.ID); st != job.Queued {
		t.Fatalf("refused cancels left the job %s", st)
	}
	if jobs, _, _ := rf.Store().Query(ctx, store.Filter{}); len(jobs) != 2 {
		t.Fatalf("refused rebuilds made jobs: %d jobs", len(jobs))
	}
	if resp, _ := get(t, srv.URL+"/jobs/"+queued.ID+"/cancel"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET cancel: %s", resp.Status)
	}

	code, loc := postForm(t, srv.URL+"/jobs/"+queued.ID+"/cancel", "token", tok, "Origin", srv.URL, "Sec-Fetch-Site", "same-origin")
	if code != http.StatusSeeOther || loc != "/jobs/"+queued.ID || state(queued.ID) != job.Canceled {
		t.Fatalf("cancel: %d to %q, job %s", code, loc, state(queued.ID))
	}
	code, loc = postForm(t, srv.URL+"/jobs/"+built.ID+"/rebuild", "token", tok, "Referer", srv.URL+"/jobs/"+built.ID)
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/jobs/") {
		t.Fatalf("rebuild: %d to %q", code, loc)
	}
	re, _, err := rf.Get(ctx, strings.TrimPrefix(loc, "/jobs/"))
	if err != nil || re.RebuildOf != built.ID || re.Verify {
		t.Fatalf("rebuild made %+v %v", re, err)
	}
	code, loc = postForm(t, srv.URL+"/jobs/"+built.ID+"/verify", "token", tok, "Origin", srv.URL)
	if code != http.StatusSeeOther {
		t.Fatalf("verify: %d", code)
	}
	ve, _, err := rf.Get(ctx, strings.TrimPrefix(loc, "/jobs/"))
	if err != nil || ve.RebuildOf != built.ID || !ve.Verify || len(ve.Spec.Build.Pinned) != 1 {
		t.Fatalf("verify made %+v %v", ve, err)
	}
	// The fleet's refusals reach the page with their reason.
	if code, _ := postForm(t, srv.URL+"/jobs/"+queued.ID+"/verify", "token", tok, "Origin", srv.URL); code != http.StatusBadRequest {
		t.Errorf("verify of a cancelled build: %d, want 400", code)
	}
	if code, _ := postForm(t, srv.URL+"/jobs/nothing/cancel", "token", tok, "Origin", srv.URL); code != http.StatusNotFound {
		t.Errorf("cancel of an unknown job: %d, want 404", code)
	}
	if code, _ := postForm(t, srv.URL+"/jobs/"+built.ID+"/explode", "token", tok, "Origin", srv.URL); code != http.StatusNotFound {
		t.Errorf("unknown action: %d, want 404", code)
	}

	// A build whose publish is pending is cancelled at the publisher, as
	// CancelJob does; a published one offers no cancel.
	if len(pub.cancelled) != 0 {
		t.Fatalf("publishes cancelled before any was pending: %v", pub.cancelled)
	}
	pending := built
	if _, body := get(t, srv.URL+"/jobs/"+pending.ID); strings.Contains(body, "/cancel\"") {
		t.Errorf("published build offers a cancel:\n%s", body)
	}
	if err := rf.SetPublish(ctx, pending.ID, "pending"); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, srv.URL+"/jobs/"+pending.ID); !strings.Contains(body, `action="/jobs/`+pending.ID+`/cancel"><input type="hidden" name="token" value="`+tok+`"><button type="submit">Cancel publish</button>`) {
		t.Errorf("page of a build with a pending publish lacks its cancel form:\n%s", body)
	}
	if code, _ := postForm(t, srv.URL+"/jobs/"+pending.ID+"/cancel", "token", tok, "Origin", srv.URL); code != http.StatusSeeOther ||
		strings.Join(pub.cancelled, " ") != pending.ID+": "+cancelReason {
		t.Errorf("cancel of a pending publish: %d, publisher told %v", code, pub.cancelled)
	}
}

// tokenRE finds the token of a page's action forms.
var tokenRE = regexp.MustCompile(`<input type="hidden" name="token" value="([^"]+)">`)

// formToken returns the token of the action forms on a page, failing
// when the page has none.
func formToken(t *testing.T, page string) string {
	t.Helper()
	m := tokenRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no action form token:\n%s", page)
	}
	return m[1]
}

type fakePublish struct{ cancelled []string }

func (p *fakePublish) Cancel(_ context.Context, jobID, reason string) error {
	p.cancelled = append(p.cancelled, jobID+": "+reason)
	return nil
}

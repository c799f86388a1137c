// Package web serves the coordinator's web pages on its HTTP listener: the
// overview of queue and fleet, a page per job with its build record,
// artifacts and a live log, the workers and the Gerrit events. Pages are
// rendered on the server by html/template from the same fleet queries the
// gRPC API uses; the only script is the live log's, served from /static/
// under a Content-Security-Policy that allows no inline script or style.
package web

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/label"
)

//go:embed templates/*.html static/*
var files embed.FS

// Fleet is what the pages read and change: the methods the gRPC API calls
// for the same views.
type Fleet interface {
	Get(ctx context.Context, id string) (*job.Job, string, error)
	List(ctx context.Context, states []job.State, limit int) ([]*job.Job, error)
	StreamLog(ctx context.Context, id string, offset int64, follow bool, send func([]byte) error) (*job.Job, error)
	OpenArtifact(ctx context.Context, jobID, name string) (*os.File, job.Artifact, error)
	Workers() []scheduler.WorkerInfo
	Drain(ctx context.Context, name string, on bool) (scheduler.WorkerInfo, error)
	Cancel(ctx context.Context, id, reason string) (*job.Job, error)
	Rebuild(ctx context.Context, id string, verify bool) (*job.Job, error)
	// Store pages and filters the job lists, as ListJobs does.
	Store() *store.Store
}

// Releases shows releases: what the ReleaseService's GetRelease calls.
type Releases interface {
	Show(ctx context.Context, release string) (*fleet.ReleaseInfo, error)
}

// Config configures the pages.
type Config struct {
	// Actions says who may cancel, rebuild, drain and undrain from the
	// pages: nobody (NoActions), whoever reaches a loopback listener
	// (LoopbackActions, development mode) or the holder of a client
	// certificate whose role may make the same gRPC call
	// (CertificateActions, production).
	Actions Actions
	// Events lists Gerrit events; nil when Gerrit intake is off.
	Events api.EventLister
	// Releases shows releases; nil leaves /releases out.
	Releases Releases
	// ReleaseNames are the releases in the coordinator's config, listed
	// on /releases.
	ReleaseNames []string
	// Publish stops a pending publish when a job is cancelled, as
	// CancelJob does; nil without a publisher.
	Publish api.PublishCanceler
	// PageSize is the number of jobs on a page of the job list; 0 means
	// defaultPageSize.
	PageSize int
	Logger   hclog.Logger
	// Now is the clock for elapsed times; time.Now when nil.
	Now func() time.Time
}

// Server serves the pages.
type Server struct {
	cfg   Config
	f     Fleet
	pages map[string]*template.Template
	quit  chan struct{}
	// key signs the forms' tokens (see token); a new one each start.
	key []byte
}

// Limits of the pages.
const (
	// inlineLog bounds the log a job page renders itself; the live log
	// goes on from there.
	inlineLog   = 512 << 10
	recentJobs  = 50
	recentScan  = 1000
	listedJobs  = 500
	listedEvent = 100
	// defaultPageSize is the jobs on a page of the job list.
	defaultPageSize = 100
	// releaseJobs is the newest jobs of a release its page lists.
	releaseJobs = 20
)

// New builds the server.
func New(cfg Config, f Fleet) *Server {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = defaultPageSize
	}
	s := &Server{cfg: cfg, f: f, pages: map[string]*template.Template{}, quit: make(chan struct{}), key: make([]byte, 32)}
	_, _ = rand.Read(s.key) // never fails (crypto/rand)
	funcs := template.FuncMap{
		"ts":     func(t time.Time) string { return formatTime(t) },
		"dur":    formatDuration,
		"since":  func(t time.Time) string { return formatDuration(cfg.Now().Sub(t)) },
		"short":  func(s string) string { return shorten(s, 12) },
		"size":   formatSize,
		"jobURL": jobURL,
		"title":  jobTitle,
		"releaseURL": func(name string) string {
			return "/releases/" + url.PathEscape(name)
		},
		"verifyClass": verifyClass,
		"jobsURL":     jobsURL,
	}
	for _, p := range []string{"overview", "jobs", "job", "workers", "events", "releases", "release", "error"} {
		s.pages[p] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+p+".html"))
	}
	return s
}

// Register adds the pages' routes to mux, beside what is there.
func (s *Server) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", secure(http.StripPrefix("/static/", http.FileServerFS(static))))
	mux.Handle("GET /{$}", secure(http.HandlerFunc(s.overview)))
	mux.Handle("GET /jobs", secure(http.HandlerFunc(s.jobList)))
	mux.Handle("GET /jobs/{id}", secure(http.HandlerFunc(s.jobPage)))
	mux.Handle("POST /jobs/{id}/{action}", secure(http.HandlerFunc(s.jobAction)))
	mux.Handle("GET /releases", secure(http.HandlerFunc(s.releases)))
	mux.Handle("GET /releases/{name}", secure(http.HandlerFunc(s.release)))
	mux.Handle("GET /jobs/{id}/log/events", secure(http.HandlerFunc(s.logEvents)))
	mux.Handle("GET /jobs/{id}/artifacts/{name...}", secure(http.HandlerFunc(s.artifact)))
	mux.Handle("GET /workers", secure(http.HandlerFunc(s.workers)))
	mux.Handle("POST /workers/{name}/{action}", secure(http.HandlerFunc(s.drain)))
	mux.Handle("GET /events", secure(http.HandlerFunc(s.events)))
}

// Run ends the live logs' streams when ctx ends, so that the HTTP server
// can shut down.
func (s *Server) Run(ctx context.Context) error {
	<-ctx.Done()
	close(s.quit)
	return nil
}

// csp allows the pages' own script, style and requests and nothing else:
// no inline script or style, no framing, forms posting only to the pages.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, page string, status int, data any) {
	var b strings.Builder
	if err := s.pages[page].Execute(&b, data); err != nil {
		s.cfg.Logger.Error("render page", "page", page, "path", r.URL.Path, "error", err)
		http.Error(w, "render page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(visibleControls(b.String())))
}

// visibleControls shows the control characters in a rendered page (a
// job's reason or origin from a worker or a Gerrit event may hold terminal
// escape sequences) as the Unicode pictures of them, ␛ for ESC, and C1
// controls as \u009b, so that they are seen as text and reach no terminal
// that shows the page's source. The templates hold no control characters
// but newline, tab and carriage return, which stay.
func visibleControls(page string) string {
	if !strings.ContainsFunc(page, isControl) {
		return page
	}
	var b strings.Builder
	for _, r := range page {
		switch {
		case !isControl(r):
			b.WriteRune(r)
		case r < 0x20:
			b.WriteRune(0x2400 + r)
		case r == 0x7f:
			b.WriteRune(0x2421)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t' && r != '\r') || (r >= 0x7f && r <= 0x9f)
}

type errorPage struct {
	Title   string
	Message string
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, fleet.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, fleet.ErrInvalid), errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, errForbidden):
		status = http.StatusForbidden
	}
	if status == http.StatusInternalServerError {
		s.cfg.Logger.Error("serve page", "path", r.URL.Path, "error", err)
	}
	s.render(w, r, "error", status, errorPage{Title: http.StatusText(status), Message: err.Error()})
}

var (
	errBadRequest = errors.New("bad request")
	errForbidden  = errors.New("forbidden")
)

// jobRow is a job in a list.
type jobRow struct {
	*job.Job
	Waiting string
}

type overviewPage struct {
	Title    string
	Filter   listFilter
	Queued   []jobRow
	Running  []jobRow
	Recent   []jobRow
	Capacity capacity
}

type capacity struct {
	Workers, Online, Draining, Lost, Offline int
	Slots, Busy                              int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.URL.RawQuery != "" {
		// The filters live on /jobs; old links to /?state=X still work.
		http.Redirect(w, r, "/jobs?"+r.URL.RawQuery, http.StatusSeeOther)
		return
	}
	p := overviewPage{Title: "Overview", Filter: listFilter{States: filterStates}}
	for _, q := range []struct {
		dst    *[]jobRow
		states []job.State
		limit  int
	}{
		{&p.Queued, []job.State{job.Queued}, listedJobs},
		{&p.Running, []job.State{job.Running}, listedJobs},
	} {
		jobs, err := s.f.List(ctx, q.states, q.limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		*q.dst = s.rows(ctx, jobs)
	}
	recent, err := s.recent(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Recent = s.rows(ctx, recent)
	p.Capacity = fleetCapacity(s.f.Workers())
	s.render(w, r, "overview", http.StatusOK, p)
}

// recent returns the newest finished jobs, up to recentJobs of them among
// the newest recentScan jobs. It reads the newest jobs in the store's
// order of sequence numbers, which its index serves at once, and keeps
// the finished ones: asking the store for the final states instead sorts
// every finished job there is (the state index does not hold the order),
// which takes seconds with 100,000 jobs.
func (s *Server) recent(ctx context.Context) ([]*job.Job, error) {
	var out []*job.Job
	f := store.Filter{Limit: recentJobs * 2}
	for seen := 0; len(out) < recentJobs && seen < recentScan; seen += f.Limit {
		jobs, next, err := s.f.Store().Query(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if j.State.Final() && len(out) < recentJobs {
				out = append(out, j)
			}
		}
		if next == 0 {
			break
		}
		f.Before = next
	}
	return out, nil
}

// rows adds each live job's state from the scheduler and each queued job's
// waiting reason, as ListJobs and GetJob give them.
func (s *Server) rows(ctx context.Context, jobs []*job.Job) []jobRow {
	out := make([]jobRow, 0, len(jobs))
	for _, j := range jobs {
		row := jobRow{Job: j}
		if !j.State.Final() {
			if cur, why, err := s.f.Get(ctx, j.ID); err == nil {
				row.Job, row.Waiting = cur, why
			}
		}
		out = append(out, row)
	}
	return out
}

func fleetCapacity(ws []scheduler.WorkerInfo) capacity {
	var c capacity
	for _, w := range ws {
		c.Workers++
		switch w.State {
		case scheduler.WorkerOnline:
			c.Online++
			c.Slots += w.Slots
		case scheduler.WorkerDraining:
			c.Draining++
		case scheduler.WorkerLost:
			c.Lost++
		default:
			c.Offline++
		}
		c.Busy += len(w.Running)
	}
	return c
}

type jobPage struct {
	Title     string
	Job       *job.Job
	Waiting   string
	Queued    time.Duration // from created to started (or until now)
	Ran       time.Duration // from started to finished (or until now)
	Artifacts []artifactRow
	Labels    string
	Review    *review
	Log       []Line
	LogOffset int64
	LogDone   bool
	LogMore   bool // the page shows only the start; the live log goes on
	// Actions are the action forms the page offers: those that apply to
	// the job and that the reader may use.
	Actions jobActions
	// Token is the forms' token against cross-site requests.
	Token string
}

type artifactRow struct {
	job.Artifact
	Href string
}

func (s *Server) jobPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	j, waiting, err := s.f.Get(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := jobPage{Title: "Job " + j.ID, Job: j, Waiting: waiting, Labels: label.String(j.Spec.Labels), Review: reviewOf(j.Spec.Origin)}
	p.Actions = s.actionsFor(r, j)
	if p.Actions != (jobActions{}) {
		p.Token = s.token(r)
	}
	now := s.cfg.Now()
	switch {
	case !j.StartedAt.IsZero():
		p.Queued = j.StartedAt.Sub(j.CreatedAt)
		end := j.FinishedAt
		if end.IsZero() {
			end = now
		}
		p.Ran = end.Sub(j.StartedAt)
	case !j.State.Final():
		p.Queued = now.Sub(j.CreatedAt)
	}
	for _, a := range j.Artifacts {
		p.Artifacts = append(p.Artifacts, artifactRow{Artifact: a, Href: artifactHref(j.ID, a.Name)})
	}
	p.Log, p.LogOffset, p.LogDone, p.LogMore, err = s.inlineLog(ctx, j)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "job", http.StatusOK, p)
}

// review is the Gerrit change a review build is for.
type review struct{ Change, PatchSet int64 }

// reviewRE matches the origin the Gerrit intake gives a review build
// ("review: change N patch set M (PROJECT BRANCH) from gerrit NAME"), and
// the wordings of earlier versions ("gerrit NAME: review build of change N
// patch set M ...", "gerrit NAME review: change N patch set M ..."), which
// jobs in the store may still have.
var reviewRE = regexp.MustCompile(`^(?:gerrit \S+ )?(?:review build of|review:) change (\d+) patch set (\d+) `)

func reviewOf(origin string) *review {
	m := reviewRE.FindStringSubmatch(origin)
	if m == nil {
		return nil
	}
	c, _ := strconv.ParseInt(m[1], 10, 64)
	ps, _ := strconv.ParseInt(m[2], 10, 64)
	return &review{c, ps}
}

func artifactHref(id, name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/jobs/" + url.PathEscape(id) + "/artifacts/" + strings.Join(parts, "/")
}

var errEnough = errors.New("enough log for the page")

// inlineLog reads the complete lines at the start of a job's log, up to
// inlineLog bytes, and says where the live log goes on from and whether
// there is nothing more to come.
func (s *Server) inlineLog(ctx context.Context, j *job.Job) (lines []Line, offset int64, done, more bool, err error) {
	var sp lineSplitter
	_, err = s.f.StreamLog(ctx, j.ID, 0, false, func(b []byte) error {
		ls, used := sp.add(b)
		lines, offset = append(lines, ls...), offset+used
		if offset >= inlineLog {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return lines, offset, false, true, nil
	}
	if err != nil {
		return nil, 0, false, false, err
	}
	if j.State.Final() {
		if l, n := sp.rest(); n > 0 {
			lines, offset = append(lines, l), offset+n
		}
		done = true
	}
	return lines, offset, done, false, nil
}

// logEvents streams a job's log as server-sent events. Each event carries
// complete lines, rendered, and its id is the log's byte offset after them:
// a browser that reconnects sends it back as Last-Event-ID and gets exactly
// the lines after it. The stream ends with an "end" event once the job is
// final and its log read to the end.
func (s *Server) logEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	offset, err := startOffset(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, _, err := s.f.Get(ctx, id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, fleet.ErrNotFound) {
			status = http.StatusNotFound
		}
		http.Error(w, err.Error(), status)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	var sp lineSplitter
	send := func(event string, lines []Line, extra map[string]any) error {
		msg := map[string]any{"lines": lines}
		for k, v := range extra {
			msg[k] = v
		}
		data, err := json.Marshal(msg)
		if err != nil {
			return err
		}
		var b strings.Builder
		if event != "" {
			b.WriteString("event: " + event + "\n")
		}
		fmt.Fprintf(&b, "id: %d\ndata: %s\n\n", offset, data)
		if _, err := w.Write([]byte(b.String())); err != nil {
			return err
		}
		return rc.Flush()
	}
	j, err := s.f.StreamLog(ctx, id, offset, true, func(b []byte) error {
		lines, used := sp.add(b)
		if len(lines) == 0 {
			return nil
		}
		offset += used
		return send("", lines, nil)
	})
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("stream job log", "job_id", id, "error", err)
		}
		return
	}
	var last []Line
	if l, n := sp.rest(); n > 0 {
		last, offset = []Line{l}, offset+n
	}
	_ = send("end", last, map[string]any{"state": j.State.String()})
}

// startOffset is where a log stream starts: the Last-Event-ID of a
// reconnecting browser, else the offset the page asked for, else 0.
func startOffset(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	from := "Last-Event-ID"
	if v == "" {
		v, from = r.URL.Query().Get("offset"), "offset"
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: give a byte offset in the log, 0 or more", from, v)
	}
	return n, nil
}

// artifact streams one of a job's recorded artifacts from the fleet's
// store, as a download: the name must be one the job recorded.
func (s *Server) artifact(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("name")
	fh, a, err := s.f.OpenArtifact(r.Context(), id, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer fh.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(a.Name)}))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("ETag", `"`+a.SHA256+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	var mod time.Time
	http.ServeContent(w, r, "", mod, fh)
}

type workersPage struct {
	Title    string
	Workers  []workerRow
	Capacity capacity
	// Actions is true where the reader may drain and undrain; Token is
	// then the forms' token.
	Actions bool
	Token   string
}

type workerRow struct {
	scheduler.WorkerInfo
	Labels  string
	Chroots []chroot
}

type chroot struct{ Target, Digest string }

// chrootLabel prefixes the labels a worker reports for its chroots.
const chrootLabel = "chroot/"

func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	ws := s.f.Workers()
	sort.Slice(ws, func(i, k int) bool { return ws[i].Name < ws[k].Name })
	p := workersPage{Title: "Workers", Capacity: fleetCapacity(ws), Actions: s.may(r, drainMethod) == nil}
	if p.Actions {
		p.Token = s.token(r)
	}
	for _, wi := range ws {
		row := workerRow{WorkerInfo: wi}
		plain := map[string]string{}
		for k, v := range wi.Labels {
			if t, ok := strings.CutPrefix(k, chrootLabel); ok {
				row.Chroots = append(row.Chroots, chroot{t, v})
			} else {
				plain[k] = v
			}
		}
		sort.Slice(row.Chroots, func(i, k int) bool { return row.Chroots[i].Target < row.Chroots[k].Target })
		row.Labels = label.String(plain)
		p.Workers = append(p.Workers, row)
	}
	s.render(w, r, "workers", http.StatusOK, p)
}

// drain drains or undrains a worker from the workers page's form.
func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if action != "drain" && action != "undrain" {
		s.fail(w, r, fmt.Errorf("%w: action %q: use drain or undrain", fleet.ErrNotFound, action))
		return
	}
	if err := s.checkAction(r, drainMethod); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.f.Drain(r.Context(), name, action == "drain"); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("worker drain changed from the web page", "worker", name, "action", action, "by", who(r))
	http.Redirect(w, r, "/workers", http.StatusSeeOther)
}

type eventsPage struct {
	Title  string
	Off    bool
	Events []api.Event
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	p := eventsPage{Title: "Gerrit events", Off: s.cfg.Events == nil}
	if !p.Off {
		evs, err := s.cfg.Events.ListEvents(r.Context(), listedEvent, true)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		p.Events = evs
	}
	s.render(w, r, "events", http.StatusOK, p)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// jobTitle names a job for people: the package build's package, release
// and target, or the command.
func jobTitle(j *job.Job) string {
	if b := j.Spec.Build; b != nil {
		return b.Package + " " + b.Release + "/" + b.Target
	}
	return shorten(strings.Join(j.Spec.Command, " "), 80)
}

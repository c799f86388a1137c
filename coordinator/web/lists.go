package web

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// filterStates are the states the job list filters on, in the order the
// form offers them.
var filterStates = []string{"queued", "running", "succeeded", "failed", "error", "canceled"}

// listFilter is the job list's search form: what was asked for, as text
// to put back in the form and the paging links.
type listFilter struct {
	States                                  []string
	State, Release, Package, Origin, Change string
}

// values is the filter as a query string's values, without the page.
func (lf listFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"state": lf.State, "release": lf.Release, "package": lf.Package, "origin": lf.Origin, "change": lf.Change} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// parseFilter reads the job list's query into the store's filter.
func parseFilter(q url.Values) (listFilter, store.Filter, error) {
	lf := listFilter{States: filterStates}
	var f store.Filter
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	lf.State, lf.Release, lf.Package, lf.Origin, lf.Change = get("state"), get("release"), get("package"), get("origin"), get("change")
	if lf.State != "" {
		st, err := job.ParseState(lf.State)
		if err != nil {
			return lf, f, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		f.States = []job.State{st}
	}
	f.Release, f.Package, f.Origin = lf.Release, lf.Package, lf.Origin
	if lf.Change != "" {
		n, err := strconv.ParseInt(lf.Change, 10, 64)
		if err != nil || n <= 0 {
			return lf, f, fmt.Errorf("%w: change %q: give a Gerrit change number", errBadRequest, lf.Change)
		}
		f.Change = n
	}
	if p := get("page"); p != "" {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n <= 0 {
			return lf, f, fmt.Errorf("%w: page %q: follow the list's \"Older\" link, or leave page out for the newest jobs", errBadRequest, p)
		}
		f.Before = n
	}
	return lf, f, nil
}

type jobsPage struct {
	Title  string
	Filter listFilter
	Jobs   []jobRow
	// Paged is true past the first page; First and Older link to the
	// newest page and the next one ("" on the last).
	Paged        bool
	First, Older string
}

// jobList is the searchable job list: one page of the jobs matching the
// filters, newest first, filtered and paged by the store's query as
// ListJobs is. A page's link to the next holds the sequence number the
// store gave, so a page costs the same however deep it is.
func (s *Server) jobList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lf, f, err := parseFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Limit = s.cfg.PageSize
	jobs, next, err := s.f.Store().Query(ctx, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := jobsPage{Title: "Jobs", Filter: lf, Jobs: s.rows(ctx, jobs), Paged: f.Before > 0}
	v := lf.values()
	p.First = "/jobs"
	if len(v) > 0 {
		p.First += "?" + v.Encode()
	}
	if next > 0 {
		v.Set("page", strconv.FormatInt(next, 10))
		p.Older = "/jobs?" + v.Encode()
	}
	s.render(w, r, "jobs", http.StatusOK, p)
}

type releasesPage struct {
	Title string
	Off   bool
	Rows  []*fleet.ReleaseInfo
}

// releases lists the configured releases with their seal and size.
func (s *Server) releases(w http.ResponseWriter, r *http.Request) {
	p := releasesPage{Title: "Releases", Off: s.cfg.Releases == nil}
	names := append([]string(nil), s.cfg.ReleaseNames...)
	sort.Strings(names)
	for _, n := range names {
		if p.Off {
			break
		}
		info, err := s.cfg.Releases.Show(r.Context(), n)
		if err != nil {
			s.fail(w, r, fmt.Errorf("release %s: %w", n, err))
			return
		}
		p.Rows = append(p.Rows, info)
	}
	s.render(w, r, "releases", http.StatusOK, p)
}

type releasePage struct {
	Title  string
	R      *fleet.ReleaseInfo
	Jobs   []jobRow
	AllURL string
}

// release shows what GetRelease shows of a release, and its newest jobs.
func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Releases == nil {
		s.fail(w, r, fmt.Errorf("%w: this coordinator's pages show no releases", fleet.ErrNotFound))
		return
	}
	name := r.PathValue("name")
	info, err := s.cfg.Releases.Show(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	jobs, _, err := s.f.Store().Query(r.Context(), store.Filter{Release: name, Limit: releaseJobs})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := releasePage{Title: "Release " + name, R: info, Jobs: s.rows(r.Context(), jobs), AllURL: jobsURL("release", name)}
	s.render(w, r, "release", http.StatusOK, p)
}

// verifyClass is the style of a verification result; the result is
// always written out as text too.
func verifyClass(result string) string {
	switch result {
	case store.VerifyIdentical:
		return "s-succeeded"
	case store.VerifyDifferent, store.VerifyFailed, store.VerifyError:
		return "s-failed"
	}
	return "s-queued"
}

// jobsURL links the job list filtered by the key and value pairs given.
func jobsURL(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "/jobs?" + v.Encode()
}

package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// Releases seals releases, shows what they hold and verifies them. It
// submits a verification's rebuilds itself, each when the builds it
// depends on have their results, and records the results as the rebuilds
// end, so a client that goes away loses nothing.
type Releases struct {
	f  *Fleet
	mu sync.Mutex // serialises the advancing of verifications
}

// NewReleases makes the release operations on a fleet and starts listening
// for the end of verification rebuilds.
func NewReleases(f *Fleet) *Releases {
	r := &Releases{f: f}
	f.OnFinished(r.finished)
	return r
}

func (f *Fleet) configured(release string) bool {
	_, ok := f.cfg.Releases[release]
	return ok
}

func (f *Fleet) releaseNames() string {
	var names []string
	for n := range f.cfg.Releases {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none is configured"
	}
	return "configured: " + strings.Join(names, ", ")
}

// ReleasePackage is one package of a release on one target: its newest
// successful build.
type ReleasePackage struct {
	Package, Target string
	Job             *job.Job
	Binaries        []string
	// Last is the newest final verification result; nil when none.
	Last *store.VerifyItem
}

// ReleaseInfo is what `release show` shows.
type ReleaseInfo struct {
	Name       string
	Configured bool
	Seal       store.Seal
	Packages   []ReleasePackage
	// BasePackages and BaseBytes count the distinct base/* artifacts (by
	// sha256) of the release's published builds.
	BasePackages, BaseBytes int64
}

func published(j *job.Job) bool { return strings.HasPrefix(j.Publish, "published") }

// builds returns a release's successful builds, or ErrNotFound when the
// release is neither configured nor built.
func (r *Releases) builds(ctx context.Context, release string) ([]*job.Job, error) {
	if release == "" {
		return nil, fmt.Errorf("%w: no release given", ErrInvalid)
	}
	builds, err := r.f.st.ReleaseBuilds(ctx, release)
	if err != nil {
		return nil, err
	}
	if len(builds) == 0 && !r.f.configured(release) {
		return nil, fmt.Errorf("%w: release %q is not in the coordinator's config and has no builds (%s)",
			ErrNotFound, release, r.f.releaseNames())
	}
	return builds, nil
}

// isOutput reports whether a verified rebuild compares an artifact: a
// package the build made, not a base package it used (base/*).
func isOutput(name string) bool {
	return job.IsPackageFile(name) && !strings.HasPrefix(name, "base/")
}

// binaries returns the names of the binary packages a build made; the
// base packages it used (base/*) are not its own.
func binaries(j *job.Job) []string {
	var out []string
	for _, a := range j.Artifacts {
		if strings.HasPrefix(a.Name, "base/") {
			continue
		}
		if n, ok := BinaryName(a.Name); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Show returns what a release holds.
func (r *Releases) Show(ctx context.Context, release string) (*ReleaseInfo, error) {
	builds, err := r.builds(ctx, release)
	if err != nil {
		return nil, err
	}
	info := &ReleaseInfo{Name: release, Configured: r.f.configured(release)}
	if info.Seal, err = r.f.st.Sealed(ctx, release); err != nil {
		return nil, err
	}
	last, err := r.f.st.LastVerifications(ctx, release)
	if err != nil {
		return nil, err
	}
	newest := map[string]*job.Job{}
	base := map[string]int64{}
	for _, j := range builds {
		newest[j.Spec.Build.Package+"/"+j.Spec.Build.Target] = j
		if !published(j) {
			continue
		}
		for _, a := range j.Artifacts {
			if strings.HasPrefix(a.Name, "base/") {
				base[a.SHA256] = a.Size
			}
		}
	}
	for _, size := range base {
		info.BasePackages++
		info.BaseBytes += size
	}
	for k, j := range newest {
		p := ReleasePackage{Package: j.Spec.Build.Package, Target: j.Spec.Build.Target, Job: j, Binaries: binaries(j)}
		if it, ok := last[k]; ok {
			p.Last = &it
		}
		info.Packages = append(info.Packages, p)
	}
	sort.Slice(info.Packages, func(a, b int) bool {
		pa, pb := info.Packages[a], info.Packages[b]
		return pa.Package+"\x00"+pa.Target < pb.Package+"\x00"+pb.Target
	})
	return info, nil
}

// Verify starts a verification of a release: of the newest published build
// of each of its packages per target (the newest successful one where none
// was published), or of the packages named. It returns the verification
// with the first rebuilds submitted.
func (r *Releases) Verify(ctx context.Context, release string, packages []string, by string) (*store.Verification, error) {
	builds, err := r.builds(ctx, release)
	if err != nil {
		return nil, err
	}
	pick := map[string]*job.Job{}
	var keys []string
	for _, j := range builds {
		if j.Record == nil {
			continue
		}
		k := j.Spec.Build.Package + "/" + j.Spec.Build.Target
		prev, ok := pick[k]
		if !ok {
			keys = append(keys, k)
		}
		if !ok || published(j) || !published(prev) {
			pick[k] = j
		}
	}
	sort.Strings(keys)
	if len(packages) > 0 {
		want := map[string]bool{}
		for _, p := range packages {
			want[p] = true
		}
		have := map[string]bool{}
		var sel []string
		for _, k := range keys {
			p := pick[k].Spec.Build.Package
			have[p] = true
			if want[p] {
				sel = append(sel, k)
			}
		}
		for _, p := range packages {
			if !have[p] {
				return nil, fmt.Errorf("%w: release %s has no successful build of package %q to verify (its packages: %s)",
					ErrInvalid, release, p, strings.Join(sortedKeys(have), ", "))
			}
		}
		keys = sel
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: release %s has no successful package build with a build record to verify", ErrInvalid, release)
	}
	nodes := make([]VerifyNode, len(keys))
	for i, k := range keys {
		j := pick[k]
		nodes[i] = VerifyNode{Target: j.Spec.Build.Target, Produces: binaries(j)}
		for _, p := range j.Record.Installed {
			nodes[i].Installs = append(nodes[i].Installs, p.Name)
		}
	}
	order, after := VerifyOrder(nodes)
	pos := make([]int, len(keys))
	for place, i := range order {
		pos[i] = place
	}
	v := &store.Verification{Release: release, RequestedBy: by, CreatedAt: r.f.cfg.Clock.Now()}
	for _, i := range order {
		j := pick[keys[i]]
		it := store.VerifyItem{Package: j.Spec.Build.Package, Target: j.Spec.Build.Target, JobID: j.ID,
			Version: j.Record.Version, Result: store.VerifyWaiting}
		for _, q := range after[i] {
			it.After = append(it.After, pos[q])
		}
		sort.Ints(it.After)
		v.Items = append(v.Items, it)
	}
	if err := r.f.st.AddVerification(ctx, v); err != nil {
		return nil, err
	}
	r.f.logger.Info("release verification started", "release", release, "verification", v.ID, "packages", len(v.Items), "by", by)
	return r.advance(ctx, v.ID)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Verification returns a verification as it stands, after recording the
// results of rebuilds that ended and submitting those now due (which also
// resumes a verification a coordinator restart interrupted).
func (r *Releases) Verification(ctx context.Context, id int64) (*store.Verification, error) {
	return r.advance(ctx, id)
}

// Resume carries on the verifications a coordinator restart interrupted:
// it records the results of rebuilds that ended and submits those due. A
// verification it cannot advance is logged and left for the next attempt
// (a rebuild ending, a client asking): it never stops a coordinator.
func (r *Releases) Resume(ctx context.Context) {
	ids, err := r.f.st.UnfinishedVerifications(ctx)
	if err != nil {
		r.f.logger.Error("resume release verifications", "error", err)
		return
	}
	for _, id := range ids {
		if _, err := r.advance(ctx, id); err != nil {
			r.f.logger.Error("resume release verification", "verification", id, "error", err)
		}
	}
	if len(ids) > 0 {
		r.f.logger.Info("resumed release verifications", "count", len(ids))
	}
}

// finished records a verification rebuild's result and submits the
// rebuilds that waited for it.
func (r *Releases) finished(ctx context.Context, j *job.Job) {
	if !j.Verify || j.RebuildOf == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Under the lock, a rebuild being submitted has its job id recorded.
	r.mu.Lock()
	id, err := r.f.st.VerificationOfRebuild(ctx, j.ID)
	r.mu.Unlock()
	if err == nil && id != 0 {
		_, err = r.advance(ctx, id)
	}
	if err != nil {
		r.f.logger.Error("advance release verification", "job_id", j.ID, "error", err)
	}
}

// Result turns a finished verified rebuild into a verification result.
func Result(j *job.Job) (result, detail string) {
	switch j.State {
	case job.Succeeded:
		if len(j.Differing) > 0 {
			return store.VerifyDifferent, ""
		}
		return store.VerifyIdentical, ""
	case job.Failed:
		return store.VerifyFailed, "rebuild job " + j.ID + " failed: " + j.Reason
	default:
		return store.VerifyError, "rebuild job " + j.ID + " " + j.State.String() + ": " + j.Reason
	}
}

func (r *Releases) advance(ctx context.Context, id int64) (*store.Verification, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.f.st.Verification(ctx, id)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: no verification %d", ErrNotFound, id)
	}
	for i := range v.Items {
		it := &v.Items[i]
		if it.Result != store.VerifyRunning {
			continue
		}
		j, _, err := r.f.Get(ctx, it.RebuildJobID)
		switch {
		case errors.Is(err, ErrNotFound):
			it.Result, it.Detail = store.VerifyError, "rebuild job "+it.RebuildJobID+" is gone from the coordinator's store"
		case err != nil:
			return nil, err
		case !j.State.Final():
			continue
		default:
			it.Result, it.Detail = Result(j)
			it.Differing, it.FinishedAt = j.Differing, j.FinishedAt
		}
		if it.FinishedAt.IsZero() {
			it.FinishedAt = r.f.cfg.Clock.Now()
		}
		if err := r.f.st.UpdateVerifyItem(ctx, *it); err != nil {
			return nil, err
		}
		r.f.logger.Info("package verified", "release", v.Release, "verification", v.ID, "package", it.Package,
			"target", it.Target, "result", it.Result, "job_id", it.RebuildJobID)
	}
	for i := range v.Items {
		it := &v.Items[i]
		if it.Result != store.VerifyWaiting || !allFinal(v.Items, it.After) {
			continue
		}
		rj, err := r.f.Rebuild(ctx, it.JobID, true)
		if err != nil {
			it.Result, it.Detail, it.FinishedAt = store.VerifyError, "submit rebuild: "+err.Error(), r.f.cfg.Clock.Now()
		} else {
			it.Result, it.RebuildJobID = store.VerifyRunning, rj.ID
		}
		if err := r.f.st.UpdateVerifyItem(ctx, *it); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func allFinal(items []store.VerifyItem, idx []int) bool {
	for _, i := range idx {
		if i < 0 || i >= len(items) || !items[i].Final() {
			return false
		}
	}
	return true
}

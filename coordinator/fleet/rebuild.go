package fleet

// Rebuilds of finished package builds, and comparing what they made.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// Rebuild submits a new build from a finished package build. With verify
// it pins the recorded build dependencies, keeps the original revision and
// version so the bytes can match, and compares the artifacts when it ends.
func (f *Fleet) Rebuild(ctx context.Context, id string, verify bool) (*job.Job, error) {
	orig, _, err := f.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if orig.Spec.Build == nil {
		return nil, fmt.Errorf("%w: job %s is a command job, not a package build", ErrInvalid, id)
	}
	if !orig.State.Final() {
		return nil, fmt.Errorf("%w: job %s is still %s", ErrInvalid, id, orig.State)
	}
	spec := orig.Spec
	b := *orig.Spec.Build
	spec.Build = &b
	spec.Force = true
	spec.SupersedeKey = ""
	if !verify {
		return f.submitRebuild(ctx, spec, orig, false)
	}
	if orig.State != job.Succeeded || orig.Record == nil {
		return nil, fmt.Errorf("%w: job %s has no successful build record to verify against", ErrInvalid, id)
	}
	b.Sources = orig.Record.Sources
	if len(b.Sources) == 0 {
		b.Sources = orig.Spec.Build.Sources
	}
	b.Pinned = orig.Record.Installed
	b.Publish = false
	return f.submitRebuild(ctx, spec, orig, true)
}

func (f *Fleet) submitRebuild(ctx context.Context, spec job.Spec, orig *job.Job, verify bool) (*job.Job, error) {
	if !verify {
		j, _, err := f.submit(ctx, spec, orig.ID, nil)
		return j, err
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Marked and queued under the lock a seal takes: see Releases.Seal.
	f.buildMu.Lock()
	defer f.buildMu.Unlock()
	if err := f.markSealed(ctx, &spec); err != nil {
		return nil, err
	}
	j := &job.Job{Spec: spec, State: job.Queued, CreatedAt: f.cfg.Clock.Now(), BuildKey: orig.BuildKey,
		Rebuild: true, RebuildOf: orig.ID, Verify: true}
	j.Seq = f.seq.Add(1)
	j.ID = strconv.FormatInt(j.Seq, 10)
	if err := f.wrote(f.st.Put(ctx, j)); err != nil {
		f.seq.CompareAndSwap(j.Seq, j.Seq-1)
		return nil, f.writeError("persist job", err)
	}
	f.newLog(j.ID)
	_, others := splitChanged(j.ID, f.sched.Enqueue(j))
	return j, f.persist(ctx, others)
}

// splitChanged separates a newly enqueued job from the older jobs its
// enqueueing changed (superseded).
func splitChanged(id string, changed []*job.Job) (mine *job.Job, others []*job.Job) {
	for _, c := range changed {
		if c.ID == id {
			mine = c
		} else {
			others = append(others, c)
		}
	}
	return mine, others
}

// compareRebuild fills in the artifacts of a finished verify rebuild whose
// bytes differ from the original's, and returns the log note that says so.
func (f *Fleet) compareRebuild(ctx context.Context, j *job.Job) (*store.Note, error) {
	if !j.Verify || j.RebuildOf == "" || j.State != job.Succeeded {
		return nil, nil
	}
	orig, err := f.st.Get(ctx, j.RebuildOf)
	if err != nil {
		return nil, err
	}
	// Packages are compared; .changes and .buildinfo record the build's
	// date and environment and differ by design, and base/* are the
	// packages the build used, not what it made.
	want := map[string]string{}
	for _, a := range orig.Artifacts {
		if isOutput(a.Name) {
			want[a.Name] = a.SHA256
		}
	}
	got := map[string]string{}
	var diff []string
	for _, a := range j.Artifacts {
		if !isOutput(a.Name) {
			continue
		}
		got[a.Name] = a.SHA256
		if want[a.Name] != a.SHA256 {
			diff = append(diff, a.Name)
		}
	}
	for n := range want {
		if _, ok := got[n]; !ok {
			diff = append(diff, n+" (missing)")
		}
	}
	sort.Strings(diff)
	j.Differing = diff
	msg := "rebuild is byte-identical to job " + orig.ID
	if len(diff) > 0 {
		msg = "rebuild differs from job " + orig.ID + ": " + strings.Join(diff, ", ")
	}
	n := f.note(ctx, j.ID, msg)
	return &n, nil
}

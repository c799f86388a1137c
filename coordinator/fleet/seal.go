package fleet

// Sealing a release, and what its package builds are handed to their
// workers with.
//
// A build's spec says whether it builds sealed. It is set when the build is
// submitted and, for the builds still queued, again whenever the release is
// sealed or unsealed, under the scheduler's lock: every build a worker gets
// carries its release's state at that moment. The seal record in the store
// is what counts: a coordinator that starts (after a restart, or on the
// store another one used) marks its restored queued builds from it again.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// SealChange is what sealing (or unsealing) a release did.
type SealChange struct {
	Seal store.Seal
	// Remarked are the queued builds of the release, by job id, oldest
	// first, that now build as the release says (sealed, or not).
	Remarked []string
	// Failed are the queued builds sealing made unbuildable (they ask for
	// a chroot the release's base does not hold): they ended failed,
	// saying why.
	Failed []string
	// Running are the builds of the release that were running: they carry
	// on as they started (when sealing: from the upstream mirror), and
	// only a rebuild builds them as the release now says.
	Running []string
	// Changed is false when the release already was as asked.
	Changed bool
}

// Seal seals (or unseals) a release named in the coordinator's config,
// records who asked, and re-marks the release's queued builds to match.
// Sealing a sealed release (or unsealing an unsealed one) changes nothing:
// the release stays sealed since the first time.
func (r *Releases) Seal(ctx context.Context, release string, sealed bool, by string) (SealChange, error) {
	f := r.f
	if !f.configured(release) {
		return SealChange{}, fmt.Errorf("%w: release %q is not in the coordinator's config (releases: section; %s)",
			ErrNotFound, release, f.releaseNames())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// No build is submitted meanwhile: one marked from the old state is
	// queued before the re-marking, one marked from the new state after.
	f.buildMu.Lock()
	defer f.buildMu.Unlock()
	cur, err := f.st.Sealed(ctx, release)
	if err != nil || cur.Sealed == sealed {
		return SealChange{Seal: cur}, err
	}
	var held map[string][]string
	if sealed {
		if held, err = f.heldChroots(ctx, release); err != nil {
			return SealChange{}, err
		}
	}
	s, err := f.st.SetSealed(ctx, release, sealed, by, f.cfg.Clock.Now())
	if err != nil {
		return SealChange{}, err
	}
	f.setSeal(release, s, held)
	ch, err := f.reseal(ctx, release, s, held)
	ch.Changed = true
	f.logger.Info("release seal changed", "release", release, "sealed", sealed, "by", by,
		"remarked", len(ch.Remarked), "failed", len(ch.Failed), "running", len(ch.Running))
	return ch, err
}

// reseal makes the queued builds of a release build as its seal s says,
// first in the scheduler (under its lock, so that no worker gets one of
// them half re-marked), then in the store. held is heldChroots's answer
// when s is sealed.
func (f *Fleet) reseal(ctx context.Context, release string, s store.Seal, held map[string][]string) (SealChange, error) {
	pick := func(j *job.Job) bool {
		b := j.Spec.Build
		return b != nil && b.Release == release && b.Sealed != s.Sealed
	}
	res := f.sched.Respec(pick, func(spec *job.Spec) (bool, error) {
		if err := sealSpec(spec, s.Sealed, held); err != nil {
			return false, fmt.Errorf("release %s was sealed by %s while this build was queued: %w", release, s.By, err)
		}
		return true, nil
	})
	what, how := "sealed", "it builds from the release alone (its base and its repositories), not from the upstream mirror"
	if !s.Sealed {
		what, how = "unsealed", "it builds from the upstream mirror again"
	}
	ch := SealChange{Seal: s}
	var notes []store.Note
	for _, j := range res.Changed {
		if j.State == job.Failed {
			ch.Failed = append(ch.Failed, j.ID)
			notes = append(notes, f.note(ctx, j.ID, fmt.Sprintf("finished: %s%s", j.State, reasonSuffix(j))))
			continue
		}
		ch.Remarked = append(ch.Remarked, j.ID)
		notes = append(notes, f.note(ctx, j.ID, fmt.Sprintf("release %s was %s by %s while this build was queued: %s", release, what, s.By, how)))
	}
	for _, j := range res.Running {
		ch.Running = append(ch.Running, j.ID)
	}
	if err := f.persist(ctx, res.Changed, notes...); err != nil {
		return ch, f.writeError(fmt.Sprintf("write the queued builds of release %s marked %s (the seal is recorded; "+
			"the coordinator marks them again when it starts)", release, what), err)
	}
	return ch, nil
}

// sealSnapshot is a release's seal and, when sealed, the chroots its base
// held when it was read.
type sealSnapshot struct {
	seal store.Seal
	held map[string][]string
}

func (f *Fleet) setSeal(release string, s store.Seal, held map[string][]string) {
	f.sealMu.Lock()
	defer f.sealMu.Unlock()
	if f.seals == nil {
		f.seals = map[string]sealSnapshot{}
	}
	f.seals[release] = sealSnapshot{seal: s, held: held}
}

// sealOf is a release's seal as last read or set (unsealed for a release
// loadSeals did not read: one not configured, which cannot be sealed).
func (f *Fleet) sealOf(release string) sealSnapshot {
	f.sealMu.Lock()
	defer f.sealMu.Unlock()
	return f.seals[release]
}

// loadSeals reads the seal of every configured release and of every
// release a live build belongs to, for resealRestored and requeueSpec.
func (f *Fleet) loadSeals(ctx context.Context, live []*job.Job) error {
	releases := slices.Collect(maps.Keys(f.cfg.Releases))
	for _, j := range live {
		if b := j.Spec.Build; b != nil && !slices.Contains(releases, b.Release) {
			releases = append(releases, b.Release)
		}
	}
	for _, release := range releases {
		s, err := f.st.Sealed(ctx, release)
		if err != nil {
			return err
		}
		var held map[string][]string
		if s.Sealed {
			if held, err = f.heldChroots(ctx, release); err != nil {
				return err
			}
		}
		f.setSeal(release, s, held)
	}
	return nil
}

// requeueSpec marks a package build going back to the queue after an
// infrastructure failure (its worker lost, say) as its release is now: a
// build that started before its release was sealed is retried sealed,
// from the release alone, like the builds queued at the seal. It runs
// under the scheduler's lock, so it reads the seals kept in memory, not
// the store.
func (f *Fleet) requeueSpec(spec *job.Spec) (bool, error) {
	b := spec.Build
	if b == nil {
		return false, nil
	}
	snap := f.sealOf(b.Release)
	if b.Sealed == snap.seal.Sealed {
		return false, nil
	}
	if err := sealSpec(spec, snap.seal.Sealed, snap.held); err != nil {
		return false, fmt.Errorf("release %s was sealed by %s while this build ran: %w", b.Release, snap.seal.By, err)
	}
	return true, nil
}

// resealRestored marks the queued builds restored at start from their
// release's seal, as reseal does: a seal recorded before the coordinator
// stopped writing the builds it re-marked is not lost, nor one recorded by
// another coordinator on the same store.
func (f *Fleet) resealRestored(ctx context.Context, live []*job.Job) error {
	var stale []string
	for _, j := range live {
		b := j.Spec.Build
		if b == nil || j.State != job.Queued {
			continue
		}
		if s := f.sealOf(b.Release); b.Sealed != s.seal.Sealed && !slices.Contains(stale, b.Release) {
			stale = append(stale, b.Release)
		}
	}
	for _, release := range stale {
		s := f.sealOf(release)
		ch, err := f.reseal(ctx, release, s.seal, s.held)
		if err != nil {
			// Marked in the queue all the same: workers get them right,
			// and the next start writes them again.
			f.logger.Error("write queued builds marked from their release's seal", "release", release, "error", err)
			continue
		}
		f.logger.Info("queued builds marked from their release's seal", "release", release, "sealed", s.seal.Sealed,
			"remarked", len(ch.Remarked), "failed", len(ch.Failed))
	}
	return nil
}

// markSealed sets a package build's Sealed from its release's state, so
// that what the worker gets is the coordinator's word, not the client's.
func (f *Fleet) markSealed(ctx context.Context, spec *job.Spec) error {
	b := spec.Build
	if b == nil {
		return nil
	}
	s, err := f.st.Sealed(ctx, b.Release)
	if err != nil {
		return err
	}
	var held map[string][]string
	if _, ok := spec.Labels["chroot/"+b.Target]; ok && s.Sealed {
		if held, err = f.heldChroots(ctx, b.Release); err != nil {
			return err
		}
	}
	if err := sealSpec(spec, s.Sealed, held); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// sealSpec makes a package build's spec build sealed or not; held is
// heldChroots's answer for its release when sealed.
//
// A sealed build needs no chroot of its target on the worker, which makes
// one from the release's base: unless the client asked for other labels,
// it goes to a worker that says it builds the release sealed
// (sealed-target and sealed-release, see the worker) instead of one with
// a chroot of the target.
func sealSpec(spec *job.Spec, sealed bool, held map[string][]string) error {
	b := spec.Build
	b.Sealed = sealed
	if err := sealChroot(spec, held[b.Target]); err != nil {
		return err
	}
	if b.Sealed && spec.Labels["target"] == b.Target {
		labels := maps.Clone(spec.Labels)
		delete(labels, "target")
		labels["sealed-target"], labels["sealed-release"] = b.Target, b.Release
		spec.Labels = labels
	} else if !b.Sealed && spec.Labels["sealed-target"] == b.Target && spec.Labels["target"] == "" {
		// A rebuild of a sealed build after the release was unsealed.
		labels := maps.Clone(spec.Labels)
		delete(labels, "sealed-target")
		delete(labels, "sealed-release")
		labels["target"] = b.Target
		spec.Labels = labels
	}
	if !b.Sealed && b.SealedChroot != "" {
		// Unsealed again: the build runs on the chroot it asked for.
		labels := maps.Clone(spec.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels["chroot/"+b.Target] = b.SealedChroot
		b.SealedChroot = ""
		spec.Labels = labels
	}
	return nil
}

// heldChroots returns, by target, the chroots a release's base holds: those
// a published build of the release ran on, sorted.
func (f *Fleet) heldChroots(ctx context.Context, release string) (map[string][]string, error) {
	builds, err := f.st.ReleaseBuilds(ctx, release)
	if err != nil {
		return nil, err
	}
	held := map[string][]string{}
	for _, j := range builds {
		if !published(j) || j.Record == nil || j.Record.ChrootDigest == "" {
			continue
		}
		t, d := j.Spec.Build.Target, j.Record.ChrootDigest
		if !slices.Contains(held[t], d) {
			held[t] = append(held[t], d)
		}
	}
	for _, ds := range held {
		sort.Strings(ds)
	}
	return held, nil
}

// sealChroot refuses a sealed build that asks for a chroot by its digest
// (the label chroot/<target>, as workers advertise their chroots) that is
// not among held, the chroots its release's base holds: the base then does
// not hold that chroot's packages, and a sealed build can draw on nothing
// else. A digest the base holds is dropped from the labels (and kept in
// SealedChroot for an unseal): the worker makes the chroot from the base.
func sealChroot(spec *job.Spec, held []string) error {
	b := spec.Build
	key := "chroot/" + b.Target
	want, ok := spec.Labels[key]
	if !b.Sealed || !ok {
		return nil
	}
	if slices.Contains(held, want) {
		labels := maps.Clone(spec.Labels)
		delete(labels, key)
		spec.Labels = labels
		b.SealedChroot = want
		return nil
	}
	holds := "none yet"
	if len(held) > 0 {
		holds = strings.Join(held, ", ")
	}
	return fmt.Errorf("release %s is sealed and its base does not hold chroot %s of target %s "+
		"(no published build of the release ran on it; the base holds the chroots %s): "+
		"a sealed build runs only on a chroot made from the release's base, so drop the label %s=%s "+
		"(or name one of those), or unseal the release (coordinator release unseal %s) to build on that chroot from the upstream mirror",
		b.Release, want, b.Target, holds, key, want, b.Release)
}

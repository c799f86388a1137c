package fleet

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
)

// register starts a session of a worker with the given labels.
func (rf *releaseFleet) register(name string, labels map[string]string) string {
	rf.t.Helper()
	id, _, err := rf.f.Register(context.Background(), name, labels, 8, nil)
	if err != nil {
		rf.t.Fatal(err)
	}
	return id
}

// sealedWorker registers a worker that builds mos-9.0 sealed and has no
// chroot of the target: only a sealed build goes to it.
func (rf *releaseFleet) sealedWorker() string {
	return rf.register("sealed-only", map[string]string{"sealed-target": "bookworm-amd64", "sealed-release": "mos-9.0"})
}

// plainWorker registers a worker with a chroot of the target that builds
// no release sealed: only an unsealed build goes to it.
func (rf *releaseFleet) plainWorker() string {
	return rf.register("plain", map[string]string{"target": "bookworm-amd64"})
}

// pullFrom takes the next assignment of a session; nil when none.
func (rf *releaseFleet) pullFrom(session string) *job.Job {
	rf.t.Helper()
	j, err := rf.f.Pull(context.Background(), session, 0)
	if err != nil {
		rf.t.Fatal(err)
	}
	return j
}

// publishOnChroot builds and publishes a package of the release, whose
// record says it ran on chroot sha256:c0ffee: the release's base then holds
// that chroot.
func (rf *releaseFleet) publishOnChroot() {
	rf.t.Helper()
	pub := rf.submit("hello")
	rf.finish(rf.pull(), false, []string{"gcc"}, file{"out/hello_1.0-1_amd64.deb", "hello"})
	if err := rf.f.SetPublish(context.Background(), pub.ID, "published"); err != nil {
		rf.t.Fatal(err)
	}
}

// submitOnChroot submits a build of pkg that asks for its target's chroot
// by digest.
func (rf *releaseFleet) submitOnChroot(pkg, digest string) *job.Job {
	rf.t.Helper()
	spec := buildSpec(pkg)
	spec.Labels = map[string]string{"target": "bookworm-amd64", "chroot/bookworm-amd64": digest}
	j, _, err := rf.f.Submit(context.Background(), spec)
	if err != nil {
		rf.t.Fatal(err)
	}
	return j
}

func (rf *releaseFleet) submit(pkg string) *job.Job {
	rf.t.Helper()
	j, _, err := rf.f.Submit(context.Background(), buildSpec(pkg))
	if err != nil {
		rf.t.Fatal(err)
	}
	return j
}

// wantSealed checks that a build a worker got (or the store holds) is
// marked as the release is, labels included.
func wantSealed(t *testing.T, what string, j *job.Job, sealed bool) {
	t.Helper()
	if j == nil {
		t.Fatalf("%s: no build, want one sealed=%v", what, sealed)
	}
	l := j.Spec.Labels
	ok := j.Spec.Build.Sealed && l["sealed-target"] == "bookworm-amd64" && l["sealed-release"] == "mos-9.0" && l["target"] == ""
	if !sealed {
		ok = !j.Spec.Build.Sealed && l["target"] == "bookworm-amd64" && l["sealed-target"] == "" && l["sealed-release"] == ""
	}
	if !ok {
		t.Fatalf("%s: job %s sealed=%v labels %v, want sealed=%v", what, j.ID, j.Spec.Build.Sealed, l, sealed)
	}
}

// A build queued before its release is sealed is handed to its worker
// sealed, and one queued before the release is unsealed unsealed: what a
// worker gets is the release's state when the build starts. Running builds
// carry on as they started, and the seal names them.
func TestSealRemarksQueuedBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	sealedW, plainW := rf.sealedWorker(), rf.plainWorker()
	running := rf.submit("running")
	if j := rf.pullFrom(plainW); j == nil || j.ID != running.ID {
		t.Fatalf("pulled %+v, want %s", j, running.ID)
	}
	queued := rf.submit("queued")
	if j := rf.pullFrom(sealedW); j != nil {
		t.Fatalf("a worker that only builds sealed got unsealed job %s", j.ID)
	}

	ch, err := rf.r.Seal(ctx, "mos-9.0", true, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ch.Remarked, []string{queued.ID}) || !reflect.DeepEqual(ch.Running, []string{running.ID}) || len(ch.Failed) != 0 {
		t.Fatalf("seal changed %+v, want %s re-marked and %s running", ch, queued.ID, running.ID)
	}
	stored, err := rf.st.Get(ctx, queued.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantSealed(t, "stored after the seal", stored, true)
	if j := rf.pullFrom(plainW); j != nil {
		t.Fatalf("after the seal, a worker that does not build it sealed got job %s", j.ID)
	}
	wantSealed(t, "assigned after the seal", rf.pullFrom(sealedW), true)
	if log := logOf(t, rf.f, queued.ID); !strings.Contains(log, "release mos-9.0 was sealed by alice while this build was queued: it builds from the release alone") {
		t.Fatalf("queued build's log says nothing of the seal:\n%s", log)
	}
	if j, _, err := rf.f.Get(ctx, running.ID); err != nil || j.Spec.Build.Sealed {
		t.Fatalf("running build %+v %v, want it left unsealed", j, err)
	}

	// Unsealing re-marks the builds queued while sealed; the sealed one
	// running is named.
	later := rf.submit("later")
	wantSealed(t, "submitted while sealed", later, true)
	ch, err = rf.r.Seal(ctx, "mos-9.0", false, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ch.Remarked, []string{later.ID}) || !reflect.DeepEqual(ch.Running, []string{queued.ID}) {
		t.Fatalf("unseal changed %+v, want %s re-marked and %s running", ch, later.ID, queued.ID)
	}
	if j := rf.pullFrom(sealedW); j != nil {
		t.Fatalf("after the unseal, a worker that only builds sealed got job %s", j.ID)
	}
	wantSealed(t, "assigned after the unseal", rf.pullFrom(plainW), false)
}

// Across a coordinator restart between the seal and the assignment, the
// build is handed out sealed: whether the seal's re-marked builds were
// written before the stop or not (a seal recorded alone, as by a
// coordinator that stopped right after recording it, or by another one on
// the same store); the same for an unseal.
func TestSealReachesQueuedBuildsAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		sealed     bool
		recordOnly bool
	}{
		{name: "sealed", sealed: true},
		{name: "seal recorded alone", sealed: true, recordOnly: true},
		{name: "unseal recorded alone", sealed: false, recordOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			rf := openReleaseFleetIn(t, dir)
			if !tc.sealed {
				if _, err := rf.r.Seal(ctx, "mos-9.0", true, "alice"); err != nil {
					t.Fatal(err)
				}
			}
			queued := rf.submit("hello")
			if tc.recordOnly {
				if _, err := rf.st.SetSealed(ctx, "mos-9.0", tc.sealed, "bob", rf.f.cfg.Clock.Now()); err != nil {
					t.Fatal(err)
				}
			} else if _, err := rf.r.Seal(ctx, "mos-9.0", tc.sealed, "bob"); err != nil {
				t.Fatal(err)
			}
			rf.close()

			rf = openReleaseFleetIn(t, dir)
			stored, err := rf.st.Get(ctx, queued.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantSealed(t, "stored after the restart", stored, tc.sealed)
			wrong := rf.plainWorker()
			if !tc.sealed {
				wrong = rf.sealedWorker()
			}
			if j := rf.pullFrom(wrong); j != nil {
				t.Fatalf("job %s went to a worker that does not build it as the release says", j.ID)
			}
			wantSealed(t, "assigned after the restart", rf.pull(), tc.sealed)
			what := "sealed"
			if !tc.sealed {
				what = "unsealed"
			}
			if log := logOf(t, rf.f, queued.ID); !strings.Contains(log, "release mos-9.0 was "+what+" by bob while this build was queued") {
				t.Fatalf("log says nothing of the change:\n%s", log)
			}
		})
	}
}

// A queued build that asks for a chroot by its digest becomes unbuildable
// when its release is sealed and the base does not hold that chroot: it
// ends failed, saying why, and no worker gets it. One on a chroot the base
// holds builds sealed, on a chroot made from the base.
func TestSealFailsQueuedBuildOfChrootNotInBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	rf.publishOnChroot()
	dead, held := rf.submitOnChroot("dead", "sha256:dead"), rf.submitOnChroot("held", "sha256:c0ffee")
	ch, err := rf.r.Seal(ctx, "mos-9.0", true, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ch.Failed, []string{dead.ID}) || !reflect.DeepEqual(ch.Remarked, []string{held.ID}) {
		t.Fatalf("seal changed %+v, want %s failed and %s re-marked", ch, dead.ID, held.ID)
	}
	got, err := rf.st.Get(ctx, dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != job.Failed {
		t.Fatalf("unbuildable build is %s, want failed", got.State)
	}
	for _, want := range []string{"release mos-9.0 was sealed by alice while this build was queued",
		"does not hold chroot sha256:dead of target bookworm-amd64", "the base holds the chroots sha256:c0ffee"} {
		if !strings.Contains(got.Reason, want) {
			t.Errorf("reason %q does not say %q", got.Reason, want)
		}
	}
	if log := logOf(t, rf.f, dead.ID); !strings.Contains(log, "finished: failed (release mos-9.0 was sealed") {
		t.Errorf("log does not say it failed:\n%s", log)
	}
	j := rf.pull()
	if j.ID != held.ID || !j.Spec.Build.Sealed || j.Spec.Labels["chroot/bookworm-amd64"] != "" {
		t.Fatalf("assigned %s sealed=%v labels %v, want %s sealed without the chroot label", j.ID, j.Spec.Build.Sealed, j.Spec.Labels, held.ID)
	}
	if j := rf.pullFrom(rf.session); j != nil {
		t.Fatalf("job %s assigned, want none: the unbuildable build must not run", j.ID)
	}
}

// A queued build on a chroot the base holds loses its chroot label when the
// release is sealed (the worker makes that chroot from the base) and gets
// it back when the release is unsealed: it then runs on that chroot again,
// not on any chroot of its target.
func TestUnsealGivesBackTheChrootLabel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	rf.publishOnChroot()
	held := rf.submitOnChroot("held", "sha256:c0ffee")
	labels := func() map[string]string {
		t.Helper()
		j, err := rf.st.Get(ctx, held.ID)
		if err != nil {
			t.Fatal(err)
		}
		return j.Spec.Labels
	}
	if _, err := rf.r.Seal(ctx, "mos-9.0", true, "alice"); err != nil {
		t.Fatal(err)
	}
	if l := labels(); l["chroot/bookworm-amd64"] != "" {
		t.Fatalf("sealed build's labels %v still ask for the chroot", l)
	}
	ch, err := rf.r.Seal(ctx, "mos-9.0", false, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ch.Remarked, []string{held.ID}) {
		t.Fatalf("unseal re-marked %v, want %s", ch.Remarked, held.ID)
	}
	want := map[string]string{"target": "bookworm-amd64", "chroot/bookworm-amd64": "sha256:c0ffee"}
	if l := labels(); !reflect.DeepEqual(l, want) {
		t.Fatalf("unsealed build's labels %v, want %v", l, want)
	}
	if j := rf.pullFrom(rf.session); j != nil {
		t.Fatalf("%s assigned to a worker without chroot sha256:c0ffee", j.ID)
	}
	on, _, err := rf.f.Register(ctx, "on-c0ffee", map[string]string{"target": "bookworm-amd64", "chroot/bookworm-amd64": "sha256:c0ffee"}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := rf.pullFrom(on)
	if j == nil || j.ID != held.ID || j.Spec.Build.Sealed {
		t.Fatalf("worker on chroot sha256:c0ffee was assigned %+v, want %s unsealed", j, held.ID)
	}
}

// Workers pulling while the release is sealed: each build is either handed
// out before the seal, unsealed, and named running by it, or after,
// sealed; the store keeps what the worker got. Holds for any interleaving.
func TestSealWhileBuildsAreHandedOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	const n = 40
	w, _, err := rf.f.Register(ctx, "many", map[string]string{"target": "bookworm-amd64", "sealed-target": "bookworm-amd64", "sealed-release": "mos-9.0"}, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		rf.submit(fmt.Sprintf("p%d", i))
	}
	sealed := make(chan struct{})
	pulled := make(chan []*job.Job, 1)
	go func() {
		var got []*job.Job
		for {
			j, err := rf.f.Pull(ctx, w, 0)
			if err != nil {
				t.Error(err)
			}
			if j != nil {
				got = append(got, j)
				continue
			}
			select {
			case <-sealed:
				pulled <- got
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	ch, err := rf.r.Seal(ctx, "mos-9.0", true, "alice")
	close(sealed)
	if err != nil {
		t.Fatal(err)
	}
	got := <-pulled
	running := map[string]bool{}
	for _, id := range ch.Running {
		running[id] = true
	}
	seen := map[string]bool{}
	for _, j := range got {
		if seen[j.ID] {
			t.Fatalf("job %s handed out twice", j.ID)
		}
		seen[j.ID] = true
		if j.Spec.Build.Sealed == running[j.ID] {
			t.Fatalf("job %s handed out sealed=%v, but the seal named it running=%v", j.ID, j.Spec.Build.Sealed, running[j.ID])
		}
		stored, err := rf.st.Get(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.State != job.Running || stored.Spec.Build.Sealed != j.Spec.Build.Sealed {
			t.Fatalf("stored job %s %s sealed=%v, the worker got sealed=%v", j.ID, stored.State, stored.Spec.Build.Sealed, j.Spec.Build.Sealed)
		}
	}
	if len(seen) != n || len(ch.Running)+len(ch.Remarked) != n {
		t.Fatalf("%d builds handed out, seal named %d running and %d re-marked; want %d", len(seen), len(ch.Running), len(ch.Remarked), n)
	}
	t.Logf("%d handed out before the seal, %d after", len(ch.Running), len(ch.Remarked))
}

// A build that started before its release was sealed and goes back to
// the queue after an infrastructure failure (its worker lost, say) is
// retried sealed, like the builds queued at the seal; one that started
// sealed and is retried after the unseal runs unsealed.
func TestSealMarksRetriedBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	sealedW, plainW := rf.sealedWorker(), rf.plainWorker()
	b := rf.submit("retried")
	first := rf.pullFrom(plainW)
	if first == nil || first.ID != b.ID {
		t.Fatalf("pulled %+v, want %s", first, b.ID)
	}
	if _, err := rf.r.Seal(ctx, "mos-9.0", true, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := rf.f.Complete(ctx, plainW, b.ID, first.Attempt, scheduler.Outcome{InfraErr: true, Reason: "disk full"}); err != nil {
		t.Fatal(err)
	}
	if j := rf.pullFrom(plainW); j != nil {
		t.Fatalf("the retry after the seal went to a worker that does not build it sealed: %s", j.ID)
	}
	second := rf.pullFrom(sealedW)
	wantSealed(t, "retried after the seal", second, true)
	if second.ID != b.ID || second.Attempt != first.Attempt+1 {
		t.Fatalf("retried %s attempt %d, want %s attempt %d", second.ID, second.Attempt, b.ID, first.Attempt+1)
	}
	stored, err := rf.st.Get(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantSealed(t, "stored retry", stored, true)

	if _, err := rf.r.Seal(ctx, "mos-9.0", false, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := rf.f.Complete(ctx, sealedW, b.ID, second.Attempt, scheduler.Outcome{InfraErr: true, Reason: "worker lost"}); err != nil {
		t.Fatal(err)
	}
	wantSealed(t, "retried after the unseal", rf.pullFrom(plainW), false)
}

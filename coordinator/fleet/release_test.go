package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
)

func TestVerifyOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		nodes     []VerifyNode
		wantOrder []int
		wantAfter [][]int
	}{
		{name: "independent builds keep their order",
			nodes:     []VerifyNode{{Target: "t", Produces: []string{"a"}}, {Target: "t", Produces: []string{"b"}, Installs: []string{"gcc"}}},
			wantOrder: []int{0, 1}, wantAfter: [][]int{nil, nil}},
		{name: "a build comes after the build of what it installed",
			nodes: []VerifyNode{
				{Target: "t", Produces: []string{"app"}, Installs: []string{"libfoo-dev", "gcc"}},
				{Target: "t", Produces: []string{"libfoo1", "libfoo-dev"}, Installs: []string{"gcc"}},
				{Target: "t", Produces: []string{"other"}},
			},
			wantOrder: []int{1, 0, 2}, wantAfter: [][]int{{1}, nil, nil}},
		{name: "a chain",
			nodes: []VerifyNode{
				{Target: "t", Produces: []string{"c"}, Installs: []string{"b"}},
				{Target: "t", Produces: []string{"b"}, Installs: []string{"a"}},
				{Target: "t", Produces: []string{"a"}},
			},
			wantOrder: []int{2, 1, 0}, wantAfter: [][]int{{1}, {2}, nil}},
		{name: "another target's build of the same binary is no dependency",
			nodes: []VerifyNode{
				{Target: "bookworm", Produces: []string{"app"}, Installs: []string{"libfoo-dev"}},
				{Target: "trixie", Produces: []string{"libfoo-dev"}},
			},
			wantOrder: []int{0, 1}, wantAfter: [][]int{nil, nil}},
		{name: "a cycle keeps no order inside, but what depends on it comes after all of it",
			nodes: []VerifyNode{
				{Target: "t", Produces: []string{"x"}, Installs: []string{"y"}},
				{Target: "t", Produces: []string{"y"}, Installs: []string{"x"}},
				{Target: "t", Produces: []string{"z"}, Installs: []string{"x", "y"}},
			},
			wantOrder: []int{0, 1, 2}, wantAfter: [][]int{nil, nil, {0, 1}}},
		{name: "a build that installs its own older binary does not wait for itself",
			nodes:     []VerifyNode{{Target: "t", Produces: []string{"gcc"}, Installs: []string{"gcc"}}},
			wantOrder: []int{0}, wantAfter: [][]int{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, after := VerifyOrder(tc.nodes)
			if !reflect.DeepEqual(order, tc.wantOrder) || !reflect.DeepEqual(after, tc.wantAfter) {
				t.Fatalf("order %v after %v, want %v %v", order, after, tc.wantOrder, tc.wantAfter)
			}
		})
	}
}

func TestBinaryName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"out/libfoo1_1.2-1~mos9.0+1_amd64.deb":  "libfoo1",
		"libfoo-udeb_1.2-1_amd64.udeb":          "libfoo-udeb",
		"out/python3-nova_29.0-1_all.deb":       "python3-nova",
		"hello-devel-1.0-1.mos9.0.2.x86_64.rpm": "hello-devel",
		"out/hello-1.0-1.el7.noarch.rpm":        "hello",
		"out/hello-1.0-1.el7.src.rpm":           "",
		"out/hello_1.0-1.dsc":                   "",
		"out/hello_1.0.orig.tar.gz":             "",
		"base/gcc-12_12.2.0-14_amd64.deb":       "gcc-12",
		"out/hello_1.0-1_amd64.buildinfo":       "",
		"weird.rpm":                             "",
	} {
		got, ok := BinaryName(in)
		if got != want || ok != (want != "") {
			t.Errorf("BinaryName(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}

// releaseFleet is a fleet with release mos-9.0 configured and a worker
// that finishes package builds as a test says.
type releaseFleet struct {
	t       *testing.T
	f       *Fleet
	st      *store.Store
	r       *Releases
	session string
	closed  bool
}

func openReleaseFleet(t *testing.T) *releaseFleet {
	t.Helper()
	return openReleaseFleetIn(t, t.TempDir())
}

func openReleaseFleetIn(t *testing.T, dir string) *releaseFleet {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, storeIn(dir))
	if err != nil {
		t.Fatal(err)
	}
	rf := &releaseFleet{t: t, st: st}
	t.Cleanup(func() {
		if !rf.closed {
			st.Close()
		}
	})
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Minute, Clock: fixedClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)},
		Releases: map[string]Release{"mos-9.0": {DebSuffix: "~mos9.0+{revision}", Targets: map[string]string{"bookworm-amd64": "deb"}}}},
		st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	// The worker has a chroot of the target and builds mos-9.0 sealed.
	sess, _, err := f.Register(ctx, "w1", map[string]string{"target": "bookworm-amd64", "sealed-target": "bookworm-amd64", "sealed-release": "mos-9.0"}, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	rf.f, rf.r, rf.session = f, NewReleases(f), sess
	return rf
}

// close stops the fleet's store, as a coordinator that stops.
func (rf *releaseFleet) close() {
	rf.t.Helper()
	rf.closed = true
	if err := rf.st.Close(); err != nil {
		rf.t.Fatal(err)
	}
}

func buildSpec(pkg string) job.Spec {
	return job.Spec{Kind: job.PackageBuild, Build: &job.Build{Release: "mos-9.0", Target: "bookworm-amd64", Package: pkg, Publish: true,
		Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: strings.Repeat("b", 40), Role: "combined"}}}}
}

type file struct{ name, content string }

// pull takes the next assignment, which must be a package build.
func (rf *releaseFleet) pull() *job.Job {
	rf.t.Helper()
	j, err := rf.f.Pull(context.Background(), rf.session, 0)
	if err != nil || j == nil {
		rf.t.Fatalf("pull: %v %v, want an assignment", j, err)
	}
	return j
}

// finish uploads files and completes an attempt as succeeded (or failed)
// with a record that installed installs.
func (rf *releaseFleet) finish(j *job.Job, failed bool, installs []string, files ...file) {
	rf.t.Helper()
	ctx := context.Background()
	var arts []job.Artifact
	for _, fl := range files {
		sum := sha256.Sum256([]byte(fl.content))
		a := job.Artifact{Name: fl.name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(fl.content))}
		if err := rf.f.PutArtifact(rf.session, j.ID, j.Attempt, a, bytes.NewReader([]byte(fl.content))); err != nil {
			rf.t.Fatal(err)
		}
		arts = append(arts, a)
	}
	rec := &job.Record{Sources: j.Spec.Build.Sources, ChrootDigest: "sha256:c0ffee", Version: "1.0-1" + j.Spec.Build.VersionSuffix, Artifacts: arts}
	for _, n := range installs {
		rec.Installed = append(rec.Installed, job.Package{Name: n, Version: "1", Architecture: "amd64"})
	}
	o := scheduler.Outcome{Artifacts: arts, Record: rec}
	if failed {
		o = scheduler.Outcome{ExitCode: 2, Failed: true, Reason: "exit status 2"}
	}
	if err := rf.f.Complete(ctx, rf.session, j.ID, j.Attempt, o); err != nil {
		rf.t.Fatal(err)
	}
}

// waitItems polls the verification until pred holds; the rebuilds' results
// are recorded by the fleet's listener, in its own goroutine.
func (rf *releaseFleet) waitItems(id int64, pred func([]store.VerifyItem) bool) *store.Verification {
	rf.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := rf.r.Verification(context.Background(), id)
		if err != nil {
			rf.t.Fatal(err)
		}
		if pred(v.Items) {
			return v
		}
		if time.Now().After(deadline) {
			rf.t.Fatalf("verification %d: items stayed %+v", id, v.Items)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func results(items []store.VerifyItem) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		out[it.Package] = it.Result
	}
	return out
}

// Sealing is recorded and reaches every build submitted after it and every
// build still queued, without changing the build key; an unknown release
// is refused by name.
func TestSealMarksBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	if _, err := rf.r.Seal(ctx, "mos-8.0", true, "alice"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"mos-8.0"`) ||
		!strings.Contains(err.Error(), "configured: mos-9.0") {
		t.Fatalf("seal of an unknown release: %v, want not found naming it and the configured ones", err)
	}
	before, _, err := rf.f.Submit(ctx, buildSpec("hello"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := rf.r.Seal(ctx, "mos-9.0", true, "alice")
	if s := ch.Seal; err != nil || !s.Sealed || s.By != "alice" || s.At.IsZero() {
		t.Fatalf("seal: %+v %v", ch, err)
	}
	if !reflect.DeepEqual(ch.Remarked, []string{before.ID}) || len(ch.Failed)+len(ch.Running) != 0 {
		t.Fatalf("seal changed %+v, want the queued build %s re-marked", ch, before.ID)
	}
	if again, err := rf.r.Seal(ctx, "mos-9.0", true, "mallory"); err != nil || !reflect.DeepEqual(again, SealChange{Seal: ch.Seal}) {
		t.Fatalf("sealing again: %+v %v, want the first seal %+v kept and no build changed", again, err, ch.Seal)
	}
	spec := buildSpec("hello")
	spec.Build.Sealed = false
	spec.Force = true
	after, _, err := rf.f.Submit(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if before.Spec.Build.Sealed || !after.Spec.Build.Sealed {
		t.Fatalf("sealed before %v after %v, want false then true", before.Spec.Build.Sealed, after.Spec.Build.Sealed)
	}
	// The sealed build needs a worker that builds the release sealed,
	// not one with a chroot of the target.
	if l := after.Spec.Labels; l["target"] != "" || l["sealed-target"] != "bookworm-amd64" || l["sealed-release"] != "mos-9.0" {
		t.Fatalf("sealed build's labels %v, want sealed-target and sealed-release instead of target", l)
	}
	if l := before.Spec.Labels; l["target"] != "bookworm-amd64" || l["sealed-target"] != "" {
		t.Fatalf("unsealed build's labels %v, want target", l)
	}
	if after.BuildKey != before.BuildKey {
		t.Fatalf("build key changed by sealing: %s, was %s", after.BuildKey, before.BuildKey)
	}
	if got, err := rf.st.Get(ctx, after.ID); err != nil || !got.Spec.Build.Sealed {
		t.Fatalf("stored job %+v %v, want sealed", got, err)
	}
	for _, j := range []*job.Job{rf.pull(), rf.pull()} {
		if !j.Spec.Build.Sealed {
			t.Fatalf("assignment of job %s not sealed: queued before the seal or not, it starts after", j.ID)
		}
	}
	// A client cannot seal a build of an unsealed release.
	if _, err := rf.r.Seal(ctx, "mos-9.0", false, "bob"); err != nil {
		t.Fatal(err)
	}
	spec = buildSpec("other")
	spec.Build.Sealed = true
	j, _, err := rf.f.Submit(ctx, spec)
	if err != nil || j.Spec.Build.Sealed {
		t.Fatalf("build of an unsealed release asked as sealed: %+v %v", j, err)
	}
	if s, err := rf.st.Sealed(ctx, "mos-9.0"); err != nil || s.Sealed || s.By != "bob" {
		t.Fatalf("after unseal: %+v %v", s, err)
	}
}

// A release verification rebuilds every published package from its record,
// a package after the packages of the release it build-depends on, and
// records each result as its rebuild ends; show reports the packages, the
// base and the last results.
func TestVerifyRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	if _, err := rf.r.Verify(ctx, "mos-8.0", nil, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("verify of an unknown release: %v", err)
	}
	if _, err := rf.r.Verify(ctx, "mos-9.0", nil, "alice"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("verify of a release without builds: %v", err)
	}
	libfoo := []file{{"out/libfoo1_1.0-1~mos9.0+1_amd64.deb", "libfoo1"}, {"out/libfoo-dev_1.0-1~mos9.0+1_amd64.deb", "libfoo-dev"},
		{"out/libfoo_1.0-1~mos9.0+1.dsc", "dsc"}, {"base/gcc_12_amd64.deb", "gcc bytes"}}
	app := []file{{"out/app_1.0-1~mos9.0+1_amd64.deb", "app"}, {"base/gcc_12_amd64.deb", "gcc bytes"}, {"base/make_4_amd64.deb", "make"}}
	other := []file{{"out/other_1.0-1~mos9.0+1_amd64.deb", "other"}}
	files := map[string][]file{"libfoo": libfoo, "app": app, "other": other}
	installs := map[string][]string{"libfoo": {"gcc"}, "app": {"gcc", "libfoo-dev"}, "other": {"gcc"}}
	orig := map[string]string{}
	for _, p := range []string{"app", "libfoo", "other"} {
		j, _, err := rf.f.Submit(ctx, buildSpec(p))
		if err != nil {
			t.Fatal(err)
		}
		rf.finish(rf.pull(), false, installs[p], files[p]...)
		if err := rf.f.SetPublish(ctx, j.ID, "published"); err != nil {
			t.Fatal(err)
		}
		orig[p] = j.ID
	}
	if _, err := rf.r.Verify(ctx, "mos-9.0", []string{"nope"}, "alice"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("verify of an unknown package: %v", err)
	}
	if _, err := rf.r.Seal(ctx, "mos-9.0", true, "alice"); err != nil {
		t.Fatal(err)
	}

	v, err := rf.r.Verify(ctx, "mos-9.0", nil, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, it := range v.Items {
		order = append(order, it.Package)
	}
	if strings.Join(order, " ") != "libfoo app other" || !reflect.DeepEqual(v.Items[1].After, []int{0}) {
		t.Fatalf("items %+v, want libfoo, app after it, other", v.Items)
	}
	if got := results(v.Items); got["libfoo"] != store.VerifyRunning || got["other"] != store.VerifyRunning || got["app"] != store.VerifyWaiting {
		t.Fatalf("first results %v, want libfoo and other running, app waiting", got)
	}
	rebuild := map[string]*job.Job{}
	for range 2 {
		j := rf.pull()
		if !j.Verify || !j.Spec.Build.Sealed || j.Spec.Build.Publish || len(j.Spec.Build.Pinned) == 0 {
			t.Fatalf("rebuild %+v: want a sealed verified rebuild with pinned packages, not published", j.Spec.Build)
		}
		rebuild[j.Spec.Build.Package] = j
	}
	if rebuild["libfoo"] == nil || rebuild["other"] == nil {
		t.Fatalf("rebuilds %v, want libfoo and other first", rebuild)
	}
	rf.finish(rebuild["libfoo"], false, installs["libfoo"], libfoo...)
	rf.waitItems(v.ID, func(items []store.VerifyItem) bool { return results(items)["app"] == store.VerifyRunning })
	rf.finish(rebuild["other"], false, installs["other"], file{"out/other_1.0-1~mos9.0+1_amd64.deb", "other, but not the same"})
	appJob := rf.pull()
	if appJob.Spec.Build.Package != "app" {
		t.Fatalf("third rebuild is %s, want app", appJob.Spec.Build.Package)
	}
	rf.finish(appJob, true, nil)
	v = rf.waitItems(v.ID, func(items []store.VerifyItem) bool {
		for _, it := range items {
			if !it.Final() {
				return false
			}
		}
		return true
	})
	if got := results(v.Items); got["libfoo"] != store.VerifyIdentical || got["other"] != store.VerifyDifferent || got["app"] != store.VerifyFailed {
		t.Fatalf("results %v, want libfoo identical, other different, app failed", got)
	}
	if d := v.Items[2].Differing; len(d) != 1 || d[0] != "out/other_1.0-1~mos9.0+1_amd64.deb" {
		t.Fatalf("other differs in %v", d)
	}

	info, err := rf.r.Show(ctx, "mos-9.0")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Seal.Sealed || !info.Configured || len(info.Packages) != 3 || info.BasePackages != 2 || info.BaseBytes != int64(len("gcc bytes")+len("make")) {
		t.Fatalf("show %+v, want sealed, 3 packages, base of 2 files", info)
	}
	for _, p := range info.Packages {
		if p.Job.ID != orig[p.Package] || p.Last == nil || p.Last.Result != results(v.Items)[p.Package] {
			t.Fatalf("package %s: job %s, last %+v", p.Package, p.Job.ID, p.Last)
		}
	}
	// The base packages a build used (base/gcc...) are not its binaries:
	// otherwise every build that installs gcc would wait for libfoo.
	if b := info.Packages[1].Binaries; info.Packages[1].Package != "libfoo" || !reflect.DeepEqual(b, []string{"libfoo-dev", "libfoo1"}) {
		t.Fatalf("libfoo binaries %v", b)
	}

	// Verifying only one package verifies it alone.
	one, err := rf.r.Verify(ctx, "mos-9.0", []string{"app"}, "alice")
	if err != nil || len(one.Items) != 1 || len(one.Items[0].After) != 0 || one.Items[0].Result != store.VerifyRunning {
		t.Fatalf("verify app only: %+v %v", one, err)
	}
}

// A verification interrupted by a coordinator restart after a package's
// result was recorded, before the package waiting for it was submitted,
// carries on when the coordinator starts again.
func TestVerificationResumesAfterRestart(t *testing.T) {
	t.Parallel()
	forBackends(t, func(t *testing.T, dir string) {
		ctx := context.Background()
		rf := openReleaseFleetIn(t, dir)
		libfoo := []file{{"out/libfoo-dev_1_amd64.deb", "libfoo-dev"}}
		for _, p := range []string{"app", "libfoo"} {
			j, _, err := rf.f.Submit(ctx, buildSpec(p))
			if err != nil {
				t.Fatal(err)
			}
			files := libfoo
			if p == "app" {
				files = []file{{"out/app_1_amd64.deb", "app"}}
			}
			rf.finish(rf.pull(), false, map[string][]string{"app": {"libfoo-dev"}}[p], files...)
			if err := rf.f.SetPublish(ctx, j.ID, "published"); err != nil {
				t.Fatal(err)
			}
		}
		v, err := rf.r.Verify(ctx, "mos-9.0", nil, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if got := results(v.Items); got["libfoo"] != store.VerifyRunning || got["app"] != store.VerifyWaiting {
			t.Fatalf("results %v", got)
		}
		// The coordinator stops as libfoo's result is recorded: app was not
		// submitted yet.
		it := v.Items[0]
		it.Result = store.VerifyIdentical
		if err := rf.st.UpdateVerifyItem(ctx, it); err != nil {
			t.Fatal(err)
		}
		rf.close()
		rf = openReleaseFleetIn(t, dir)
		rf.r.Resume(ctx)
		v2, err := rf.st.Verification(ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := results(v2.Items); got["libfoo"] != store.VerifyIdentical || got["app"] != store.VerifyRunning || v2.Items[1].RebuildJobID == "" {
			t.Fatalf("after restart %+v, want app submitted", v2.Items)
		}
		pulled := map[string]bool{}
		for range 2 {
			pulled[rf.pull().ID] = true
		}
		if !pulled[v2.Items[1].RebuildJobID] || !pulled[it.RebuildJobID] {
			t.Fatalf("assignments %v, want app's rebuild and libfoo's restored one", pulled)
		}
	})
}

// A sealed build that names a chroot by its digest gets it only when the
// release's base holds that chroot, that is when a published build of the
// release ran on it; otherwise it is refused, naming the digest.
func TestSealedBuildOfChrootNotInBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rf := openReleaseFleet(t)
	j, _, err := rf.f.Submit(ctx, buildSpec("hello"))
	if err != nil {
		t.Fatal(err)
	}
	rf.finish(rf.pull(), false, []string{"gcc"}, file{"out/hello_1.0-1_amd64.deb", "hello"})
	if err := rf.f.SetPublish(ctx, j.ID, "published"); err != nil {
		t.Fatal(err)
	}
	if _, err := rf.r.Seal(ctx, "mos-9.0", true, "alice"); err != nil {
		t.Fatal(err)
	}
	onChroot := func(digest string) job.Spec {
		spec := buildSpec("other")
		spec.Labels = map[string]string{"target": "bookworm-amd64", "chroot/bookworm-amd64": digest}
		return spec
	}
	_, _, err = rf.f.Submit(ctx, onChroot("sha256:dead"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("sealed build on a chroot the base does not hold: %v, want invalid", err)
	}
	for _, want := range []string{"release mos-9.0 is sealed", "does not hold chroot sha256:dead of target bookworm-amd64",
		"the base holds the chroots sha256:c0ffee", "drop the label chroot/bookworm-amd64=sha256:dead", "coordinator release unseal mos-9.0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The chroot the published build ran on: accepted, made from the base.
	ok, _, err := rf.f.Submit(ctx, onChroot("sha256:c0ffee"))
	if err != nil {
		t.Fatal(err)
	}
	if l := ok.Spec.Labels; !ok.Spec.Build.Sealed || l["chroot/bookworm-amd64"] != "" || l["sealed-target"] != "bookworm-amd64" {
		t.Errorf("sealed build on a held chroot: sealed %v, labels %v", ok.Spec.Build.Sealed, l)
	}
	// Unsealed, the label stays: any worker with that chroot builds it.
	if _, err := rf.r.Seal(ctx, "mos-9.0", false, "alice"); err != nil {
		t.Fatal(err)
	}
	spec := onChroot("sha256:dead")
	spec.Build.Package = "third"
	un, _, err := rf.f.Submit(ctx, spec)
	if err != nil || un.Spec.Labels["chroot/bookworm-amd64"] != "sha256:dead" {
		t.Fatalf("unsealed build on a chroot: %+v %v", un, err)
	}
}

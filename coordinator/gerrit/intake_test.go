package gerrit

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/coordinator/gerrit/reconcile"
	"github.com/kiln-build/kiln/coordinator/gerrit/transport"
	"github.com/kiln-build/kiln/internal/testenv"
)

func readEvent(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("event", "testdata", "events", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestStreamEventTypes feeds each event type, in Gerrit 2.x and 3.x shapes,
// through the SSH stream and checks the builds it causes.
func TestStreamEventTypes(t *testing.T) {
	t.Parallel()
	review := func(ref string) []BuildRequest {
		return []BuildRequest{{Release: "mos-9.0", Target: "trusty-amd64", Package: "nginx",
			Sources:  []Source{{Commit: psRev, Ref: ref, Role: decide.RoleCombined}},
			Priority: PriorityReview, SupersedeKey: "gerrit/review/12345/trusty-amd64"}}
	}
	release := func(rev string) []BuildRequest {
		return []BuildRequest{{Release: "mos-9.0", Target: "trusty-amd64", Package: "nginx",
			Sources: []Source{{Commit: rev, Ref: "refs/heads/9.0", Role: decide.RoleCombined}},
			Publish: true, Priority: PriorityRelease}}
	}
	cases := []struct {
		name   string
		events []string // file names
		want   func(head string) []BuildRequest
		action string
	}{
		{"patchset-created 3.x", []string{"v3-patchset-created.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionBuilt},
		{"patchset-created 2.x", []string{"v2-patchset-created.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionBuilt},
		{"patchset-created 3.0 project object", []string{"v3.0-patchset-created-project-object.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionBuilt},
		{"change-merged 3.x", []string{"v3-change-merged.json"}, func(head string) []BuildRequest { return release(head) }, decide.ActionBuilt},
		{"change-merged 2.x without newRev takes the branch head", []string{"v2-change-merged.json"}, func(head string) []BuildRequest { return release(head) }, decide.ActionBuilt},
		{"ref-updated 3.x", []string{"v3-ref-updated.json"}, func(head string) []BuildRequest { return release(head) }, decide.ActionBuilt},
		{"ref-updated 2.x short branch", []string{"v2-ref-updated-short-branch.json"}, func(head string) []BuildRequest { return release(head) }, decide.ActionBuilt},
		{"ref-updated then change-merged build once", []string{"v3-ref-updated.json", "v3-change-merged.json"}, func(head string) []BuildRequest { return release(head) }, decide.ActionDuplicate},
		{"comment-added recheck 3.x", []string{"v3-comment-added-recheck.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionBuilt},
		{"comment-added recheck 2.x", []string{"v2-comment-added-recheck.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionBuilt},
		{"same event twice", []string{"v3-patchset-created.json", "v3-patchset-created.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionDuplicate},
		{"change-abandoned 3.x cancels", []string{"v3-patchset-created.json", "v3-change-abandoned.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionCanceled},
		{"change-abandoned 2.x cancels", []string{"v2-patchset-created.json", "v2-change-abandoned.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionCanceled},
		{"change-deleted 3.x cancels", []string{"v3-patchset-created.json", "v3-change-deleted.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionCanceled},
		{"change-deleted 2.x cancels", []string{"v2-patchset-created.json", "v2-change-deleted.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionCanceled},
		{"change-abandoned without builds", []string{"v3-change-abandoned.json"}, nil, decide.ActionIgnored},
		{"change-abandoned twice", []string{"v3-patchset-created.json", "v3-change-abandoned.json", "v3-change-abandoned.json"}, func(string) []BuildRequest { return review("refs/changes/45/12345/2") }, decide.ActionDuplicate},
		{"meta ref ignored", []string{"v3-ref-updated-meta.json"}, nil, ""},
		{"branch creation not built", []string{"v3-ref-updated-branch-created.json"}, nil, decide.ActionIgnored},
		{"branch deletion not built", []string{"v3-ref-updated-branch-deleted.json"}, nil, decide.ActionIgnored},
		{"replication noise", []string{"v3-ref-replicated.json"}, nil, ""},
		{"unknown type", []string{"v3-unknown-type.json"}, nil, ""},
		{"dropped-output", []string{"v3-dropped-output.json"}, nil, decide.ActionIgnored},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, gerrittest.Options{}, nil)
			head := h.commit(nginx, "9.0", "packaging")
			for _, f := range tc.events {
				h.srv.Send(readEvent(t, f))
			}
			h.sync()
			got := h.builds.all()
			var want []BuildRequest
			if tc.want != nil {
				want = tc.want(head)
			}
			url := filepath.Join(h.dir, "git", nginx)
			for i := range want {
				for j := range want[i].Sources {
					want[i].Sources[j].URL = url
				}
			}
			for i := range got {
				got[i].Origin = "" // for people; checked elsewhere
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("builds:\n got %+v\nwant %+v", got, want)
			}
			evs, err := h.in.ListEvents(context.Background(), 10)
			if err != nil {
				t.Fatal(err)
			}
			// evs[0] is the marker; evs[1] the last event sent, if logged.
			if tc.action == "" {
				if len(evs) != 1 {
					t.Fatalf("noise was logged: %+v", evs)
				}
				return
			}
			if len(evs) < 2 || evs[1].Action != tc.action {
				t.Fatalf("last event logged as %+v, want action %s", evs, tc.action)
			}
		})
	}
}

// TestBranchLifecycle: a created branch is tracked, not built; a merge on
// it is built; once deleted it is no longer reconciled.
func TestBranchLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	ctx := context.Background()
	first := h.commit(nginx, "9.1", "branch point")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.1", "0000000000000000000000000000000000000000", first))
	h.sync()
	if err := h.in.Reconcile(ctx, "review"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.builds.all()); n != 0 {
		t.Fatalf("branch creation built %d", n)
	}
	second := h.commit(nginx, "9.1", "merged")
	if err := h.in.Reconcile(ctx, "review"); err != nil {
		t.Fatal(err)
	}
	if got := h.builds.all(); len(got) != 1 || got[0].Sources[0].Commit != second || got[0].Release != "mos-9.1" {
		t.Fatalf("builds = %+v, want the merge on 9.1", got)
	}
	h.srv.Send(refUpdated(nginx, "refs/heads/9.1", second, "0000000000000000000000000000000000000000"))
	h.sync()
	h.commit(nginx, "9.1", "pushed to a branch Gerrit says is gone")
	if err := h.in.Reconcile(ctx, "review"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.builds.all()); n != 1 {
		t.Fatalf("%d builds after the branch was deleted, want 1", n)
	}
}

// TestSubmittedChainBuildsHeadOnce: submitting a chain of three changes
// gives one ref-updated and three change-merged events with intermediate
// revisions; only the head is built, once, and a late event for an older
// revision builds nothing older.
func TestSubmittedChainBuildsHeadOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	base := h.commit(nginx, "9.0", "base")
	c1 := h.commit(nginx, "9.0", "change 1")
	c2 := h.commit(nginx, "9.0", "change 2")
	c3 := h.commit(nginx, "9.0", "change 3")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", base, c3))
	h.srv.Send(changeMerged(nginx, "9.0", 1, 1, c1, c1))
	h.srv.Send(changeMerged(nginx, "9.0", 2, 1, c2, c2))
	h.srv.Send(changeMerged(nginx, "9.0", 3, 1, c3, c3))
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", base, c1)) // late and old
	h.sync()
	got := h.builds.all()
	if len(got) != 1 || got[0].Sources[0].Commit != c3 {
		t.Fatalf("builds = %+v, want one release build of %s", got, c3)
	}
}

// TestRecheckNeedsMatchingComment checks that only comments matching the
// recheck expression rebuild, and each recheck comment does.
func TestRecheckNeedsMatchingComment(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	h.srv.Send(commentAdded(nginx, "9.0", 7, 1, psRev, "Patch Set 1: Code-Review+1\n\nlooks good, no need to recheck this", 1))
	h.srv.Send(commentAdded(nginx, "9.0", 7, 1, psRev, "Patch Set 1:\n\nrecheck", 2))
	h.srv.Send(commentAdded(nginx, "9.0", 7, 1, psRev, "Patch Set 1:\n\nrecheck", 3))
	own := strings.Replace(commentAdded(nginx, "9.0", 7, 1, psRev, "recheck", 4), `"username":"ann"`, `"username":"kiln"`, 1)
	h.srv.Send(own) // Kiln's own account never triggers a build
	h.sync()
	if got := len(h.builds.all()); got != 2 {
		t.Fatalf("got %d builds, want 2 (one per recheck comment)", got)
	}
}

// TestOpenstackPair checks that a change to either project of an OpenStack
// package builds with both, the other at its branch head.
func TestOpenstackPair(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	code := h.commit("mos/openstack/nova", "openstack-ci/fuel-9.0/mitaka", "code")
	pkg := h.commit("mos/openstack-build/nova", "openstack-ci/fuel-9.0/mitaka", "packaging")
	codeURL := filepath.Join(h.dir, "git", "mos/openstack/nova")
	pkgURL := filepath.Join(h.dir, "git", "mos/openstack-build/nova")

	h.srv.Send(patchsetCreated("mos/openstack-build/nova", "openstack-ci/fuel-9.0/mitaka", 501, 3, psRev))
	got := h.builds.wait(t, 2, 10*time.Second)
	wantSources := []Source{
		{URL: codeURL, Commit: code, Ref: "refs/heads/openstack-ci/fuel-9.0/mitaka", Role: decide.RoleCode},
		{URL: pkgURL, Commit: psRev, Ref: "refs/changes/01/501/3", Role: decide.RolePackaging},
	}
	for i, target := range []string{"trusty-amd64", "centos7-x86_64"} {
		if got[i].Target != target || got[i].Release != "mos-9.0" || got[i].Package != "nova" || !reflect.DeepEqual(got[i].Sources, wantSources) {
			t.Errorf("build %d = %+v, want target %s sources %+v", i, got[i], target, wantSources)
		}
		if got[i].SupersedeKey != "gerrit/review/501/"+target {
			t.Errorf("build %d supersede key %q", i, got[i].SupersedeKey)
		}
	}

	merged := h.commit("mos/openstack/nova", "openstack-ci/fuel-9.0/mitaka", "merged")
	h.srv.Send(changeMerged("mos/openstack/nova", "openstack-ci/fuel-9.0/mitaka", 502, 1, merged, merged))
	got = h.builds.wait(t, 4, 10*time.Second)
	wantSources = []Source{
		{URL: codeURL, Commit: merged, Ref: "refs/heads/openstack-ci/fuel-9.0/mitaka", Role: decide.RoleCode},
		{URL: pkgURL, Commit: pkg, Ref: "refs/heads/openstack-ci/fuel-9.0/mitaka", Role: decide.RolePackaging},
	}
	for _, b := range got[2:] {
		if !b.Publish || b.Priority != PriorityRelease || !reflect.DeepEqual(b.Sources, wantSources) {
			t.Errorf("release build = %+v, want sources %+v, published", b, wantSources)
		}
	}
	// The packaging head used is now known: reconciling builds nothing more.
	if err := h.in.Reconcile(context.Background(), "review"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.builds.all()); n != 4 {
		t.Fatalf("reconcile after the merge queued %d more builds, want none", n-4)
	}

	// A packaging project without the branch cannot build: the event says so.
	h.srv.Send(patchsetCreated("mos/openstack/glance", "9.0", 503, 1, psRev))
	h.sync()
	evs, err := h.in.ListEvents(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if evs[1].Action != decide.ActionIgnored || !strings.Contains(evs[1].Reason, "mos/openstack-build/glance") {
		t.Fatalf("glance event = %+v, want ignored naming the packaging project", evs[1])
	}
}

// TestNewerPatchSetSupersedes checks the supersede key and the event log.
func TestNewerPatchSetSupersedes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	h.srv.Send(patchsetCreated(nginx, "9.0", 42, 1, psRev))
	h.srv.Send(patchsetCreated(nginx, "9.0", 42, 2, mergedRev))
	got := h.builds.wait(t, 2, 10*time.Second)
	if got[0].SupersedeKey != got[1].SupersedeKey || got[0].SupersedeKey == "" {
		t.Fatalf("supersede keys %q and %q, want equal and set", got[0].SupersedeKey, got[1].SupersedeKey)
	}
	h.sync()
	evs, err := h.in.ListEvents(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if evs[2].PatchSet != 1 || evs[2].Action != decide.ActionSuperseded || evs[1].Action != decide.ActionBuilt {
		t.Fatalf("events = %+v, want patch set 1 superseded and 2 built", evs)
	}
	// A late recheck of the old patch set builds nothing.
	h.srv.Send(commentAdded(nginx, "9.0", 42, 1, psRev, "recheck", 5))
	h.sync()
	evs, err = h.in.ListEvents(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if evs[1].Action != decide.ActionSuperseded || !strings.Contains(evs[1].Reason, "patch set 2 is newer") || len(h.builds.all()) != 2 {
		t.Fatalf("recheck of an old patch set: %+v, %d builds", evs[1], len(h.builds.all()))
	}
}

// TestStreamKilledMidEventMergeBuiltOnce kills the stand-in in the middle of
// an event, merges while it is down, and restarts it: the merge is built
// exactly once, whatever events are replayed afterwards.
func TestStreamKilledMidEventMergeBuiltOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	base := h.commit(nginx, "9.0", "base")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", "0000000000000000000000000000000000000000", base))
	h.sync() // branch now tracked, not built

	// Half an event, then the connection dies.
	merged := h.commit(nginx, "9.0", "merge of change 77")
	line := changeMerged(nginx, "9.0", 77, 2, merged, merged)
	h.srv.SendRaw([]byte(line[:len(line)/2]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var merged2 string
	h.restartServer(func() {
		// Another merge lands while the stream is down.
		merged2 = h.commit(nginx, "9.0", "merge of change 78")
		time.Sleep(50 * time.Millisecond) // a few failed reconnects
	})
	got := h.builds.wait(t, 1, 10*time.Second)
	if got[0].Sources[0].Commit != merged2 || !got[0].Publish {
		t.Fatalf("build after reconnect = %+v, want release build of %s", got[0], merged2)
	}
	// Gerrit's events for the merge arrive late (or from the webhook too).
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", base, merged2))
	h.srv.Send(changeMerged(nginx, "9.0", 78, 1, merged2, merged2))
	h.sync()
	for i := 0; i < 3; i++ {
		if err := h.in.Reconcile(ctx, "review"); err != nil {
			t.Fatal(err)
		}
	}
	// A restart of the coordinator does not build it again either.
	h.restartIntake()
	h.sync()
	if got := h.builds.all(); len(got) != 1 {
		t.Fatalf("got %d builds, want exactly 1: %+v", len(got), got)
	}
	if n := h.counter("kiln_gerrit_stream_connects_total"); n < 1 {
		t.Fatalf("connects counter %v", n)
	}
}

// TestDroppedOutputReconciles: Gerrit's dropped-output means events were
// lost; the merge among them is built from the branch head.
func TestDroppedOutputReconciles(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	base := h.commit(nginx, "9.0", "base")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", "0000000000000000000000000000000000000000", base))
	h.sync()
	lost := h.commit(nginx, "9.0", "merged while events were dropped")
	h.srv.Send(readEvent(t, "v3-dropped-output.json"))
	got := h.builds.wait(t, 1, 10*time.Second)
	if got[0].Sources[0].Commit != lost || !got[0].Publish {
		t.Fatalf("build = %+v, want release build of %s", got[0], lost)
	}
}

// TestStandInDropsOutputWhenClientIsSlow checks that the stand-in, like
// Gerrit, reports its own overflow with dropped-output, and that the intake
// then catches up through the reconciler.
func TestStandInDropsOutputWhenClientIsSlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{QueueSize: 1}, nil)
	base := h.commit(nginx, "9.0", "base")
	h.srv.Send(refUpdated(nginx, "refs/heads/9.0", "0000000000000000000000000000000000000000", base))
	h.sync()
	lost := h.commit(nginx, "9.0", "merged")
	// The merge's own events are among those dropped: only noise is sent,
	// so the build can only come from dropped-output.
	h.srv.Hold()
	for i := 0; i < 3; i++ { // one in the writer's hands, one queued, one dropped
		h.srv.Send(readEvent(t, "v3-ref-replicated.json"))
	}
	h.srv.Release()
	got := h.builds.wait(t, 1, 20*time.Second)
	if got[0].Sources[0].Commit != lost {
		t.Fatalf("build = %+v, want %s", got[0], lost)
	}
}

// TestMalformedLinesSkipped: bad lines are counted and skipped; the stream
// goes on.
func TestMalformedLinesSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	bad := []string{
		"not json at all",
		`{"type":"patchset-created","change":`,
		`{"type":"patchset-created","change":{"project":"-oProxyCommand=evil","branch":"9.0","number":1},"patchSet":{"number":1,"revision":"` + psRev + `"}}`,
		`{"type":"patchset-created","change":{"project":"mos/packages/trusty/nginx","branch":"9.0","number":"x"},"patchSet":{"number":1,"revision":"` + psRev + `"}}`,
		`{"type":"ref-updated","refUpdate":{"oldRev":"` + parentRev + `","newRev":"` + mergedRev + `","refName":"refs/heads/../../etc","project":"mos/packages/trusty/nginx"}}`,
		`{"type":"ref-updated","refUpdate":{"oldRev":"` + parentRev + `","newRev":"` + mergedRev + `","refName":"refs/heads/9.0","project":"mos/packages/trusty/nginx"},"brandNew":true}`,
		"{" + strings.Repeat(" ", transport.MaxLine+10) + "}",
	}
	for _, l := range bad {
		h.srv.Send(l)
	}
	h.srv.Send(readEvent(t, "v3-patchset-created.json"))
	got := h.builds.wait(t, 2, 10*time.Second)
	if !slices.ContainsFunc(got, func(r BuildRequest) bool { return r.Sources[0].Commit == psRev }) {
		t.Fatalf("builds after malformed lines = %+v", got)
	}
	// Bad close events for the change just built cancel nothing.
	for _, l := range []string{
		`{"type":"change-abandoned","change":{"project":"mos/packages/trusty/nginx","branch":"9.0","number":"x"},"reason":"gone"}`,
		`{"type":"change-abandoned","change":{"project":"-oProxyCommand=evil","branch":"9.0","number":12345},"reason":"gone"}`,
		`{"type":"change-abandoned","change":{"project":"mos/packages/trusty/nginx","branch":"9.0","number":12345},"patchSet":{"number":2,"revision":"--upload-pack=evil"}}`,
		`{"type":"change-deleted","change":{"project":"mos/packages/trusty/nginx","branch":"9.0"}}`,
	} {
		h.srv.Send(l)
	}
	h.sync()
	if n := h.counter("kiln_gerrit_events_malformed_total"); n != 10 {
		t.Errorf("malformed counter = %v, want 10", n)
	}
	if c := h.builds.cancelled(); len(c) != 0 {
		t.Errorf("malformed close events cancelled builds: %+v", c)
	}
	if n := h.counter("kiln_gerrit_event_unknown_fields_total"); n != 1 {
		t.Errorf("unknown fields counter = %v, want 1", n)
	}
}

// TestEventLogBounded: the event log keeps about event_log_size entries.
func TestEventLogBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, func(c *Config, _ *gerrittest.Server) { c.EventLogSize = 20 })
	for i := 0; i < 250; i++ {
		h.srv.Send(patchsetCreated("unmapped/project", "master", 100+i, 1, psRev))
	}
	h.sync()
	evs, err := h.in.ListEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 20 || len(evs) > 20+100 {
		t.Fatalf("%d events kept, want 20 to 120", len(evs))
	}
	if evs[1].Action != decide.ActionIgnored || !strings.Contains(evs[1].Reason, "no rule maps project unmapped/project branch master") {
		t.Fatalf("event = %+v, want ignored with the reason", evs[1])
	}
}

// TestGitOverSSH reads branch heads the way production does: git ls-remote
// over ssh:// to the Gerrit stand-in, with the configured key and
// known_hosts file.
func TestGitOverSSH(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "ssh")
	h := newHarness(t, gerrittest.Options{}, func(c *Config, srv *gerrittest.Server) {
		c.Servers[0].GitURL = "ssh://kiln@" + srv.Addr() + "/{project}"
	})
	head := h.commit(nginx, "9.0", "over ssh")
	h.srv.Send(readEvent(t, "v3-ref-updated.json"))
	got := h.builds.wait(t, 1, 20*time.Second)
	want := Source{URL: "ssh://kiln@" + h.srv.Addr() + "/" + nginx, Commit: head, Ref: "refs/heads/9.0", Role: decide.RoleCombined}
	if !reflect.DeepEqual(got[0].Sources, []Source{want}) {
		t.Fatalf("sources = %+v, want %+v (the head read over SSH)", got[0].Sources, want)
	}
	// A host key that does not match is refused.
	g := &reconcile.Git{}
	bad := h.cfg.Servers[0]
	bad.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(bad.KnownHostsFile, []byte("["+strings.Replace(h.srv.Addr(), ":", "]:", 1)+" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.AddSSH(reconcile.GitSSH{URL: "ssh://kiln@" + h.srv.Addr() + "/{project}", PrivateKeyFile: bad.PrivateKeyFile, KnownHostsFile: bad.KnownHostsFile})
	if _, err := g.Heads(context.Background(), "ssh://kiln@"+h.srv.Addr()+"/"+nginx); err == nil {
		t.Fatal("ls-remote accepted a host key not in known_hosts")
	}
}

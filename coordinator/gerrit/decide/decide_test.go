package decide

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

const (
	rev    = "8b4f7e0f5bd8d6c5cd3f1fcdbb3bd0a0d4a6c2f1"
	newRev = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
	zero   = "0000000000000000000000000000000000000000"
	nginx  = "mos/packages/trusty/nginx"
)

func testDecider(t *testing.T) Decider {
	t.Helper()
	rules, err := NewRules([]Rule{{
		Name:     "linux",
		Sources:  []RuleSource{{Project: "{customer}/packages/{distribution}/{package}", Role: RoleCombined}},
		Where:    map[string]string{"customer": "mos"},
		Branches: []BranchRule{{Branch: "{fuel}", Release: "{customer}-{fuel}", Targets: []string{"{distribution}-amd64"}, Package: "{package}"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return Decider{Rules: rules, Recheck: regexp.MustCompile(`(?im)^\s*recheck\s*$`)}
}

// TestDecide: every kind of decision, from the event and the facts alone.
func TestDecide(t *testing.T) {
	t.Parallel()
	d := testDecider(t)
	srv := Server{Name: "review", User: "kiln"}
	plan := Plan{Rule: "linux", Release: "mos-9.0", Package: "nginx", Targets: []string{"trusty-amd64"},
		Sources: []PlanSource{{Project: nginx, Role: RoleCombined}}}
	ps := func(typ string, change, patchSet int64) event.Event {
		return event.Event{Type: typ, Project: nginx, Branch: "9.0", RefName: "refs/heads/9.0", Change: change, PatchSet: patchSet, Revision: rev}
	}
	comment := func(author, text string) event.Event {
		ev := ps(event.TypeCommentAdded, 7, 2)
		ev.Author, ev.Comment = author, text
		return ev
	}
	refUpdated := func(ref, old, new string) event.Event {
		return event.Event{Type: event.TypeRefUpdated, Project: nginx, Branch: strings.TrimPrefix(ref, "refs/heads/"), RefName: ref, OldRev: old, NewRev: new}
	}
	merged := ps(event.TypeChangeMerged, 7, 2)
	merged.NewRev = newRev
	oldMerged := ps(event.TypeChangeMerged, 7, 2) // Gerrit before 2.13: no newRev
	unmapped := ps(event.TypePatchsetCreated, 7, 1)
	unmapped.Project = "other/packages/trusty/nginx"
	cases := []struct {
		name  string
		ev    event.Event
		facts Facts
		want  Decision // DedupKey is checked apart
	}{
		{"patch set", ps(event.TypePatchsetCreated, 1234, 2), Facts{},
			Decision{Kind: Review, Plan: plan, Rev: rev, Ref: "refs/changes/34/1234/2"}},
		{"patch set of a change under 10", ps(event.TypePatchsetCreated, 7, 1), Facts{},
			Decision{Kind: Review, Plan: plan, Rev: rev, Ref: "refs/changes/07/7/1"}},
		{"older patch set", ps(event.TypePatchsetCreated, 7, 1), Facts{LatestPatchSet: 2},
			Decision{Kind: Record, Action: ActionSuperseded, Reason: "patch set 2 is newer; only the current patch set is built"}},
		{"same patch set again", ps(event.TypePatchsetCreated, 7, 2), Facts{LatestPatchSet: 2},
			Decision{Kind: Review, Plan: plan, Rev: rev, Ref: "refs/changes/07/7/2"}},
		{"duplicate", ps(event.TypePatchsetCreated, 7, 2), Facts{Seen: true},
			Decision{Kind: Record, Action: ActionDuplicate, Reason: "already received"}},
		{"recheck", comment("ann", "Patch Set 2:\n\nrecheck"), Facts{},
			Decision{Kind: Review, Reason: "recheck requested", Plan: plan, Rev: rev, Ref: "refs/changes/07/7/2"}},
		{"comment", comment("ann", "Patch Set 2: Code-Review+1"), Facts{},
			Decision{Kind: Record, Action: ActionNoise, Reason: "the comment does not ask for a recheck"}},
		{"Kiln's own recheck", comment("kiln", "recheck"), Facts{},
			Decision{Kind: Record, Action: ActionNoise, Reason: "Kiln's own comment"}},
		{"no rule", unmapped, Facts{},
			Decision{Kind: Record, Action: ActionIgnored, Reason: "no rule maps project other/packages/trusty/nginx branch 9.0"}},
		{"merged", merged, Facts{}, Decision{Kind: Release, Plan: plan, Rev: newRev}},
		{"merged without newRev", oldMerged, Facts{}, Decision{Kind: Release, Plan: plan, Rev: rev}},
		{"merged twice", merged, Facts{Seen: true}, Decision{Kind: Record, Action: ActionDuplicate, Reason: "already received"}},
		{"branch pushed", refUpdated("refs/heads/9.0", rev, newRev), Facts{}, Decision{Kind: Release, Plan: plan, Rev: newRev}},
		{"branch created", refUpdated("refs/heads/9.0", zero, newRev), Facts{},
			Decision{Kind: Track, Action: ActionIgnored, Reason: "branch created; tracked from now on, not built", Rev: newRev}},
		{"branch deleted", refUpdated("refs/heads/9.0", rev, zero), Facts{},
			Decision{Kind: Untrack, Action: ActionIgnored, Reason: "branch deleted; no longer tracked"}},
		{"NoteDb meta ref", refUpdated("refs/changes/34/1234/meta", rev, newRev), Facts{},
			Decision{Kind: Record, Action: ActionNoise, Reason: "refs/changes/34/1234/meta is not a branch"}},
		{"abandoned", ps(event.TypeChangeAbandoned, 7, 2), Facts{}, Decision{Kind: Cancel, Reason: "change 7 abandoned"}},
		{"deleted", event.Event{Type: event.TypeChangeDeleted, Project: nginx, Branch: "9.0", Change: 7}, Facts{},
			Decision{Kind: Cancel, Reason: "change 7 deleted"}},
		{"abandoned, replayed", ps(event.TypeChangeAbandoned, 7, 2), Facts{Seen: true},
			Decision{Kind: Record, Action: ActionDuplicate, Reason: "already received"}},
		{"dropped output", event.Event{Type: event.TypeDroppedOutput}, Facts{},
			Decision{Kind: Reconcile, Action: ActionIgnored, Reason: "Gerrit dropped events for this stream; reconciling all tracked branches"}},
		{"known type", event.Event{Type: "reviewer-added"}, Facts{},
			Decision{Kind: Record, Action: ActionNoise, Reason: "Kiln does not act on reviewer-added events"}},
		{"unknown type", event.Event{Type: "custom-plugin-thing"}, Facts{},
			Decision{Kind: Record, Action: ActionNoise, Reason: `unknown event type "custom-plugin-thing"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := d.Decide(srv, tc.ev, tc.facts)
			key := got.DedupKey
			got.DedupKey = ""
			if !equal(got, tc.want) {
				t.Errorf("Decide:\n got %+v\nwant %+v", got, tc.want)
			}
			// What is carried out is recorded with the event's key, so that
			// a repeat is a duplicate.
			if carried := got.Kind == Track || got.Kind == Untrack || got.Kind == Release || got.Kind == Review || got.Kind == Cancel; carried != (key != "") {
				t.Errorf("dedup key %q for a decision of kind %d", key, got.Kind)
			} else if carried && key != DedupKey(srv.Name, tc.ev) {
				t.Errorf("dedup key %q, want the event's", key)
			}
			if tc.facts.Seen && NeedsPatchSet(tc.ev) && got.Kind != Record {
				t.Errorf("a duplicate was carried out")
			}
		})
	}
}

func equal(a, b Decision) bool {
	if a.Kind != b.Kind || a.Action != b.Action || a.Reason != b.Reason || a.Rev != b.Rev || a.Ref != b.Ref {
		return false
	}
	if a.Plan.Rule != b.Plan.Rule || a.Plan.Release != b.Plan.Release || a.Plan.Package != b.Plan.Package ||
		strings.Join(a.Plan.Targets, ",") != strings.Join(b.Plan.Targets, ",") || len(a.Plan.Sources) != len(b.Plan.Sources) {
		return false
	}
	for i := range a.Plan.Sources {
		if a.Plan.Sources[i] != b.Plan.Sources[i] {
			return false
		}
	}
	return true
}

// TestDedupKey: repeats of one event share a key; events that only look
// alike (the same comment twice, an abandon after a restore) do not.
func TestDedupKey(t *testing.T) {
	t.Parallel()
	base := event.Event{Type: event.TypeCommentAdded, Project: nginx, Change: 7, PatchSet: 2, Revision: rev, Comment: "recheck"}
	later := base
	later.CreatedOn = later.CreatedOn.Add(1e9)
	other := base
	other.Comment = "recheck please"
	again := base // the same event delivered again
	if DedupKey("review", again) != DedupKey("review", base) {
		t.Error("one event, two keys")
	}
	for name, ev := range map[string]event.Event{"later comment": later, "other text": other} {
		if DedupKey("review", ev) == DedupKey("review", base) {
			t.Errorf("%s: same key as the first comment", name)
		}
	}
	if DedupKey("review", base) == DedupKey("second", base) {
		t.Error("two servers, one key")
	}
}

// TestOrderKey: a branch's release events and a change's review events
// each share a key; noise has none.
func TestOrderKey(t *testing.T) {
	t.Parallel()
	merged := event.Event{Type: event.TypeChangeMerged, Project: nginx, Branch: "9.0", Change: 7}
	pushed := event.Event{Type: event.TypeRefUpdated, Project: nginx, Branch: "9.0"}
	ps := event.Event{Type: event.TypePatchsetCreated, Project: nginx, Branch: "9.0", Change: 7}
	abandoned := event.Event{Type: event.TypeChangeAbandoned, Project: nginx, Change: 7}
	if OrderKey("review", merged) != OrderKey("review", pushed) || OrderKey("review", merged) != BranchKey("review", nginx, "9.0") {
		t.Error("a branch's merge and push have different keys")
	}
	if OrderKey("review", ps) != OrderKey("review", abandoned) || OrderKey("review", ps) == OrderKey("review", merged) {
		t.Error("a change's events do not share one key apart from its branch's")
	}
	if k := OrderKey("review", event.Event{Type: "reviewer-added"}); k != "" {
		t.Errorf("noise has order key %q", k)
	}
}

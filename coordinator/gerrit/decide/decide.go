// Package decide says what Kiln does with a Gerrit event: nothing (noise,
// a duplicate, a branch no rule maps, an older patch set), track or drop a
// branch, queue a release build of a branch head or a review build of a
// patch set, or cancel a closed change's review builds. Decide is pure: it
// takes the event and the few facts read from the store before it, and
// returns the decision, which the intake carries out. The rules that map
// a project and branch to a package build are here too.
package decide

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// Actions recorded for events.
const (
	ActionBuilt      = "built"
	ActionSuperseded = "superseded"
	ActionCanceled   = "canceled"
	ActionIgnored    = "ignored"
	ActionDuplicate  = "duplicate"
	ActionError      = "error"
	// ActionRefused is an event whose build the coordinator refused.
	ActionRefused = "refused"
	// ActionReceived is an event accepted and waiting for its decision.
	ActionReceived = "received"
	// ActionFailed is an event whose decision failed and is tried again.
	ActionFailed = "failed"
	// ActionNoise is an event Kiln has no use for (comments that ask for
	// nothing, NoteDb and patch set refs, replication, unknown types);
	// event lists show them only when asked for all.
	ActionNoise = "noise"
)

// Kind is what a decision asks the intake to do.
type Kind int

const (
	// Record only records the event with Action and Reason.
	Record Kind = iota
	// Reconcile compares every tracked branch of the server with its head
	// (Gerrit dropped events), and records the event as ignored.
	Reconcile
	// Track records Rev as the head of a new branch, which is tracked from
	// now on and not built.
	Track
	// Untrack stops tracking a deleted branch.
	Untrack
	// Release queues release builds of Plan at the branch's head, or at Rev
	// when the head cannot be read.
	Release
	// Review queues review builds of Plan with the changed project at Rev
	// from Ref.
	Review
	// Cancel cancels the change's queued and running review builds and
	// keeps all of them from voting.
	Cancel
)

// Server is what a decision needs to know of the Gerrit server.
type Server struct {
	Name string
	// User is the account Kiln comments as: its comments are noise.
	User string
}

// Facts are what the store knew when the event was decided.
type Facts struct {
	// Seen is true when an event with the same DedupKey was decided.
	Seen bool
	// LatestPatchSet is the newest patch set of the event's change that
	// a review build was queued for.
	LatestPatchSet int64
}

// Decision is what to do with one event.
type Decision struct {
	Kind Kind
	// Action and Reason are recorded for Record, Reconcile, Track and
	// Untrack; Reason says why for Cancel and prefixes Review's.
	Action, Reason string
	// Plan is the build of Release and Review.
	Plan Plan
	// Rev is the commit asked for: the branch's new head (Track, Release)
	// or the patch set (Review). Ref is where Review fetches it from.
	Rev, Ref string
	// DedupKey is recorded with the decision, so that a repeat of the
	// event is a duplicate; empty for events that are never duplicates.
	DedupKey string
}

// Decider decides events with rules and the recheck expression.
type Decider struct {
	Rules   *Rules
	Recheck *regexp.Regexp
}

// Noise says why Kiln has no use for an event, or "" when it may have.
// It looks at nothing but the event, so noise is decided as it arrives.
func (d Decider) Noise(s Server, ev event.Event) string {
	switch {
	case !event.Used(ev.Type) && event.Known(ev.Type):
		return fmt.Sprintf("Kiln does not act on %s events", ev.Type)
	case !event.Used(ev.Type):
		return fmt.Sprintf("unknown event type %q", ev.Type)
	case ev.Type == event.TypeRefUpdated && !strings.HasPrefix(ev.RefName, "refs/heads/"):
		// Patch set refs, refs/changes/*/meta (NoteDb), tags,
		// refs/meta/config, refs/users, sequences: none is a branch to build.
		return fmt.Sprintf("%s is not a branch", ev.RefName)
	case ev.Type == event.TypeCommentAdded && ev.Author == s.User:
		// Kiln's own messages never trigger builds.
		return "Kiln's own comment"
	case ev.Type == event.TypeCommentAdded && !d.Recheck.MatchString(ev.Comment):
		return "the comment does not ask for a recheck"
	}
	return ""
}

// Decide decides an event given the facts read for it (see NeedsFacts).
func (d Decider) Decide(s Server, ev event.Event, f Facts) Decision {
	if reason := d.Noise(s, ev); reason != "" {
		return Decision{Kind: Record, Action: ActionNoise, Reason: reason}
	}
	if ev.Type == event.TypeDroppedOutput {
		return Decision{Kind: Reconcile, Action: ActionIgnored, Reason: "Gerrit dropped events for this stream; reconciling all tracked branches"}
	}
	if f.Seen {
		return Decision{Kind: Record, Action: ActionDuplicate, Reason: "already received"}
	}
	key := DedupKey(s.Name, ev)
	if ev.Type == event.TypeChangeAbandoned || ev.Type == event.TypeChangeDeleted {
		verb := "abandoned"
		if ev.Type == event.TypeChangeDeleted {
			verb = "deleted"
		}
		return Decision{Kind: Cancel, Reason: fmt.Sprintf("change %d %s", ev.Change, verb), DedupKey: key}
	}
	plan, ok, err := d.Rules.Resolve(ev.Project, ev.Branch)
	if err != nil {
		return Decision{Kind: Record, Action: ActionError, Reason: err.Error()}
	}
	if !ok {
		return Decision{Kind: Record, Action: ActionIgnored, Reason: fmt.Sprintf("no rule maps project %s branch %s", ev.Project, ev.Branch)}
	}
	switch ev.Type {
	case event.TypeRefUpdated:
		switch {
		case event.IsZero(ev.OldRev):
			return Decision{Kind: Track, Action: ActionIgnored, Reason: "branch created; tracked from now on, not built", Rev: ev.NewRev, DedupKey: key}
		case event.IsZero(ev.NewRev):
			return Decision{Kind: Untrack, Action: ActionIgnored, Reason: "branch deleted; no longer tracked", DedupKey: key}
		}
		return Decision{Kind: Release, Plan: plan, Rev: ev.NewRev, DedupKey: key}
	case event.TypeChangeMerged:
		rev := ev.NewRev
		if rev == "" {
			// Gerrit before 2.13 did not say what the branch became.
			rev = ev.Revision
		}
		return Decision{Kind: Release, Plan: plan, Rev: rev, DedupKey: key}
	}
	// patchset-created, or a comment asking for a recheck.
	if f.LatestPatchSet > ev.PatchSet {
		return Decision{Kind: Record, Action: ActionSuperseded,
			Reason: fmt.Sprintf("patch set %d is newer; only the current patch set is built", f.LatestPatchSet)}
	}
	var why string
	if ev.Type == event.TypeCommentAdded {
		why = "recheck requested"
	}
	// The patch set's ref is derived, not taken from the event, so that it
	// cannot point anywhere else.
	ref := fmt.Sprintf("refs/changes/%02d/%d/%d", ev.Change%100, ev.Change, ev.PatchSet)
	return Decision{Kind: Review, Reason: why, Plan: plan, Rev: ev.Revision, Ref: ref, DedupKey: key}
}

// NeedsPatchSet tells whether Decide needs Facts.LatestPatchSet for ev.
func NeedsPatchSet(ev event.Event) bool {
	return ev.Type == event.TypePatchsetCreated || ev.Type == event.TypeCommentAdded
}

// DedupKey identifies an event among those received before: Gerrit sends
// the same event again after a reconnect, and the webhooks plugin delivers
// one several times.
func DedupKey(server string, ev event.Event) string {
	switch ev.Type {
	case event.TypeRefUpdated:
		return strings.Join([]string{server, ev.Type, ev.Project, ev.RefName, ev.OldRev, ev.NewRev}, "\x00")
	case event.TypeCommentAdded, event.TypeChangeAbandoned, event.TypeChangeDeleted:
		// The same comment twice, or a change abandoned, restored and
		// abandoned again, are different events.
		sum := sha256.Sum256([]byte(ev.Comment))
		return strings.Join([]string{server, ev.Type, fmt.Sprint(ev.Change), fmt.Sprint(ev.PatchSet), ev.Revision,
			fmt.Sprint(ev.CreatedOn.Unix()), hex.EncodeToString(sum[:8])}, "\x00")
	default:
		return strings.Join([]string{server, ev.Type, fmt.Sprint(ev.Change), fmt.Sprint(ev.PatchSet), ev.Revision}, "\x00")
	}
}

// OrderKey names what an event's decision must wait for: decisions on
// one branch (release builds) or one change (review builds, cancelling)
// run in the order the events arrived. Events with no key are decided in
// any order.
func OrderKey(server string, ev event.Event) string {
	switch ev.Type {
	case event.TypeRefUpdated, event.TypeChangeMerged:
		return BranchKey(server, ev.Project, ev.Branch)
	case event.TypePatchsetCreated, event.TypeCommentAdded, event.TypeChangeAbandoned, event.TypeChangeDeleted:
		return fmt.Sprintf("change\x00%s\x00%d", server, ev.Change)
	}
	return ""
}

// BranchKey is the order key of a branch's release builds; the reconciler
// holds it too while it queues one.
func BranchKey(server, project, branch string) string {
	return "branch\x00" + server + "\x00" + project + "\x00" + branch
}

// ReviewKey is the supersede key of a change's review builds for one
// target: a newer patch set's build supersedes the older one's, and closing
// the change cancels it.
func ReviewKey(server string, change int64, target string) string {
	return fmt.Sprintf("gerrit/%s/%d/%s", server, change, target)
}

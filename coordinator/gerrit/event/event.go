// Package event reads Gerrit's events, as stream-events prints them and
// the webhooks plugin posts them, from Gerrit 2.x and 3.x, into one Event.
// It refuses malformed events and those Kiln cannot build from, and
// classifies event types: those Kiln acts on, those it knows to ignore.
// It does no I/O.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Event types Kiln acts on or knows to be noise.
const (
	TypePatchsetCreated = "patchset-created"
	TypeChangeMerged    = "change-merged"
	TypeCommentAdded    = "comment-added"
	TypeRefUpdated      = "ref-updated"
	TypeDroppedOutput   = "dropped-output"
	TypeChangeAbandoned = "change-abandoned"
	TypeChangeDeleted   = "change-deleted"
)

// knownTypes are event types Gerrit sends that Kiln does not act on; they
// are ignored without counting as unknown. change-restored is one: the
// builds an abandon cancelled are not resumed, and a restored change is
// built again by its next patch set or a recheck comment, as any change.
var knownTypes = map[string]bool{
	"assignee-changed": true, "change-restored": true, "hashtags-changed": true, "private-state-changed": true,
	"project-created": true, "project-head-updated": true, "reviewer-added": true,
	"reviewer-deleted": true, "topic-changed": true, "vote-deleted": true,
	"wip-state-changed": true, "ref-replicated": true, "ref-replication-done": true,
	"ref-replication-scheduled": true, "batch-ref-updated": true,
	"ref-replication-failed": true, "project-deletion-replication-done": true,
	"projects-deletion-replication-done": true,
	"fetch-ref-replicated":               true, "fetch-ref-replication-done": true,
	"fetch-ref-replication-scheduled": true, "cache-eviction": true,
	"plugin-event": true,
}

// actedOn are the event types Kiln builds from or reacts to.
var actedOn = []string{TypePatchsetCreated, TypeChangeMerged, TypeCommentAdded, TypeRefUpdated, TypeDroppedOutput,
	TypeChangeAbandoned, TypeChangeDeleted}

// ActedOn lists the event types Kiln builds from or reacts to.
func ActedOn() []string { return slices.Clone(actedOn) }

// Used reports whether Kiln builds from or reacts to events of type t.
func Used(t string) bool {
	return slices.Contains(actedOn, t)
}

// Event is one Gerrit event reduced to what Kiln uses.
type Event struct {
	Type    string
	Project string
	// Branch is the short branch name (master), RefName the full ref.
	Branch  string
	RefName string
	Change  int64
	// ChangeID is the Change-Id (I...).
	ChangeID string
	PatchSet int64
	// Revision is the patch set's commit.
	Revision string
	// PatchSetRef is refs/changes/NN/NNNN/P.
	PatchSetRef string
	// OldRev and NewRev are the ref update of ref-updated and, for
	// change-merged, NewRev is the branch head after the merge when Gerrit
	// sends it.
	OldRev string
	NewRev string
	// Comment is the comment-added text or the reason given for
	// change-abandoned; Author the commenter's user name.
	Comment string
	Author  string
	// CreatedOn is eventCreatedOn; zero when Gerrit did not send it.
	CreatedOn time.Time
	// Unknown counts fields Kiln does not know, for the metrics.
	Unknown int
}

// ErrMalformed is wrapped by every ParseEvent error caused by the input.
var ErrMalformed = errors.New("malformed gerrit event")

// ErrUnsupported is wrapped by ParseEvent's error for a well-formed event
// that Kiln cannot build from: one with SHA-256 object ids.
var ErrUnsupported = errors.New("unsupported gerrit event")

// Known reports whether t is a type Gerrit sends that Kiln knows and does
// not act on.
func Known(t string) bool { return knownTypes[t] }

// Refused tells whether err refuses an event for what it holds (rather
// than failing to store it).
func Refused(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnsupported)
}

// flexInt accepts a JSON number or a string holding one (Gerrit 2.x sent
// numbers as strings).
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
		b = []byte(s)
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		// Some servers wrote floats for timestamps.
		fv, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || fv != fv || fv > 1<<62 || fv < -(1<<62) {
			return fmt.Errorf("number %.40q: %w", b, err)
		}
		v = int64(fv)
	}
	f.v, f.set = v, true
	return nil
}

// flexName accepts "name" or {"name": "name"} (Gerrit 3.0-3.1 serialised
// the top-level project as an object).
type flexName string

func (f *flexName) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '{' {
		var o struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		*f = flexName(o.Name)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*f = flexName(s)
	return nil
}

type wireChange struct {
	Project flexName `json:"project"`
	Branch  string   `json:"branch"`
	ID      string   `json:"id"`
	Number  flexInt  `json:"number"`
}

type wirePatchSet struct {
	Number   flexInt `json:"number"`
	Revision string  `json:"revision"`
	Ref      string  `json:"ref"`
}

type wireRefUpdate struct {
	OldRev  string   `json:"oldRev"`
	NewRev  string   `json:"newRev"`
	RefName string   `json:"refName"`
	Project flexName `json:"project"`
}

type wireEvent struct {
	Type           string   `json:"type"`
	EventCreatedOn flexInt  `json:"eventCreatedOn"`
	Project        flexName `json:"project"`
	RefName        string   `json:"refName"`
	ChangeKey      *struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	} `json:"changeKey"`
	Change    *wireChange    `json:"change"`
	PatchSet  *wirePatchSet  `json:"patchSet"`
	RefUpdate *wireRefUpdate `json:"refUpdate"`
	NewRev    string         `json:"newRev"`
	Comment   string         `json:"comment"`
	Reason    string         `json:"reason"`
	Author    *struct {
		Username string `json:"username"`
	} `json:"author"`
}

// knownFields are the top-level fields of the event types Kiln uses, as
// sent by Gerrit 2.x and 3.x.
var knownFields = map[string]bool{
	"type": true, "eventCreatedOn": true, "project": true, "refName": true,
	"changeKey": true, "change": true, "patchSet": true, "refUpdate": true,
	"newRev": true, "comment": true, "uploader": true, "submitter": true,
	"author": true, "approvals": true, "instanceId": true, "abandoner": true,
	"reason": true, "deleter": true,
}

var revisionRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// ParseEvent decodes one line of stream-events (or one webhook body).
// Events of types Kiln does not use come back with only Type set.
func ParseEvent(line []byte) (Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var w wireEvent
	if err := json.Unmarshal(line, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if w.Type == "" {
		return Event{}, fmt.Errorf("%w: no type", ErrMalformed)
	}
	ev := Event{Type: w.Type}
	if w.EventCreatedOn.set && w.EventCreatedOn.v > 0 {
		ev.CreatedOn = time.Unix(w.EventCreatedOn.v, 0).UTC()
	}
	if !Used(w.Type) {
		return ev, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(line, &all); err == nil {
		for k := range all {
			if !knownFields[k] {
				ev.Unknown++
			}
		}
	}
	ev.Project = string(w.Project)
	ev.RefName = w.RefName
	if w.ChangeKey != nil {
		ev.ChangeID = w.ChangeKey.ID
		if ev.ChangeID == "" {
			ev.ChangeID = w.ChangeKey.Key
		}
	}
	if c := w.Change; c != nil {
		if ev.Project == "" {
			ev.Project = string(c.Project)
		}
		ev.Branch = c.Branch
		ev.Change = c.Number.v
		if ev.ChangeID == "" {
			ev.ChangeID = c.ID
		}
	}
	if ps := w.PatchSet; ps != nil {
		ev.PatchSet = ps.Number.v
		ev.Revision = strings.ToLower(ps.Revision)
		ev.PatchSetRef = ps.Ref
	}
	ev.NewRev = strings.ToLower(w.NewRev)
	ev.Comment = w.Comment
	if w.Type == TypeChangeAbandoned {
		ev.Comment = w.Reason
	}
	if w.Author != nil {
		ev.Author = w.Author.Username
	}
	if ru := w.RefUpdate; ru != nil {
		if ev.Project == "" {
			ev.Project = string(ru.Project)
		}
		ev.RefName = ru.RefName
		ev.OldRev = strings.ToLower(ru.OldRev)
		ev.NewRev = strings.ToLower(ru.NewRev)
	}
	// Old ref-updated events carry short branch names ("master").
	if ev.RefName != "" && !strings.HasPrefix(ev.RefName, "refs/") {
		ev.RefName = "refs/heads/" + ev.RefName
	}
	if ev.Branch == "" {
		ev.Branch = strings.TrimPrefix(ev.RefName, "refs/heads/")
		if ev.Branch == ev.RefName {
			ev.Branch = ""
		}
	}
	if ev.RefName == "" && ev.Branch != "" {
		ev.RefName = "refs/heads/" + ev.Branch
	}
	if err := ev.check(); err != nil {
		return ev, err
	}
	return ev, ev.checkObjectIDs()
}

// checkObjectIDs refuses SHA-256 object ids: builds, build keys and
// the job validation take SHA-1 commits.
func (ev Event) checkObjectIDs() error {
	for _, rev := range []string{ev.Revision, ev.OldRev, ev.NewRev} {
		if len(rev) == 64 {
			return fmt.Errorf("%w: %s: commit %s is a SHA-256 object id; SHA-256 object ids are not supported, Kiln builds from repositories with SHA-1 object ids", ErrUnsupported, ev.Type, rev)
		}
	}
	return nil
}

func (ev Event) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, ev.Type, fmt.Sprintf(format, args...))
	}
	if ev.Type == TypeDroppedOutput {
		return nil
	}
	if ev.Project == "" {
		return bad("no project")
	}
	switch ev.Type {
	case TypeRefUpdated:
		if ev.RefName == "" {
			return bad("no refUpdate.refName")
		}
		if !revisionRE.MatchString(ev.OldRev) || !revisionRE.MatchString(ev.NewRev) {
			return bad("oldRev %.70q newRev %.70q: want hex commit ids", ev.OldRev, ev.NewRev)
		}
	case TypeChangeAbandoned, TypeChangeDeleted:
		// Only the change is needed; change-deleted has no patch set.
		if ev.Change <= 0 {
			return bad("change %d: want a positive number", ev.Change)
		}
		if ev.PatchSet < 0 {
			return bad("patch set %d: want a positive number", ev.PatchSet)
		}
		if ev.Revision != "" && !revisionRE.MatchString(ev.Revision) {
			return bad("patchSet.revision %.70q: want a hex commit id", ev.Revision)
		}
	default:
		if ev.Change <= 0 || ev.PatchSet <= 0 {
			return bad("change %d patch set %d: want positive numbers", ev.Change, ev.PatchSet)
		}
		if ev.Branch == "" {
			return bad("no branch")
		}
		if !revisionRE.MatchString(ev.Revision) {
			return bad("patchSet.revision %.70q: want a hex commit id", ev.Revision)
		}
		if ev.NewRev != "" && !revisionRE.MatchString(ev.NewRev) {
			return bad("newRev %.70q: want a hex commit id", ev.NewRev)
		}
	}
	return nil
}

// IsCommit reports whether s is a full hex object id (SHA-1 or SHA-256).
func IsCommit(s string) bool { return revisionRE.MatchString(s) }

// IsZero reports an all-zero revision (branch creation or deletion).
func IsZero(rev string) bool {
	return rev != "" && strings.Trim(rev, "0") == ""
}

// CheckNames refuses project and branch names that cannot be built from.
func (ev Event) CheckNames() error {
	if !Used(ev.Type) || ev.Type == TypeDroppedOutput {
		return nil
	}
	if err := CheckName(ev.Project); err != nil {
		return fmt.Errorf("%w: project: %v", ErrMalformed, err)
	}
	if ev.Branch != "" {
		if err := CheckName(ev.Branch); err != nil {
			return fmt.Errorf("%w: branch: %v", ErrMalformed, err)
		}
	}
	return nil
}

// CheckName rejects project and branch names that could escape their place
// in a URL or a git command line.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > 1024 {
		return fmt.Errorf("name %.40q...: longer than 1024 bytes", name)
	}
	if strings.HasPrefix(name, "-") || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return fmt.Errorf("name %q: must not start with '-' or '/' or end with '/'", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("name %q: empty, '.' or '..' path segment", name)
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return fmt.Errorf("name %q: contains %q, which is not allowed", name, r)
		}
	}
	if strings.Contains(name, "..") || strings.Contains(name, "@{") || strings.HasSuffix(name, ".lock") {
		return fmt.Errorf("name %q: not a valid git name", name)
	}
	return nil
}

// Package record holds what the Gerrit intake writes down: each event and
// what was done with it, the inbox of accepted events waiting for their
// decision, the jobs submitted for events and the reports posted on them,
// and the tracked branch heads. These are the types of the intake's
// storage interface (gerrit.Store), which the coordinator's store
// implements; the package does no I/O.
package record

import "time"

// Event is one logged Gerrit event and what was done with it.
type Event struct {
	ID         int64
	Server     string
	Type       string
	Project    string
	Branch     string
	Change     int64
	PatchSet   int64
	Revision   string
	ReceivedAt time.Time
	// Action is received or failed (not decided yet), or the decision:
	// built, superseded, canceled, ignored, duplicate, refused, noise or
	// error (see the decide package's actions).
	Action string
	// Reason says why, for people.
	Reason string
	JobIDs []string
}

// Accepted is one event to write down before it is decided. An Event with
// no Action is written as received, with its body in the inbox; one with
// an Action (noise) is written as it is.
type Accepted struct {
	Event Event
	// Via is how it came: stream or webhook.
	Via  string
	Body []byte
	// OrderKey names the events it is decided in order with.
	OrderKey string
}

// Pending is an accepted event waiting for its decision.
type Pending struct {
	EventID  int64
	Server   string
	OrderKey string
	Attempts int
	NextTry  time.Time
}

// Build kinds.
const (
	KindReview  = "review"
	KindRelease = "release"
)

// Job is one submitted job, the event that asked for it and where to
// report it. One job serves several events when their builds have the
// same build key.
type Job struct {
	JobID    string
	EventID  int64
	Server   string
	Kind     string
	Change   int64
	PatchSet int64
	Revision string
	Release  string
	Target   string
	Package  string
	// State, LogURL and Published are the job's result, once finished.
	State   string
	LogURL  string
	Publish string
}

// Job states, as the coordinator reports them.
const (
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	// StateError is a build Kiln could not finish (infrastructure).
	StateError    = "error"
	StateCanceled = "canceled"
)

// Result is a finished job.
type Result struct {
	JobID     string
	State     string
	LogURL    string
	Published string
}

// Head is a tracked branch at a revision.
type Head struct {
	Project, Branch, Revision string
}

// Queued is the outcome of queueing release or review builds, written
// in one transaction.
type Queued struct {
	Event    Event
	DedupKey string
	Jobs     []Job
	// Finished are reused jobs that had finished when submitted.
	Finished []Result
	// Heads are the new heads; with Release, also the revisions built for
	// release.
	Heads   []Head
	Release bool
	// Supersede marks older events of the same change superseded.
	Supersede bool
}

package gerrit

import (
	"context"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// Store is where the intake writes down what it accepts, decides,
// submits and reports; the coordinator's store implements it
// (store.Gerrit). It is grouped by the part of the intake that uses it.
type Store interface {
	Inbox
	Decisions
	Reports
	EventLog
}

// Inbox is what the transports and the decider use: events are written
// down when they arrive and leave the inbox with their decision.
type Inbox interface {
	// Accept writes events down in one transaction and returns their ids:
	// an event without an action as received, with its body in the inbox;
	// one with an action (noise) as it is.
	Accept(ctx context.Context, evs []record.Accepted) ([]int64, error)
	// Pending lists up to limit undecided events, oldest first.
	Pending(ctx context.Context, limit int) ([]record.Pending, error)
	// Body reads an undecided event's payload; ok is false when it was
	// decided meanwhile.
	Body(ctx context.Context, eventID int64) (body []byte, via string, ok bool, err error)
	// FailAttempt records that deciding an event failed, why and when it
	// is tried again; the event stays undecided.
	FailAttempt(ctx context.Context, eventID int64, attempts int, next time.Time, reason string) error
	// RecordEvent records a decision: on the accepted event's row (taking
	// it out of the inbox) when r.ID is set, on a new row otherwise.
	RecordEvent(ctx context.Context, r record.Event) (int64, error)
}

// Decisions is what the decider and the reconciler read and write to
// carry decisions out.
type Decisions interface {
	// Seen tells whether an event with the dedup key was decided.
	Seen(ctx context.Context, key string) (bool, error)
	AddDedup(ctx context.Context, key string, now time.Time) error
	// LatestPatchSet is the newest patch set of change a review build was
	// queued for.
	LatestPatchSet(ctx context.Context, server string, change int64) (int64, error)
	// ReleaseQueued tells whether a release build of the branch at rev was
	// queued, and by which event.
	ReleaseQueued(ctx context.Context, server, project, branch, rev string) (eventID int64, ok bool, err error)
	// ReviewTargets lists the targets of change's review builds.
	ReviewTargets(ctx context.Context, server string, change int64) ([]string, error)
	// Heads lists the tracked branches of server with the revision last
	// built or seen.
	Heads(ctx context.Context, server string) ([]record.Head, error)
	SetHead(ctx context.Context, server, project, branch, rev string, now time.Time) error
	DropHead(ctx context.Context, server, project, branch string) error
	// CommitQueued writes down queued builds with their event, in one
	// transaction, and returns the event's id.
	CommitQueued(ctx context.Context, q record.Queued, now time.Time) (int64, error)
	// AttachChange adds a merged change to those told about a release
	// build.
	AttachChange(ctx context.Context, eventID, change, patchSet int64) error
}

// Reports is what the reporter reads and writes: job results, and which
// changes were told.
type Reports interface {
	// FinishJob records a job's result; ok is false when the job is not
	// one of the intake's.
	FinishJob(ctx context.Context, res record.Result) (ok bool, err error)
	// SaveEarly keeps the result of a job not recorded (yet); TakeEarly
	// removes and returns those of ids.
	SaveEarly(ctx context.Context, res record.Result, now time.Time) error
	TakeEarly(ctx context.Context, ids []string) ([]record.Result, error)
	// KnownResults returns the results recorded for ids on rows of kind.
	KnownResults(ctx context.Context, ids []string, kind string) ([]record.Result, error)
	// Unreported lists, oldest first, up to limit events after the id
	// after, received since since, whose report is due; CountUnreported
	// counts them by server.
	Unreported(ctx context.Context, since time.Time, after int64, limit int) ([]int64, error)
	CountUnreported(ctx context.Context, since time.Time) (map[string]int, error)
	EventJobs(ctx context.Context, eventID int64) ([]record.Job, error)
	// EventChanges lists the merged changes (number, patch set) a release
	// build reports to.
	EventChanges(ctx context.Context, eventID int64) ([][2]int64, error)
	// Reported tells whether change (0: the whole event) was told.
	Reported(ctx context.Context, eventID, change int64) (bool, error)
	MarkReported(ctx context.Context, eventID, change int64, now time.Time) error
	// CloseReports marks the reports of all review builds of change
	// complete, so that nothing is posted on a closed change.
	CloseReports(ctx context.Context, server string, change int64, now time.Time) error
}

// EventLog is the list of events people read.
type EventLog interface {
	// ListEvents returns up to limit events, newest first; noise only
	// when all.
	ListEvents(ctx context.Context, limit int, all bool) ([]record.Event, error)
	// Prune keeps the newest keep events (and every undecided one), noise
	// for a day, and dedup keys for dedupAge.
	Prune(ctx context.Context, keep int, dedupAge time.Duration, now time.Time) error
}

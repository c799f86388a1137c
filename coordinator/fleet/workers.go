package fleet

// The fleet's side of the worker protocol: sessions, pulls, results.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/artifactname"
	"github.com/kiln-build/kiln/internal/label"
)

// Workers lists workers.
func (f *Fleet) Workers() []scheduler.WorkerInfo { return f.sched.Workers() }

// Drain drains or undrains a worker; the drain survives a restart.
func (f *Fleet) Drain(ctx context.Context, name string, on bool) (scheduler.WorkerInfo, error) {
	w, err := f.sched.Drain(name, on)
	if errors.Is(err, scheduler.ErrNoWorker) {
		return w, fmt.Errorf("worker %q is not known (see `coordinator workers list`): %w", name, ErrNotFound)
	}
	if err != nil {
		return w, err
	}
	return w, f.st.SetDrained(ctx, name, on)
}

// Register starts a worker session for a worker that gives no instance.
func (f *Fleet) Register(ctx context.Context, name string, labels map[string]string, slots int, running []scheduler.RunningJob) (string, []scheduler.RunningJob, error) {
	return f.RegisterAs(ctx, scheduler.Peer{}, name, labels, slots, running)
}

// RegisterAs starts a worker session; a second process under the name of
// a live worker is refused (scheduler.ErrNameInUse).
func (f *Fleet) RegisterAs(ctx context.Context, p scheduler.Peer, name string, labels map[string]string, slots int, running []scheduler.RunningJob) (string, []scheduler.RunningJob, error) {
	if name == "" || slots <= 0 {
		return "", nil, fmt.Errorf("%w: a worker needs a name and at least one slot (got %s, %d)", ErrInvalid, job.Clip(name), slots)
	}
	if slots > MaxWorkerSlots {
		return "", nil, fmt.Errorf("%w: worker %s: %d slots: at most %d", ErrInvalid, job.Clip(name), slots, MaxWorkerSlots)
	}
	if err := label.Validate("name", name); err != nil {
		return "", nil, fmt.Errorf("%w: worker name: %v", ErrInvalid, err)
	}
	if err := validateLabels(labels); err != nil {
		return "", nil, fmt.Errorf("%w: worker %s: %v", ErrInvalid, name, err)
	}
	id, abandon, changed, err := f.sched.RegisterAs(p, name, labels, slots, running)
	if err != nil {
		return "", nil, err
	}
	f.logger.Info("worker registered", "worker", name, "labels", label.String(labels), "slots", slots,
		"reattached", len(running)-len(abandon), "abandoned", len(abandon))
	return id, abandon, f.persist(ctx, changed)
}

// Heartbeat keeps a session alive.
func (f *Fleet) Heartbeat(ctx context.Context, session string, running []scheduler.RunningJob, draining bool) ([]scheduler.RunningJob, bool, error) {
	cancel, drain, changed, err := f.sched.Heartbeat(session, running, draining)
	if err != nil {
		return nil, false, err
	}
	return cancel, drain, f.persist(ctx, changed)
}

// SetLabels replaces the labels of a session's worker.
func (f *Fleet) SetLabels(session string, labels map[string]string) error {
	if err := validateLabels(labels); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return f.sched.SetLabels(session, labels)
}

// Bounds on what a worker registers: many chroots make many labels, but
// not thousands.
const (
	MaxWorkerLabels     = 256
	MaxWorkerLabelBytes = 64 << 10
	MaxWorkerSlots      = 1024
)

// validateLabels checks a worker's labels; a value may name alternatives
// (a|b).
func validateLabels(labels map[string]string) error {
	if len(labels) > MaxWorkerLabels {
		return fmt.Errorf("%d labels: at most %d", len(labels), MaxWorkerLabels)
	}
	total := 0
	for k, v := range labels {
		if len(k) > job.MaxLabelLength {
			return fmt.Errorf("label %s: keys are at most %d bytes", job.Clip(k), job.MaxLabelLength)
		}
		if len(v) > MaxWorkerLabelBytes {
			return fmt.Errorf("label %q: value of %d bytes: at most %d", k, len(v), MaxWorkerLabelBytes)
		}
		total += len(k) + len(v)
	}
	if total > MaxWorkerLabelBytes {
		return fmt.Errorf("labels of %d bytes: at most %d", total, MaxWorkerLabelBytes)
	}
	for k, vs := range labels {
		for _, v := range strings.Split(vs, "|") {
			if err := label.Validate(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// SessionWorker names the worker a live session belongs to.
func (f *Fleet) SessionWorker(session string) (string, bool) { return f.sched.SessionWorker(session) }

// Pull hands a worker a job, waiting up to wait.
func (f *Fleet) Pull(ctx context.Context, session string, wait time.Duration) (*job.Job, error) {
	j, err := f.sched.Pull(ctx, session, wait)
	if err != nil || j == nil {
		return nil, err
	}
	n := f.note(ctx, j.ID, fmt.Sprintf("attempt %d on worker %s", j.Attempt, j.Worker))
	if err := f.wrote(f.st.Write(ctx, []*job.Job{j}, []store.Note{n})); err != nil {
		// The assignment is not durable; the worker won't get it and the
		// heartbeat check re-queues it.
		return nil, fmt.Errorf("persist assignment of job %s: %w", j.ID, err)
	}
	if f.cfg.Started != nil && !j.QueuedAt.IsZero() {
		f.cfg.Started(f.cfg.Clock.Now().Sub(j.QueuedAt))
	}
	return j, nil
}

// Complete records the end of an attempt, exactly once. Every artifact it
// names must have been uploaded with that digest and size.
func (f *Fleet) Complete(ctx context.Context, session, jobID string, attempt int, o scheduler.Outcome) error {
	if err := f.sched.CheckAttempt(session, jobID, attempt); err != nil {
		return err
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(o.Artifacts))
	for _, a := range o.Artifacts {
		if err := artifactname.Check(a.Name); err != nil {
			return fmt.Errorf("%w: artifact name %q: %v", ErrInvalid, a.Name, err)
		}
		names = append(names, a.Name)
		if seen[a.Name] {
			return fmt.Errorf("%w: artifact %q named twice", ErrInvalid, a.Name)
		}
		seen[a.Name] = true
		st, err := os.Stat(f.casPath(a.SHA256))
		if err != nil || st.Size() != a.Size {
			return fmt.Errorf("%w: artifact %s (sha256 %s, %d bytes) was not uploaded", ErrInvalid, a.Name, a.SHA256, a.Size)
		}
	}
	if inner, outer := artifactname.Clash(names); inner != "" {
		return fmt.Errorf("%w: artifact %q is inside artifact %q: a file cannot also be a directory", ErrInvalid, inner, outer)
	}
	j, err := f.sched.Complete(session, jobID, attempt, o)
	if err != nil {
		return err
	}
	var notes []store.Note
	if j.State == job.Queued || j.State == job.Running {
		notes = append(notes, f.note(ctx, jobID, "infrastructure failure, re-queued: "+j.Reason))
	} else {
		notes = append(notes, f.note(ctx, jobID, fmt.Sprintf("finished: %s%s", j.State, reasonSuffix(j))))
	}
	n, err := f.compareRebuild(ctx, j)
	if err != nil {
		f.logger.Warn("compare rebuild", "job_id", jobID, "error", err)
	} else if n != nil {
		notes = append(notes, *n)
	}
	f.logger.Debug("job completed", "job_id", jobID, "state", j.State.String())
	return f.persist(ctx, []*job.Job{j}, notes...)
}

func reasonSuffix(j *job.Job) string {
	if j.Reason == "" {
		return ""
	}
	return " (" + j.Reason + ")"
}

// Goodbye ends a worker session.
func (f *Fleet) Goodbye(ctx context.Context, session string) error {
	changed := f.sched.Goodbye(session)
	var notes []store.Note
	for _, j := range changed {
		notes = append(notes, f.note(ctx, j.ID, j.Reason))
	}
	return f.persist(ctx, changed, notes...)
}

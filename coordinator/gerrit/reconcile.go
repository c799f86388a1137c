package gerrit

import (
	"context"
	"fmt"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/reconcile"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
)

// Reconcile compares every tracked branch of server with its head and
// queues a release build for each head not yet built or queued (see the
// reconcile package).
func (in *Intake) Reconcile(ctx context.Context, serverName string) error {
	s := in.servers[serverName]
	if s == nil {
		return fmt.Errorf("reconcile: no gerrit server %q", serverName)
	}
	return s.reconciler.Once(ctx)
}

func (in *Intake) newReconciler(s *server) *reconcile.Reconciler {
	return reconcile.New(reconcile.Config{
		Server: s.cfg.Name, URL: func(p string) string { return in.gitURL(s, p) }, Git: in.git,
		Interval: in.cfg.ReconcileInterval, Logger: in.logger,
		Runs: in.metrics.reconciles, Queued: in.metrics.reconcileQueued,
	}, reconcileTarget{in: in, s: s})
}

func (in *Intake) triggerReconcile(s *server) { s.reconciler.Trigger() }

// reconcileTarget is one server's branches as the reconciler sees them.
type reconcileTarget struct {
	in *Intake
	s  *server
}

// Tracked lists the branches an event named since (gerrit_heads) and those
// the configuration tracks from the start.
func (t reconcileTarget) Tracked(ctx context.Context) ([]record.Head, error) {
	name := t.s.cfg.Name
	tracked, err := t.in.store.Heads(ctx, name)
	if err != nil {
		return nil, err
	}
	known := map[[2]string]bool{}
	for _, h := range tracked {
		known[[2]string{h.Project, h.Branch}] = true
	}
	for _, tr := range t.in.cfg.Track {
		if tr.Server != name {
			continue
		}
		for _, b := range tr.Branches {
			if k := [2]string{tr.Project, b}; !known[k] {
				known[k] = true
				tracked = append(tracked, record.Head{Project: tr.Project, Branch: b})
			}
		}
	}
	return tracked, nil
}

// Queue queues a release build of the branch at rev, holding the
// branch's order key as the decider does, unless the revision was built
// or queued or no rule maps the branch.
func (t reconcileTarget) Queue(ctx context.Context, project, branch, rev string) (bool, error) {
	in, s := t.in, t.s
	key := decide.BranchKey(s.cfg.Name, project, branch)
	if err := in.keys.lock(ctx, key); err != nil {
		return false, err
	}
	defer in.wakeDecider() // events of the branch may have waited for the key
	defer in.keys.unlock(key)
	if _, dup, err := in.store.ReleaseQueued(ctx, s.cfg.Name, project, branch, rev); err != nil || dup {
		return false, err
	}
	plan, ok, err := in.decider.Rules.Resolve(project, branch)
	if err != nil || !ok {
		return false, err
	}
	ev := event.Event{Type: "reconcile", Project: project, Branch: branch, RefName: "refs/heads/" + branch, NewRev: rev, Revision: rev}
	return true, in.queueRelease(ctx, s, stored{Event: ev}, plan, rev, "", "reconcile")
}

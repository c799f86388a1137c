package gerrit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/gerrit/transport"
)

// Events are accepted first and decided after. accept writes an event
// down (the webhook answers and the stream reads on once it is stored);
// the decider then decides the stored events: mapping, branch-head
// lookups, de-duplication, supersede and queueing. Decisions on one
// change, or on one branch, run one at a time in the order the events
// arrived; others run side by side, so a slow git server delays only the
// events that need it. A decision that fails is tried again later, and
// what is not decided when the coordinator stops is decided after it
// starts again.

// Decider limits.
const (
	// deciders is how many decisions run at once.
	deciders = 8
	// maxAttempts is how often a decision is tried. The last attempt
	// makes do without what could not be read (a release build of the
	// event's revision when the branch head cannot be read).
	maxAttempts = 6
	// pendingPage is how many undecided events the decider reads at once.
	pendingPage = 1000
)

// retryAfter is the wait before attempt n+1 (n >= 1): the first wait,
// doubling up to 5 minutes.
func (in *Intake) retryAfter(n int) time.Duration {
	d := in.decideRetry << min(n-1, 6)
	return min(d, 5*time.Minute)
}

// accept parses stream lines or webhook bodies and writes them down, in
// one transaction, to be decided. Noise, which needs nothing but the
// event to be decided, is written down decided. Malformed events are
// refused: the error returned wraps event.ErrMalformed (or event.ErrUnsupported) when
// every line was, and is a store error when nothing could be written.
func (in *Intake) accept(ctx context.Context, s *server, lines [][]byte, via string) error {
	var batch []record.Accepted
	var noise []event.Event
	var bad error
	for _, line := range lines {
		ev, err := event.ParseEvent(line)
		if err == nil {
			err = ev.CheckNames()
		}
		if err != nil {
			if event.Refused(err) {
				in.metrics.malformed.WithLabelValues(s.cfg.Name).Inc()
				in.logger.Warn("refusing event", "server", s.cfg.Name, "via", via, "error", err, "line", transport.Truncate(line, 2048))
			}
			bad = err
			continue
		}
		a := record.Accepted{Event: recordOf(s, stored{Event: ev}, in.now()), Via: via, Body: line, OrderKey: decide.OrderKey(s.cfg.Name, ev)}
		if reason := in.decider.Noise(decide.Server{Name: s.cfg.Name, User: s.cfg.User}, ev); reason != "" {
			a.Event.Action, a.Event.Reason, a.Body = decide.ActionNoise, reason, nil
			noise = append(noise, ev)
		}
		batch = append(batch, a)
	}
	if len(batch) == 0 {
		return bad
	}
	if _, err := in.store.Accept(ctx, batch); err != nil {
		return err
	}
	in.metrics.accepted.WithLabelValues(s.cfg.Name, via).Add(float64(len(batch)))
	for _, ev := range noise {
		in.countNoise(s, ev)
	}
	if len(noise) < len(batch) {
		in.wakeDecider()
	}
	return in.maybePrune(ctx)
}

func (in *Intake) wakeDecider() {
	select {
	case in.decideWake <- struct{}{}:
	default:
	}
}

// runDecider decides accepted events until ctx ends.
func (in *Intake) runDecider(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, deciders)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next, err := in.dispatch(ctx, slots, &wg)
		if err != nil && ctx.Err() == nil {
			in.logger.Error("reading undecided events failed", "error", err)
			next = in.now().Add(time.Second)
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(next.Sub(in.now()), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-in.decideWake:
		case <-timer.C:
		}
	}
}

// dispatch starts the decisions that may run now: the oldest undecided
// event of each order key, when it is due, its key is free and a slot is.
// It returns when the next retry is due (zero when none is waiting).
func (in *Intake) dispatch(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) (time.Time, error) {
	rows, err := in.store.Pending(ctx, pendingPage)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	first := map[string]bool{}
	now := in.now()
	for _, r := range rows {
		key := r.OrderKey
		if key == "" {
			key = fmt.Sprintf("event\x00%d", r.EventID)
		}
		if first[key] {
			continue // an older event of the key comes first
		}
		first[key] = true
		if r.NextTry.After(now) {
			if next.IsZero() || r.NextTry.Before(next) {
				next = r.NextTry
			}
			continue
		}
		if !in.keys.tryLock(key) {
			continue // being decided; its end wakes the decider
		}
		select {
		case slots <- struct{}{}:
		default:
			in.keys.unlock(key)
			return next, nil // a slot's end wakes the decider
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.decideOne(ctx, r)
			in.keys.unlock(key)
			<-slots
			in.wakeDecider()
		}()
	}
	if len(rows) == pendingPage && next.IsZero() {
		next = now.Add(time.Second)
	}
	return next, nil
}

// decideOne decides one accepted event, or records why it could not and
// when it is tried again.
func (in *Intake) decideOne(ctx context.Context, r record.Pending) {
	log := in.logger.With("server", r.Server, "event_id", r.EventID)
	s := in.servers[r.Server]
	body, _, ok, err := in.store.Body(ctx, r.EventID)
	if err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			log.Error("reading event failed", "error", err)
		}
		return
	}
	attempt := r.Attempts + 1
	var ev stored
	if s == nil {
		err = fmt.Errorf("gerrit server %q is no longer configured", r.Server)
		attempt = maxAttempts
	} else if ev.Event, err = event.ParseEvent(body); err == nil {
		ev.id, ev.lastTry = r.EventID, attempt >= maxAttempts
		err = in.handle(ctx, s, ev)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		return // stopping: decided after the restart
	}
	// The decision is recorded also when ctx ends meanwhile.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if errors.Is(err, ErrRefused) {
		log.Warn("build refused", "error", err)
		in.metrics.events.WithLabelValues(r.Server, ev.Type, decide.ActionRefused).Inc()
		rec := recordOf(s, ev, in.now())
		rec.Action, rec.Reason = decide.ActionRefused, err.Error()
		if _, err := in.store.RecordEvent(wctx, rec); err != nil {
			log.Error("recording the refusal failed", "error", err)
		}
		return
	}
	if attempt >= maxAttempts {
		log.Error("deciding event failed; giving up", "attempts", attempt, "error", err)
		in.metrics.events.WithLabelValues(r.Server, ev.Type, decide.ActionError).Inc()
		rec := record.Event{ID: r.EventID, Type: ev.Type, Project: ev.Project, Branch: ev.Branch, Change: ev.Change,
			PatchSet: ev.PatchSet, Revision: eventRevision(ev.Event), Action: decide.ActionError,
			Reason: fmt.Sprintf("gave up after %d attempts: %v", attempt, err)}
		if _, err := in.store.RecordEvent(wctx, rec); err != nil {
			log.Error("recording the failure failed", "error", err)
		}
		return
	}
	wait := in.retryAfter(attempt)
	next := in.now().Add(wait)
	log.Warn("deciding event failed; trying again", "attempt", attempt, "wait", wait, "error", err)
	in.metrics.retries.WithLabelValues(r.Server).Inc()
	reason := fmt.Sprintf("attempt %d of %d failed: %v; trying again at %s", attempt, maxAttempts, err, next.UTC().Format(time.RFC3339))
	if err := in.store.FailAttempt(wctx, r.EventID, attempt, next, reason); err != nil {
		log.Error("recording the failed attempt failed", "error", err)
	}
}

// keyLocks are locks by name.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// tryLock takes key if it is free.
func (k *keyLocks) tryLock(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.held[key]; ok {
		return false
	}
	if k.held == nil {
		k.held = map[string]chan struct{}{}
	}
	k.held[key] = make(chan struct{})
	return true
}

// lock waits for key and takes it.
func (k *keyLocks) lock(ctx context.Context, key string) error {
	for {
		k.mu.Lock()
		ch, ok := k.held[key]
		k.mu.Unlock()
		if !ok && k.tryLock(key) {
			return nil
		}
		if ok {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func (k *keyLocks) unlock(key string) {
	k.mu.Lock()
	ch := k.held[key]
	delete(k.held, key)
	k.mu.Unlock()
	close(ch)
}

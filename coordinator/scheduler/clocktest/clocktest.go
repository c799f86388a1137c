// Package clocktest is a fake scheduler.Clock for tests: its time moves only
// when the test advances it, and a test can wait until something waits on
// it (a long poll has started its timer) instead of sleeping.
package clocktest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Clock is a fake clock with the methods of scheduler.Clock. The zero value is not usable: make one
// with New.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*timer]struct{}
	changed chan struct{} // closed and replaced when timers change
}

// New makes a clock that reads now until advanced.
func New(now time.Time) *Clock {
	return &Clock{now: now, timers: map[*timer]struct{}{}, changed: make(chan struct{})}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the time on by d and fires the timers that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			delete(c.timers, t)
		}
	}
	c.signal()
}

// NewTimer starts a timer that fires when the clock is advanced to d from
// now.
func (c *Clock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t.ch, t.stop
	}
	c.timers[t] = struct{}{}
	c.signal()
	return t.ch, t.stop
}

// Timers is the number of timers started and neither fired nor stopped.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitTimers blocks until exactly n timers are pending, or ctx ends.
func (c *Clock) WaitTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		got, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if got == n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%d timers pending, want %d: %w", got, n, ctx.Err())
		}
	}
}

// signal wakes WaitTimers; c.mu is held.
func (c *Clock) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

type timer struct {
	c  *Clock
	at time.Time
	ch chan time.Time
}

func (t *timer) stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if _, ok := t.c.timers[t]; !ok {
		return false
	}
	delete(t.c.timers, t)
	t.c.signal()
	return true
}

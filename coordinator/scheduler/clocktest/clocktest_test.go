package clocktest

import (
	"context"
	"testing"
	"time"
)

func TestTimersFireWhenDueAndStop(t *testing.T) {
	t.Parallel()
	c := New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fired, _ := c.NewTimer(time.Minute)
	_, stop := c.NewTimer(time.Minute)
	if err := c.WaitTimers(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if !stop() || stop() {
		t.Fatal("stop must stop a pending timer once")
	}
	c.Advance(time.Minute - time.Nanosecond)
	select {
	case <-fired:
		t.Fatal("timer fired early")
	default:
	}
	c.Advance(time.Nanosecond)
	select {
	case at := <-fired:
		if !at.Equal(c.Now()) {
			t.Errorf("fired at %v, want %v", at, c.Now())
		}
	default:
		t.Fatal("timer did not fire when due")
	}
	if err := c.WaitTimers(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

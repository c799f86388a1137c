package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// inOrder hands results over in index order, never reads more than window
// ahead of them, and after a failure gives every result read to discard.
func TestInOrder(t *testing.T) {
	t.Parallel()
	const n = 2000
	boom := errors.New("boom")
	cases := []struct {
		name            string
		workers, window int
		readFails       int // index whose read fails, -1 none
		useFails        int // index at which use fails, -1 none
	}{
		{"all", 3, 8, -1, -1},
		{"one worker", 1, 1, -1, -1},
		{"window below workers", 4, 2, -1, -1},
		{"read fails mid-way", 3, 8, 1000, -1},
		{"use fails mid-way", 3, 8, -1, 700},
		{"first read fails", 2, 4, 0, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu       sync.Mutex
				live     int // read and not yet used or discarded
				maxLive  int
				reads    atomic.Int64
				next     int // index use expects
				used     int
				discards int
				outOfOrd []string
			)
			read := func(ctx context.Context, i int) (*int, error) {
				reads.Add(1)
				mu.Lock()
				live++
				maxLive = max(maxLive, live)
				mu.Unlock()
				v := i
				if i == tc.readFails {
					return &v, boom
				}
				return &v, nil
			}
			use := func(i int, v *int, err error) error {
				mu.Lock()
				defer mu.Unlock()
				live--
				used++
				if i != next || v == nil || *v != i {
					outOfOrd = append(outOfOrd, fmt.Sprintf("use(%d) after %d", i, next-1))
				}
				next = i + 1
				if err != nil {
					return err
				}
				if i == tc.useFails {
					return boom
				}
				return nil
			}
			discard := func(v *int) {
				mu.Lock()
				defer mu.Unlock()
				discards++
				if v != nil {
					live--
				}
			}
			err := inOrder(context.Background(), n, tc.workers, tc.window, read, use, discard)
			fails := max(tc.readFails, tc.useFails)
			switch {
			case fails < 0 && err != nil:
				t.Fatalf("inOrder: %v", err)
			case fails >= 0 && !errors.Is(err, boom):
				t.Fatalf("inOrder = %v, want %v", err, boom)
			}
			if len(outOfOrd) > 0 {
				t.Errorf("out of order: %v", outOfOrd[:min(5, len(outOfOrd))])
			}
			if bound := max(tc.window, tc.workers); maxLive > bound {
				t.Errorf("%d results read ahead at once, want at most %d", maxLive, bound)
			}
			if live != 0 {
				t.Errorf("%d results read were neither used nor discarded", live)
			}
			if used+discards != n {
				t.Errorf("use %d + discard %d calls, want %d", used, discards, n)
			}
			if fails >= 0 {
				if used != fails+1 {
					t.Errorf("use called %d times, want %d (up to the failure)", used, fails+1)
				}
				if r := reads.Load(); r > int64(fails+1+max(tc.window, tc.workers)) {
					t.Errorf("%d reads after a failure at %d with window %d", r, fails, tc.window)
				}
			} else if reads.Load() != n {
				t.Errorf("%d reads, want %d", reads.Load(), n)
			}
		})
	}
}

// A canceled context ends inOrder with its error, through use.
func TestInOrderCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	read := func(ctx context.Context, i int) (int, error) {
		if i == 10 {
			cancel()
		}
		return i, ctx.Err()
	}
	use := func(_ int, _ int, err error) error { return err }
	if err := inOrder(ctx, 1000, 2, 4, read, use, func(int) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("inOrder = %v, want %v", err, context.Canceled)
	}
}

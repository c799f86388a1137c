package repo

import (
	"context"
	"sync"
)

// inOrder calls read(ctx, i) for every i in [0, n) on up to workers
// goroutines and hands each result to use in index order, as soon as it
// and those before it are read. At most window results (at least workers)
// are read and not yet through use, the one in use included: a caller
// that does not keep what use receives holds no more than window of them
// at once, however large n is.
//
// The first error use returns stops the work: the reads still running see
// ctx canceled, those not started are not made, and every result read but
// not given to use goes to discard (a zero T for the reads not made).
// inOrder returns that error, after every goroutine it started has ended.
func inOrder[T any](ctx context.Context, n, workers, window int,
	read func(ctx context.Context, i int) (T, error),
	use func(i int, v T, err error) error,
	discard func(v T),
) error {
	if n == 0 {
		return nil
	}
	workers = max(1, min(workers, n))
	window = max(window, workers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	// Result i goes to slot i%window; it is free by then, as i is handed
	// out only once result i-window has been used (a token each).
	slots := make([]chan result, window)
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	tokens := make(chan struct{}, window)
	jobs := make(chan int)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		for i := range n {
			tokens <- struct{}{}
			jobs <- i
		}
	})
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				var r result
				if r.err = ctx.Err(); r.err == nil {
					r.v, r.err = read(ctx, i)
				}
				slots[i%window] <- r
			}
		})
	}
	var stop error
	for i := range n {
		r := <-slots[i%window]
		if stop != nil {
			discard(r.v)
		} else if err := use(i, r.v, r.err); err != nil {
			stop = err
			cancel()
		}
		<-tokens
	}
	wg.Wait()
	return stop
}

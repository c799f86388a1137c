// Package reconnect is what workers and the coordinator agree on about
// coming back after the coordinator was unreachable: how long a worker
// waits at most between two tries, and so how soon after the coordinator
// is reachable again the worker has registered again. The coordinator
// keeps a restarted job's attempt for its worker at least that long.
package reconnect

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// MaxDelay is the longest a worker waits between two tries to reach the
// coordinator: between gRPC's connection attempts, and between the
// agent's retries of a call or of its registration.
const MaxDelay = 5 * time.Second

// connectTimeout bounds one connection attempt (a host that drops
// packets rather than refusing).
const connectTimeout = 5 * time.Second

// Within is how soon a worker has registered again once the coordinator
// is reachable: a connection attempt already under way, one gRPC delay,
// one retry delay of the agent, and the calls themselves.
const Within = connectTimeout + 2*MaxDelay + 2*time.Second

// ConnectParams are the gRPC connection parameters a worker dials with:
// gRPC's default backoff grows to two minutes, which would keep a worker
// away long after a restarted coordinator gave up its jobs.
func ConnectParams() grpc.ConnectParams {
	const jitter = 0.2
	return grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  500 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     jitter,
			// With the jitter added (x1.2), a delay stays within MaxDelay.
			MaxDelay: MaxDelay * 5 / 6,
		},
		MinConnectTimeout: connectTimeout,
	}
}

// Next returns the retry delay after d: doubled, at most MaxDelay.
func Next(d time.Duration) time.Duration {
	return min(2*d, MaxDelay)
}

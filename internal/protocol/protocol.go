// Package protocol is the version of the protocol between workers and the
// coordinator (proto/kiln/worker/v1), which both sides build in: a worker
// sends it when it registers and the coordinator refuses a version it does
// not speak, naming both and what to do, instead of failing later in ways
// nobody can read.
package protocol

import (
	"errors"
	"fmt"
)

// Version is the protocol version this build speaks. Raise it when a
// change to worker.proto means an older peer would misunderstand the
// newer one (a field whose meaning changed, a call the other side must
// make), and raise Oldest with it when the coordinator can no longer serve
// older workers.
const Version = 1

// Oldest is the oldest worker protocol version the coordinator serves.
const Oldest = 1

// ErrVersion marks a worker whose protocol version the coordinator does
// not speak.
var ErrVersion = errors.New("protocol version not supported")

// Check says whether the coordinator serves a worker that speaks version
// v. A worker built before protocol versions existed sends 0.
func Check(v uint32) error {
	switch {
	case v < Oldest:
		return fmt.Errorf("%w: the worker speaks protocol version %d and this coordinator speaks %d (it serves workers of versions %d to %d): upgrade the worker to the coordinator's release",
			ErrVersion, v, Version, Oldest, Version)
	case v > Version:
		return fmt.Errorf("%w: the worker speaks protocol version %d and this coordinator speaks %d (it serves workers of versions %d to %d): upgrade the coordinator, or run a worker of the coordinator's release",
			ErrVersion, v, Version, Oldest, Version)
	}
	return nil
}

// Package cmdline holds what the command lines of Kiln's four binaries
// share: the exit codes and their one error type, the settings layering
// (built-in defaults < config file < KILN_* environment < flags), and the
// help text and man page, all generated from one declaration per setting
// through kong.
//
// Packages that do the work never import it: a binary's command line turns
// flags into config structs and calls plain functions.
package cmdline

import (
	"errors"
	"fmt"
)

// Exit codes, the same for every binary.
const (
	// ExitOK: done.
	ExitOK = 0
	// ExitFailed: the job's (or the package's) own fault.
	ExitFailed = 1
	// ExitUsage: bad usage: a flag, an argument or a config file is wrong.
	ExitUsage = 2
	// ExitInfra: the infrastructure failed; worth a retry.
	ExitInfra = 3
)

// ExitError is an error with the exit code it ends the process with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usage is bad usage (exit 2), formatted as fmt.Errorf does.
func Usage(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// UsageError marks err as bad usage unless it already carries an exit code.
func UsageError(err error) error { return withCode(err, ExitUsage) }

// Infra marks err as an infrastructure failure (exit 3) unless it already
// carries an exit code.
func Infra(err error) error { return withCode(err, ExitInfra) }

// Failed is the job's own failure (exit 1) with the message msg.
func Failed(err error) error { return withCode(err, ExitFailed) }

func withCode(err error, code int) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: code, Err: err}
}

// Code is the exit code for err: 0 for nil, the code an ExitError carries,
// and otherwise unclassified (what the binary's errors mean by default).
func Code(err error, unclassified int) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return unclassified
}

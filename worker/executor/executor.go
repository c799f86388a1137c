// Package executor defines how a worker runs one job: the contract between
// the worker's agent (which talks to the coordinator) and the ways of running
// work (a shell step on the host, a containerd buildroot, a package build).
package executor

import (
	"context"
	"errors"
	"io"
	"time"
)

// Job is one attempt of one job, as the agent hands it to an executor.
type Job struct {
	ID      string
	Attempt int
	// Command and arguments (command jobs).
	Command []string
	// Env as KEY=VALUE, added to the executor's base environment.
	Env []string
	// WorkDir is a fresh, empty host directory owned by this attempt. The
	// executor runs the job there (or bind-mounts it) and artifacts are
	// collected from it afterwards.
	WorkDir string
	// Labels the job asked for; "target" names the buildroot to use.
	Labels map[string]string
	// Timeout is the hard limit; 0 means none beyond the context.
	Timeout time.Duration
	// Build is set for package builds.
	Build *PackageBuild
}

// Source is one git repository at an exact commit.
type Source struct {
	URL    string
	Commit string
	Ref    string
	// Role is "combined", "code" or "packaging".
	Role string
}

// Package is a package name and version as installed in a buildroot.
type Package struct {
	Name, Version, Architecture string
}

// PackageBuild describes a package build job.
type PackageBuild struct {
	Release, Target, Package string
	Sources                  []Source
	Recipe                   string
	Revision                 int64
	// VersionSuffix is appended to the source version, e.g. "~mos9.0+2".
	VersionSuffix string
	// Pinned, when set, are the exact build dependencies to install.
	Pinned []Package
	// Sealed: the release is sealed, so the build draws only from the
	// release's own repositories and its chroot is made from the release's
	// base; no upstream mirror is contacted.
	Sealed bool
	// Profiles and Options are Debian's DEB_BUILD_PROFILES and
	// DEB_BUILD_OPTIONS for the build.
	Profiles, Options []string
}

// Record is what a package build did.
type Record struct {
	Sources      []Source
	ChrootDigest string
	Installed    []Package
	Commands     []string
	Version      string
	// SourceLayout is how the source was found: its layout and where the
	// upstream tarball came from.
	SourceLayout string
}

// Result is how a job ended when the executor could run it.
type Result struct {
	// ExitCode of the job's command; non-zero means the job failed.
	ExitCode int
	// Reason explains a failure for people: "exit status 2", "killed: out
	// of memory", "stopped: no output for 10m0s", "time limit 1h0m0s reached".
	Reason string
	// Record is set by package builds.
	Record *Record
}

// Failed reports whether the job itself failed.
func (r Result) Failed() bool { return r.ExitCode != 0 || r.Reason != "" }

// Executor runs jobs. Run returns a nil error and a Result when the job ran
// (successfully or not: a build failure is the job's fault and not retried).
// A non-nil error means the infrastructure failed (containerd unreachable,
// chroot missing, source fetch failed) and the coordinator may retry the job
// elsewhere. Output goes to log as it is produced.
type Executor interface {
	Run(ctx context.Context, job Job, log io.Writer) (Result, error)
}

// ErrUnsupported is returned when an executor cannot run a kind of job.
var ErrUnsupported = errors.New("job kind not supported by this executor")

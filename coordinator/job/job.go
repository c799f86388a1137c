// Package job holds the coordinator's domain types for jobs: what a client
// asks for, what state a job is in, and what it produced.
package job

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/label"
)

// State is where a job is in its life.
type State int

// Job states. Queued and Running are live; the rest are final.
const (
	Queued State = iota + 1
	Running
	Succeeded
	Failed
	Error
	Canceled
)

var stateNames = map[State]string{
	Queued: "queued", Running: "running", Succeeded: "succeeded",
	Failed: "failed", Error: "error", Canceled: "canceled",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState parses a state name as String prints it.
func ParseState(s string) (State, error) {
	for k, v := range stateNames {
		if v == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("job state %q: use queued, running, succeeded, failed, error or canceled", s)
}

// Final reports whether the state is an end state.
func (s State) Final() bool { return s >= Succeeded }

// Kind says what a worker does with a job.
type Kind int

// Job kinds.
const (
	Command Kind = iota + 1
	PackageBuild
)

func (k Kind) String() string {
	switch k {
	case Command:
		return "command"
	case PackageBuild:
		return "package-build"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Source is one git repository at an exact commit.
type Source struct {
	URL    string `json:"url"`
	Commit string `json:"commit"`
	Ref    string `json:"ref,omitempty"`
	// Role is combined, code or packaging.
	Role string `json:"role"`
}

// Package is a package name and version.
type Package struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture,omitempty"`
}

// Build describes a package build.
type Build struct {
	Release       string    `json:"release"`
	Target        string    `json:"target"`
	Package       string    `json:"package"`
	Sources       []Source  `json:"sources"`
	Recipe        string    `json:"recipe,omitempty"`
	Publish       bool      `json:"publish,omitempty"`
	Revision      int64     `json:"revision,omitempty"`
	VersionSuffix string    `json:"version_suffix,omitempty"`
	Pinned        []Package `json:"pinned,omitempty"`
	// Sealed is set by the coordinator when the release was sealed at
	// submission: the build draws only from the release itself. It is not
	// part of the build key.
	Sealed bool `json:"sealed,omitempty"`
	// SealedChroot is the chroot digest the build asked for (its label
	// chroot/<target>) when sealing dropped the label, the worker making
	// that chroot from the release's base: unsealing gives it back.
	SealedChroot string `json:"sealed_chroot,omitempty"`
	// Profiles and Options are DEB_BUILD_PROFILES and DEB_BUILD_OPTIONS.
	Profiles []string `json:"profiles,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Spec is what a client asks for.
type Spec struct {
	Kind          Kind              `json:"kind"`
	Labels        map[string]string `json:"labels,omitempty"`
	Command       []string          `json:"command,omitempty"`
	Env           []string          `json:"env,omitempty"`
	ArtifactGlobs []string          `json:"artifact_globs,omitempty"`
	Priority      int32             `json:"priority,omitempty"`
	FairnessGroup string            `json:"fairness_group,omitempty"`
	SupersedeKey  string            `json:"supersede_key,omitempty"`
	Force         bool              `json:"force,omitempty"`
	Timeout       time.Duration     `json:"timeout,omitempty"`
	Build         *Build            `json:"build,omitempty"`
	Origin        string            `json:"origin,omitempty"`
}

// Artifact is a file a job produced.
type Artifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Record is what a package build did.
type Record struct {
	Sources      []Source   `json:"sources,omitempty"`
	ChrootDigest string     `json:"chroot_digest,omitempty"`
	Installed    []Package  `json:"installed,omitempty"`
	Commands     []string   `json:"commands,omitempty"`
	Artifacts    []Artifact `json:"artifacts,omitempty"`
	Version      string     `json:"version,omitempty"`
	// SourceLayout is how the source was found and where the upstream
	// tarball came from.
	SourceLayout string `json:"source_layout,omitempty"`
}

// Job is a job as the coordinator keeps it.
type Job struct {
	ID         string
	Seq        int64
	Spec       Spec
	State      State
	BuildKey   string
	Rebuild    bool
	RebuildOf  string
	Verify     bool
	Attempt    int
	Worker     string
	ExitCode   int
	Reason     string
	Artifacts  []Artifact
	Record     *Record
	Differing  []string
	Publish    string
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// QueuedAt is when the scheduler last queued the job; it lives in
	// memory only, for the queue-to-start metric.
	QueuedAt time.Time
	// Version orders the changes of a job: the store keeps the highest, so
	// a write racing behind a newer one cannot bring back an older state.
	Version int64
}

// Clone returns a deep enough copy for readers outside the scheduler.
func (j *Job) Clone() *Job {
	c := *j
	c.Artifacts = append([]Artifact(nil), j.Artifacts...)
	c.Differing = append([]string(nil), j.Differing...)
	return &c
}

// Limits on what a client may ask for.
const (
	MaxLabels      = 32
	MaxArgs        = 4096
	MaxArgBytes    = 256 << 10
	MaxGlobs       = 64
	MaxLabelLength = label.MaxLength
	// MaxTimeout bounds a job's time limit.
	MaxTimeout = 30 * 24 * time.Hour
)

// Validate checks a spec from an untrusted client; the error says what is
// wrong with which value.
func (s *Spec) Validate() error {
	switch s.Kind {
	case Command:
		if len(s.Command) == 0 {
			return fmt.Errorf("command job without a command: give the command after --")
		}
		if s.Build != nil {
			return fmt.Errorf("command job with a package build: choose one")
		}
	case PackageBuild:
		if s.Build == nil {
			return fmt.Errorf("package build job without build details")
		}
		if err := s.Build.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("job kind %d unknown: use command or package build", s.Kind)
	}
	if len(s.Labels) > MaxLabels {
		return fmt.Errorf("%d labels: at most %d", len(s.Labels), MaxLabels)
	}
	for k, v := range s.Labels {
		if err := label.Validate(k, v); err != nil {
			return err
		}
	}
	if len(s.Command) > MaxArgs {
		return fmt.Errorf("%d command arguments: at most %d", len(s.Command), MaxArgs)
	}
	n := 0
	for _, a := range append(append([]string(nil), s.Command...), s.Env...) {
		n += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument or environment entry %s contains a NUL byte", Clip(a))
		}
	}
	if n > MaxArgBytes {
		return fmt.Errorf("command and environment are %d bytes: at most %d", n, MaxArgBytes)
	}
	for _, e := range s.Env {
		if i := strings.IndexByte(e, '='); i <= 0 {
			return fmt.Errorf("environment entry %s: use KEY=VALUE", Clip(e))
		}
	}
	if len(s.ArtifactGlobs) > MaxGlobs {
		return fmt.Errorf("%d artifact globs: at most %d", len(s.ArtifactGlobs), MaxGlobs)
	}
	for _, g := range s.ArtifactGlobs {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("artifact glob %s: %w", Clip(g), err)
		}
		if err := CleanRelative(g); err != nil {
			return fmt.Errorf("artifact glob %s: %w", Clip(g), err)
		}
	}
	if s.Timeout < 0 {
		return fmt.Errorf("timeout %s is negative", s.Timeout)
	}
	if s.Timeout > MaxTimeout {
		return fmt.Errorf("timeout %s is over the limit of %s", s.Timeout.Truncate(time.Second), MaxTimeout)
	}
	return nil
}

// Clip quotes s for a message: whole when short, else its first bytes
// and its length, so that an error never echoes megabytes of input.
func Clip(s string) string {
	const keep = 40
	if len(s) <= keep {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:keep]), len(s))
}

// Validate checks a package build's details.
func (b *Build) Validate() error {
	for name, v := range map[string]string{"release": b.Release, "target": b.Target, "package": b.Package} {
		if v == "" {
			return fmt.Errorf("package build without a %s", name)
		}
		if err := label.Validate(name, v); err != nil {
			return fmt.Errorf("package build %s: %w", name, err)
		}
	}
	if len(b.Sources) == 0 || len(b.Sources) > 2 {
		return fmt.Errorf("package build with %d sources: give one (code and packaging) or two (code, packaging)", len(b.Sources))
	}
	for _, s := range b.Sources {
		if s.URL == "" || strings.ContainsAny(s.URL, "\n\r\x00 ") {
			return fmt.Errorf("source URL %s is empty or has spaces or control characters", Clip(s.URL))
		}
		if len(s.Commit) != 40 || strings.Trim(s.Commit, "0123456789abcdef") != "" {
			return fmt.Errorf("source %s commit %s: give the full 40-hex commit id", Clip(s.URL), Clip(s.Commit))
		}
		switch s.Role {
		case "combined", "code", "packaging":
		default:
			return fmt.Errorf("source %s role %s: use combined, code or packaging", Clip(s.URL), Clip(s.Role))
		}
	}
	return b.CheckProfiles()
}

// CheckProfiles checks the build profiles and options.
func (b *Build) CheckProfiles() error {
	for _, p := range b.Profiles {
		if !profileRE.MatchString(p) {
			return fmt.Errorf("build profile %q: use a Debian build profile name such as nocheck, nodoc or stage1", p)
		}
	}
	for _, o := range b.Options {
		if !buildOptionRE.MatchString(o) {
			return fmt.Errorf("build option %q: use NAME or NAME=VALUE as in DEB_BUILD_OPTIONS, e.g. parallel=4 or nostrip", o)
		}
	}
	return nil
}

var (
	profileRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	buildOptionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.+-]*(=[A-Za-z0-9_.+,:-]+)?$`)
)

// Key is the build key: a hash of the sources' exact commits, the release,
// target, package and recipe. The buildroot's contents are not part of it, so
// a changed build dependency never triggers a rebuild by itself.
func (b *Build) Key() string {
	srcs := append([]Source(nil), b.Sources...)
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Role+srcs[i].URL < srcs[j].Role+srcs[j].URL })
	h := sha256.New()
	fmt.Fprintf(h, "kiln-build-key-v1\x00%s\x00%s\x00%s\x00%s\x00", b.Release, b.Target, b.Package, b.Recipe)
	for _, s := range srcs {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", s.Role, s.URL, s.Commit)
	}
	// Only when set, so that the keys of builds without them stay as they
	// were.
	if len(b.Profiles) > 0 || len(b.Options) > 0 {
		profiles, options := slices.Sorted(slices.Values(b.Profiles)), slices.Sorted(slices.Values(b.Options))
		fmt.Fprintf(h, "profiles\x00%s\x00options\x00%s\x00", strings.Join(profiles, " "), strings.Join(options, " "))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CleanRelative checks that p is a relative, slash-separated path that stays
// inside its directory.
func CleanRelative(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path: give it relative to the work dir")
	case strings.ContainsAny(p, "\\\x00\n\r"):
		return fmt.Errorf("backslash or control character in path")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path escapes the work dir with a \"..\" component")
		}
	}
	return nil
}

// IsPackageFile reports whether an artifact is a binary or source package
// (or a source package's tarball or diff), as opposed to logs, .changes and
// .buildinfo, which record when and where a build ran.
func IsPackageFile(name string) bool {
	base := path.Base(name)
	for _, suf := range []string{".deb", ".udeb", ".ddeb", ".dsc", ".rpm"} {
		if strings.HasSuffix(base, suf) {
			return true
		}
	}
	return strings.Contains(base, ".tar.") || strings.HasSuffix(base, ".diff.gz")
}

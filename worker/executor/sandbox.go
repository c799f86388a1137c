package executor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// Paths and identities inside a buildroot, shared by the buildroot and the
// package builder.
const (
	// SandboxWorkDir is where the job's host work dir is bind-mounted.
	SandboxWorkDir = "/build"
	// BuildUser is the non-root user builds run as; BuildUID and BuildGID
	// are its ids inside every buildroot.
	BuildUser = "kiln"
	BuildUID  = 1000
	BuildGID  = 1000
)

// Step is one command run inside a sandbox.
type Step struct {
	Argv []string
	Env  []string
	// Dir inside the sandbox; SandboxWorkDir when empty.
	Dir string
	// Root runs the step as root (dependency installation); otherwise it
	// runs as BuildUser.
	Root bool
	// Network gives the step network access; build steps have none.
	Network bool
	// AllowHosts are the sources a Network step installs packages from,
	// as origins "http://host:port" or "https://host:port" (see
	// SourceHost), besides the target's own mirrors, which the buildroot
	// knows. Where the buildroot limits the dependency network to the
	// package sources, a Network step reaches only these, through an HTTP
	// proxy given to it in http_proxy and https_proxy: plain requests to
	// the http ones, tunnels to the https ones.
	AllowHosts []string
	// Timeout is the hard limit for this step; IdleTimeout stops it when it
	// prints nothing for that long. Zero means the sandbox's defaults.
	Timeout     time.Duration
	IdleTimeout time.Duration
}

// StepResult is how a step ended when it could run.
type StepResult struct {
	ExitCode int
	// Reason is set when the step was stopped or killed: "killed: out of
	// memory", "stopped: no output for 10m0s", "time limit 1h0m0s reached".
	Reason string
	// Packages are the package files (.deb, .udeb, .rpm) a Network step
	// or a bootstrap install obtained whole through the buildroot's
	// package source proxy, from the worker's package cache or from their
	// source, in the order they were served; their bytes are in the cache
	// under their SHA256. Empty for other steps, and where the dependency
	// network is the host's or the cache is off. Files fetched through
	// https tunnels are not seen (the step's log warns of them).
	Packages []PackageFile
}

// PackageFile is one package file a buildroot installed from, at the
// exact bytes it got.
type PackageFile struct {
	// URL it was requested from; empty for a chroot's own packages.
	URL string `json:"url,omitempty"`
	// Name is the file's name as the source gave it, unescaped, e.g.
	// zlib1g_1:1.2.13.dfsg-1_amd64.deb. It comes from the package source
	// and the build: treat it as untrusted.
	Name string `json:"name"`
	// SHA256 of the file, lower-case hex.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// CacheHit: served from the worker's package cache, not the source.
	CacheHit bool `json:"cache_hit,omitempty"`
}

// Failed reports whether the step failed.
func (r StepResult) Failed() bool { return r.ExitCode != 0 || r.Reason != "" }

// Sandbox is one clean, throw-away buildroot for one job: every step runs in
// the same writable overlay, which is gone after Close.
type Sandbox interface {
	// Exec runs a step. A non-nil error is an infrastructure failure.
	Exec(ctx context.Context, step Step, log io.Writer) (StepResult, error)
	// ChrootDigest names the read-only base the sandbox was made from.
	ChrootDigest() string
	// Close removes everything the sandbox made, whatever happened.
	Close(ctx context.Context) error
}

// SandboxOpener makes sandboxes for a target, with workDir (a host
// directory) mounted at SandboxWorkDir.
type SandboxOpener interface {
	Open(ctx context.Context, target, workDir string) (Sandbox, error)
}

// BaseSource is a release's base repository (every package its buildroots
// installed, published and signed by the publisher) as the worker host
// reaches it: a sealed release's chroots are made from it alone.
type BaseSource struct {
	Release string
	// URL of the base repository: for deb targets the directory holding
	// dists/ and pool/, for rpm targets dnf's baseurl.
	URL string
	// SignedBy is the host path of the operator's public key that signs
	// the repository.
	SignedBy string
}

// SealedOpener makes sandboxes on a target's chroot made from a release's
// base, making that chroot first when needed (its progress goes to log).
type SealedOpener interface {
	OpenSealed(ctx context.Context, target string, src BaseSource, workDir string, log io.Writer) (Sandbox, error)
}

// SourceHost returns the origin a package source URL is fetched from,
// "http://host:port" or "https://host:port" (port 80 or 443 when the URL
// gives none, the host in lower case), for Step.AllowHosts. ok is false
// for URLs that need no network (file:, copy:, cdrom:) and for anything
// that is not an http or https URL with a host.
func SourceHost(rawURL string) (origin string, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "", false
	}
	port := u.Port()
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
	default:
		return "", false
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), true
}

// ErrNoBootstrap says a sandbox's packages cannot be installed from the
// worker host (its target is not an RPM distribution made with dnf).
var ErrNoBootstrap = errors.New("the target is not made with method dnf: the worker host's dnf cannot install into it")

// RPMRepo is a dnf repository the worker host's dnf installs from into a
// buildroot, besides the target's own.
type RPMRepo struct {
	// Name is the repository id, letters, digits, '.', '_' and '-'.
	Name string
	// BaseURL as the worker host reaches it (http, https or file).
	BaseURL string
	// KeyFile is the host path of the repository's armored public key;
	// with it, dnf checks the packages and repomd.xml (gpgcheck and
	// repo_gpgcheck), without it nothing.
	KeyFile string
}

// BootstrapInstall is what the worker host's dnf installs into a
// buildroot: capabilities as rpm states them ("name", "name >= 1.0"), or
// exact name-[epoch:]version-release.arch of a pinned rebuild.
type BootstrapInstall struct {
	Packages []string
	Repos    []RPMRepo
}

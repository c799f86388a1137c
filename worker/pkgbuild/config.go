package pkgbuild

import (
	"errors"
	"fmt"
	"github.com/kiln-build/kiln/worker/executor"
	"net/mail"
	"path/filepath"
	"strings"
	"time"
)

// Config is the worker config file's `build:` section.
type Config struct {
	// CacheDir holds the worker's bare git repositories, one per source URL.
	CacheDir string `yaml:"cache_dir"`
	// DependencyTimeout limits phase 1 (installing build dependencies).
	DependencyTimeout time.Duration `yaml:"dependency_timeout"`
	// BuildTimeout limits phase 2 (the package build itself).
	BuildTimeout time.Duration `yaml:"build_timeout"`
	// IdleLimit stops a step that prints nothing for that long.
	IdleLimit time.Duration `yaml:"idle_limit"`
	// GitTimeout limits each git command run on the worker host.
	GitTimeout time.Duration `yaml:"git_timeout"`
	// GitProtocols are the git transports sources may use (git's
	// GIT_ALLOW_PROTOCOL); "file" covers local paths too. Narrow it to keep
	// sources from reading repositories on the worker host.
	GitProtocols []string `yaml:"git_protocols"`
	// Maintainer signs the changelog entry that carries the release
	// revision, as "Name <email>".
	Maintainer string `yaml:"maintainer"`
	// CaptureBase keeps, as the job's base/ artifacts, every package file
	// the buildroot was made from or installed in phase 1 (from the
	// worker's package cache), so that the release's base holds them.
	CaptureBase bool `yaml:"capture_base"`
	// Repositories are the release repositories build dependencies come
	// from, besides the target's pinned upstream base.
	Repositories []Repository `yaml:"repositories"`
}

// Repository is one release's package repository for one target, as its
// mirror serves it.
type Repository struct {
	Release string `yaml:"release"`
	// Target is the target name (e.g. "bookworm/amd64"); empty means every
	// target of the release.
	Target string `yaml:"target"`
	// Apt is a one-line apt source for deb targets, e.g.
	// "deb [signed-by=/etc/kiln/mos.asc] http://127.0.0.1:8080/mos-9.0 bookworm main".
	// A signed-by path names a key file on the worker host, handed into
	// the buildroot like KeyFile.
	Apt string `yaml:"apt"`
	// BaseURL is a dnf repository base URL for rpm targets.
	BaseURL string `yaml:"baseurl"`
	// KeyFile is the OpenPGP public key (armored or binary) on the worker
	// host that signs the repository. The worker copies its public parts
	// into the job's work dir; apt (signed-by) and dnf (gpgcheck,
	// repo_gpgcheck, gpgkey) verify the repository with it inside the
	// buildroot.
	KeyFile string `yaml:"key_file"`
	// BaseApt and BaseBaseURL name the release's base repository (every
	// package its buildroots installed, published beside it by the
	// publisher, signed with the same key), e.g.
	// "deb http://127.0.0.1:8080/mos-9.0-bookworm-base bookworm main".
	// A sealed release's chroots are made from it and its builds draw
	// from it and the release repository alone.
	BaseApt     string `yaml:"base_apt"`
	BaseBaseURL string `yaml:"base_baseurl"`
}

// DefaultConfig returns the defaults a config file overrides.
func DefaultConfig() Config {
	return Config{
		CacheDir:          "/var/cache/kiln/git",
		DependencyTimeout: 30 * time.Minute,
		BuildTimeout:      2 * time.Hour,
		IdleLimit:         30 * time.Minute,
		GitTimeout:        10 * time.Minute,
		GitProtocols:      []string{"git", "http", "https", "ssh", "file"},
		Maintainer:        "Kiln Build Farm <kiln@localhost>",
		CaptureBase:       true,
	}
}

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.CacheDir == "" || !filepath.IsAbs(c.CacheDir) {
		errs = append(errs, fmt.Errorf("build.cache_dir %q: must be an absolute directory path", c.CacheDir))
	}
	for name, d := range map[string]time.Duration{
		"dependency_timeout": c.DependencyTimeout,
		"build_timeout":      c.BuildTimeout,
		"idle_limit":         c.IdleLimit,
		"git_timeout":        c.GitTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("build.%s %s: must not be negative (0 means no limit)", name, d))
		}
	}
	if _, err := mail.ParseAddress(c.Maintainer); err != nil || strings.ContainsAny(c.Maintainer, "\n\r") {
		errs = append(errs, fmt.Errorf("build.maintainer %q: must be \"Name <email>\"", c.Maintainer))
	}
	if len(c.GitProtocols) == 0 {
		errs = append(errs, errors.New("build.git_protocols is empty; list the git transports sources may use, e.g. [git, https, ssh]"))
	}
	for _, p := range c.GitProtocols {
		switch p {
		case "git", "http", "https", "ssh", "file":
		default:
			errs = append(errs, fmt.Errorf("build.git_protocols: %q is not one of git, http, https, ssh, file", p))
		}
	}
	for i, r := range c.Repositories {
		where := fmt.Sprintf("build.repositories[%d]", i)
		if r.Release == "" {
			errs = append(errs, fmt.Errorf("%s: release is empty; name the release the repository belongs to", where))
		}
		if (r.Apt == "") == (r.BaseURL == "") {
			errs = append(errs, fmt.Errorf("%s (release %q): set exactly one of apt (deb targets) or baseurl (rpm targets)", where, r.Release))
		}
		if strings.ContainsAny(r.Apt+r.BaseURL, "\n\r") {
			errs = append(errs, fmt.Errorf("%s (release %q): apt/baseurl must be a single line", where, r.Release))
		}
		if r.Apt != "" && !strings.HasPrefix(r.Apt, "deb ") {
			errs = append(errs, fmt.Errorf("%s (release %q): apt %q must be a one-line source starting with \"deb \"", where, r.Release, r.Apt))
		}
		if strings.ContainsAny(r.BaseApt+r.BaseBaseURL, "\n\r") {
			errs = append(errs, fmt.Errorf("%s (release %q): base_apt/base_baseurl must be a single line", where, r.Release))
		}
		if r.BaseApt != "" {
			if l, err := parseAptLine(r.BaseApt); err != nil || l.typ != "deb" || !strings.HasPrefix(l.uri, "http") {
				errs = append(errs, fmt.Errorf("%s (release %q): base_apt %q must be a one-line source \"deb http(s)://HOST/PATH SUITE COMPONENT\" that the worker and its buildroots reach", where, r.Release, r.BaseApt))
			}
		}
		if r.BaseBaseURL != "" && !strings.HasPrefix(r.BaseBaseURL, "http") {
			errs = append(errs, fmt.Errorf("%s (release %q): base_baseurl %q must be an http(s) URL that the worker and its buildroots reach", where, r.Release, r.BaseBaseURL))
		}
		if r.KeyFile != "" && !filepath.IsAbs(r.KeyFile) {
			errs = append(errs, fmt.Errorf("%s (release %q): key_file %q must be an absolute path on the worker host", where, r.Release, r.KeyFile))
		}
		if r.Apt != "" {
			l, err := parseAptLine(r.Apt)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s (release %q): apt %q: %w", where, r.Release, r.Apt, err))
			} else if v, ok := l.option("signed-by"); ok && r.KeyFile != "" {
				errs = append(errs, fmt.Errorf("%s (release %q): both key_file %q and signed-by=%s in apt; give the key once", where, r.Release, r.KeyFile, v))
			}
		}
	}
	return errors.Join(errs...)
}

// repositories returns the configured repositories for a release and
// target.
func (c Config) repositories(release, target string) []Repository {
	var out []Repository
	for _, r := range c.Repositories {
		if r.Release == release && (r.Target == "" || r.Target == target) {
			out = append(out, r)
		}
	}
	return out
}

// baseSource returns the base repository of a release for a target, as
// the worker host reaches it, for making a sealed release's chroot.
func (c Config) baseSource(release, target string) (executor.BaseSource, error) {
	for _, r := range c.repositories(release, target) {
		src := executor.BaseSource{Release: release, SignedBy: r.KeyFile}
		switch {
		case r.BaseApt != "":
			l, err := parseAptLine(r.BaseApt)
			if err != nil {
				return executor.BaseSource{}, fmt.Errorf("base_apt %q of release %s: %w", r.BaseApt, release, err)
			}
			src.URL = l.uri
			if v, ok := l.option("signed-by"); ok {
				src.SignedBy = v
			}
			if src.SignedBy == "" {
				if rl, err := parseAptLine(r.Apt); err == nil {
					src.SignedBy, _ = rl.option("signed-by")
				}
			}
		case r.BaseBaseURL != "":
			src.URL = r.BaseBaseURL
		default:
			continue
		}
		if src.SignedBy == "" {
			return executor.BaseSource{}, fmt.Errorf("release %s is sealed and its base %s has no key: set key_file (or signed-by= in apt) in build.repositories", release, src.URL)
		}
		return src, nil
	}
	return executor.BaseSource{}, fmt.Errorf("release %s is sealed, and the worker config names no base repository for it and target %s: add base_apt (deb) or base_baseurl (rpm) to its build.repositories entry", release, target)
}

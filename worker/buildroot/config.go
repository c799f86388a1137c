// Package buildroot runs builds in clean containerd buildroots: each target's
// chroot is a committed, read-only containerd snapshot, and every sandbox is a
// fresh overlay on it whose writable layer lives on a tmpfs that is thrown
// away afterwards.
package buildroot

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// Config is the worker config file's `buildroot:` section.
type Config struct {
	// Address of the containerd socket.
	Address string `yaml:"address"`
	// Namespace in containerd that this worker owns: whatever is in it at
	// start is a previous run's leftover and is removed.
	Namespace string `yaml:"namespace"`
	// Snapshotter holding the chroots; it must be "overlayfs".
	Snapshotter string `yaml:"snapshotter"`
	// Runtime is the containerd runtime for build containers.
	Runtime string `yaml:"runtime"`
	// StateDir is a host directory for the sandboxes' tmpfs mounts and for
	// chroots being made.
	StateDir string `yaml:"state_dir"`
	// TmpfsSize is the size of each sandbox's writable layer, e.g. "8G".
	TmpfsSize string `yaml:"tmpfs_size"`
	// Memory is the memory limit of a build container, e.g. "4G"; empty or
	// "0" means none.
	Memory string `yaml:"memory"`
	// CPUs is the CPU limit of a build container (1.5 = one and a half
	// CPUs); 0 means none.
	CPUs float64 `yaml:"cpus"`
	// Pids is the process limit of a build container; 0 means none.
	Pids int64 `yaml:"pids"`
	// StepTimeout is the default hard time limit of a step; 0 means none.
	StepTimeout time.Duration `yaml:"step_timeout"`
	// IdleTimeout stops a step that prints nothing for that long; 0 means
	// never.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DependencyNetwork is what a network step (phase 1, installing build
	// dependencies) can reach: "sources" (the default) gives it a network
	// namespace of its own with no route out and an HTTP proxy that
	// forwards only to the package sources (the target's mirrors and the
	// hosts the step names in AllowHosts); "host" shares the worker host's
	// network with it.
	DependencyNetwork string `yaml:"dependency_network"`
	// SourceCAFile names a PEM file of CA certificates that the package
	// source proxy trusts for https sources, besides the worker host's
	// (an internal mirror with a private CA).
	SourceCAFile string `yaml:"source_ca_file"`
	// PackageCache keeps the package files that network steps download
	// through the package source proxy, and the packages chroots are made
	// from.
	PackageCache PackageCacheConfig `yaml:"package_cache"`
	// LayerCache keeps what phase 1 installed, by chroot and resolved
	// build dependencies, so that a later phase 1 with the same ones
	// unpacks it instead of installing again.
	LayerCache LayerCacheConfig `yaml:"layer_cache"`
	// Targets are the chroots this worker can build in.
	Targets []Target `yaml:"targets"`
}

// PackageCacheConfig is the buildroot section's `package_cache:`.
type PackageCacheConfig struct {
	// Dir holds the cached files, named by their sha256.
	Dir string `yaml:"dir"`
	// MaxSize bounds the cache, e.g. "20G"; when it is full, the least
	// recently used files are removed.
	MaxSize string `yaml:"max_size"`
	// Disabled turns the cache off: every package file is fetched from its
	// source, and steps report no package files (a release's base then
	// misses them).
	Disabled bool `yaml:"disabled"`
}

// LayerCacheConfig is the buildroot section's `layer_cache:`.
type LayerCacheConfig struct {
	// Dir holds the layers, named by the sha256 of their chroot and
	// resolution; by default "layers" in the package cache's dir.
	Dir string `yaml:"dir"`
	// MaxSize bounds the cache, e.g. "20G"; when it is full, the least
	// recently used layers are removed.
	MaxSize string `yaml:"max_size"`
	// Disabled turns the cache off: phase 1 always installs in full. It is
	// off too when the package cache is (a layer's package files must be
	// captured for the release's base from the package cache).
	Disabled bool `yaml:"disabled"`
}

// Values of Config.DependencyNetwork.
const (
	NetworkSources = "sources"
	NetworkHost    = "host"
)

// Target says how a target's chroot is made.
type Target struct {
	// Name of the target, e.g. "bookworm-amd64"; jobs ask for it with the
	// label target=<name>.
	Name string `yaml:"name"`
	// Format of the packages built in it: "deb" or "rpm".
	Format string `yaml:"format"`
	// Method that makes the chroot: "mmdebstrap" (Debian, Ubuntu, and
	// Debian-based chroots with rpm tools) or "dnf" (RPM distributions,
	// with dnf --installroot).
	Method string `yaml:"method"`
	// Packages installed in addition to the base, e.g. dpkg-dev, fakeroot,
	// debhelper for deb targets; rpm-build for rpm targets.
	Packages []string `yaml:"packages"`

	// mmdebstrap: suite, mirror URL, components, variant and architecture.
	Suite        string   `yaml:"suite"`
	Mirror       string   `yaml:"mirror"`
	Components   []string `yaml:"components"`
	Variant      string   `yaml:"variant"`
	Architecture string   `yaml:"architecture"`
	// SignedBy is a host path of the OpenPGP key (armored or binary) that
	// signs the mirror's Release files, for mirrors outside the host's
	// keyring (a release's base repository, a vendor's mirror).
	SignedBy string `yaml:"signed_by"`

	// dnf: release version and repositories.
	Releasever   string       `yaml:"releasever"`
	Repositories []Repository `yaml:"repositories"`
}

// Repository is one dnf repository of an RPM target.
type Repository struct {
	Name    string `yaml:"name"`
	BaseURL string `yaml:"baseurl"`
	// GPGKey is the URL or file:// path of the repository's signing key;
	// packages are checked against it when set.
	GPGKey string `yaml:"gpgkey"`
}

// Defaults of the buildroot section.
const (
	DefaultAddress     = "/run/kiln-containerd/containerd.sock"
	DefaultNamespace   = "kiln"
	DefaultSnapshotter = "overlayfs"
	DefaultRuntime     = "io.containerd.runc.v2"
	DefaultStateDir    = "/var/lib/kiln-worker/buildroot"
	DefaultTmpfsSize   = "8G"

	DefaultPackageCacheDir  = "/var/cache/kiln/packages"
	DefaultPackageCacheSize = "20G"
	DefaultLayerCacheSize   = "20G"
)

// WithDefaults returns c with empty fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Snapshotter == "" {
		c.Snapshotter = DefaultSnapshotter
	}
	if c.Runtime == "" {
		c.Runtime = DefaultRuntime
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.TmpfsSize == "" {
		c.TmpfsSize = DefaultTmpfsSize
	}
	if c.DependencyNetwork == "" {
		c.DependencyNetwork = NetworkSources
	}
	if c.PackageCache.Dir == "" {
		c.PackageCache.Dir = DefaultPackageCacheDir
	}
	if c.PackageCache.MaxSize == "" {
		c.PackageCache.MaxSize = DefaultPackageCacheSize
	}
	if c.LayerCache.Dir == "" {
		c.LayerCache.Dir = filepath.Join(c.PackageCache.Dir, "layers")
	}
	if c.LayerCache.MaxSize == "" {
		c.LayerCache.MaxSize = DefaultLayerCacheSize
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Method == "" {
			t.Method = "mmdebstrap"
		}
		if t.Format == "" && t.Method == "mmdebstrap" {
			t.Format = "deb"
		}
		if t.Format == "" && t.Method == "dnf" {
			t.Format = "rpm"
		}
		if t.Method == "mmdebstrap" && len(t.Components) == 0 {
			t.Components = []string{"main"}
		}
	}
	return c
}

var (
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// Package names as Debian and RPM allow them (rpm also allows '+', '_').
	packagePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_:~-]*$`)
	wordPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// Validate reports the first problem in c, naming the bad value.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.Address, "/") {
		return fmt.Errorf("buildroot.address %q: give the absolute path of containerd's socket", c.Address)
	}
	if !wordPattern.MatchString(c.Namespace) {
		return fmt.Errorf("buildroot.namespace %q: use letters, digits, '.', '_' and '-'", c.Namespace)
	}
	if c.Snapshotter != "overlayfs" {
		return fmt.Errorf("buildroot.snapshotter %q: only overlayfs is supported (sandboxes put an overlay's writable layer on tmpfs)", c.Snapshotter)
	}
	if !strings.HasPrefix(c.StateDir, "/") {
		return fmt.Errorf("buildroot.state_dir %q: give an absolute path", c.StateDir)
	}
	if n, err := ParseSize(c.TmpfsSize); err != nil || n == 0 {
		return fmt.Errorf("buildroot.tmpfs_size %q: give a size like 512M or 8G", c.TmpfsSize)
	}
	if _, err := ParseSize(c.Memory); err != nil {
		return fmt.Errorf("buildroot.memory: %w", err)
	}
	if c.CPUs < 0 {
		return fmt.Errorf("buildroot.cpus %v: give a positive number of CPUs, or 0 for no limit", c.CPUs)
	}
	if c.Pids < 0 {
		return fmt.Errorf("buildroot.pids %d: give a positive process limit, or 0 for none", c.Pids)
	}
	if c.StepTimeout < 0 || c.IdleTimeout < 0 {
		return fmt.Errorf("buildroot.step_timeout %v / idle_timeout %v: give positive durations like 2h or 10m, or 0 for none", c.StepTimeout, c.IdleTimeout)
	}
	if c.DependencyNetwork != NetworkSources && c.DependencyNetwork != NetworkHost {
		return fmt.Errorf("buildroot.dependency_network %q: use %q (only the package sources, through a proxy) or %q (the worker host's network)", c.DependencyNetwork, NetworkSources, NetworkHost)
	}
	if !c.PackageCache.Disabled {
		if !strings.HasPrefix(c.PackageCache.Dir, "/") {
			return fmt.Errorf("buildroot.package_cache.dir %q: give an absolute path", c.PackageCache.Dir)
		}
		if n, err := ParseSize(c.PackageCache.MaxSize); err != nil || n == 0 || n > math.MaxInt64 {
			return fmt.Errorf("buildroot.package_cache.max_size %q: give a size like 20G (or set disabled: true to turn the cache off)", c.PackageCache.MaxSize)
		}
	}
	if !c.PackageCache.Disabled && !c.LayerCache.Disabled {
		if !strings.HasPrefix(c.LayerCache.Dir, "/") {
			return fmt.Errorf("buildroot.layer_cache.dir %q: give an absolute path", c.LayerCache.Dir)
		}
		if n, err := ParseSize(c.LayerCache.MaxSize); err != nil || n == 0 || n > math.MaxInt64 {
			return fmt.Errorf("buildroot.layer_cache.max_size %q: give a size like 20G (or set disabled: true to turn the cache off)", c.LayerCache.MaxSize)
		}
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if seen[t.Name] {
			return fmt.Errorf("buildroot.targets[%d]: target %q listed twice", i, t.Name)
		}
		seen[t.Name] = true
		if err := t.Validate(); err != nil {
			return fmt.Errorf("buildroot.targets[%d]: %w", i, err)
		}
	}
	return nil
}

// Validate reports the first problem in t, naming the bad value.
func (t Target) Validate() error {
	if !namePattern.MatchString(t.Name) {
		return fmt.Errorf("target name %q: use lower-case letters, digits, '.', '_' and '-' (at most 63)", t.Name)
	}
	if t.Method != "mmdebstrap" && t.Method != "dnf" {
		return fmt.Errorf("target %s: method %q: use mmdebstrap or dnf", t.Name, t.Method)
	}
	if t.Format != "deb" && t.Format != "rpm" {
		return fmt.Errorf("target %s: format %q: use deb or rpm", t.Name, t.Format)
	}
	for _, p := range t.Packages {
		if !packagePattern.MatchString(p) {
			return fmt.Errorf("target %s: package %q is not a package name", t.Name, p)
		}
	}
	switch t.Method {
	case "mmdebstrap":
		if !wordPattern.MatchString(t.Suite) {
			return fmt.Errorf("target %s: suite %q: name a suite such as bookworm", t.Name, t.Suite)
		}
		if !strings.HasPrefix(t.Mirror, "http://") && !strings.HasPrefix(t.Mirror, "https://") && !strings.HasPrefix(t.Mirror, "file://") {
			return fmt.Errorf("target %s: mirror %q: give an http://, https:// or file:// URL", t.Name, t.Mirror)
		}
		for _, c := range t.Components {
			if !wordPattern.MatchString(c) {
				return fmt.Errorf("target %s: component %q is not a component name", t.Name, c)
			}
		}
		switch t.Variant {
		case "", "extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard":
		default:
			return fmt.Errorf("target %s: variant %q: use one of mmdebstrap's variants, e.g. minbase or buildd", t.Name, t.Variant)
		}
		if t.SignedBy != "" && (!filepath.IsAbs(t.SignedBy) || strings.ContainsAny(t.SignedBy, " \t\n\r]'\"|")) {
			return fmt.Errorf("target %s: signed_by %q: give the absolute path of a key file, without spaces or quotes", t.Name, t.SignedBy)
		}
		if t.Architecture != "" && !wordPattern.MatchString(t.Architecture) {
			return fmt.Errorf("target %s: architecture %q is not an architecture name", t.Name, t.Architecture)
		}
	case "dnf":
		if !wordPattern.MatchString(t.Releasever) {
			return fmt.Errorf("target %s: releasever %q: give the distribution's release, e.g. 9", t.Name, t.Releasever)
		}
		if len(t.Repositories) == 0 {
			return fmt.Errorf("target %s: dnf targets need at least one repository", t.Name)
		}
		for _, r := range t.Repositories {
			if !wordPattern.MatchString(r.Name) {
				return fmt.Errorf("target %s: repository name %q: use letters, digits, '.', '_' and '-'", t.Name, r.Name)
			}
			if strings.ContainsAny(r.BaseURL, "\n\r") || !strings.Contains(r.BaseURL, "://") {
				return fmt.Errorf("target %s: repository %s: baseurl %q: give a URL", t.Name, r.Name, r.BaseURL)
			}
			if strings.ContainsAny(r.GPGKey, "\n\r") {
				return fmt.Errorf("target %s: repository %s: gpgkey %q: give one URL", t.Name, r.Name, r.GPGKey)
			}
		}
		if len(t.Packages) == 0 {
			return fmt.Errorf("target %s: dnf targets need packages (at least the distribution's release package, shadow-utils and rpm-build)", t.Name)
		}
	default:
		return fmt.Errorf("target %s: method %q: use mmdebstrap or dnf", t.Name, t.Method)
	}
	return nil
}

// SourceHosts returns the host:port pairs the target's chroot installs
// packages from: its mirror, or its dnf repositories and their keys.
func (t Target) SourceHosts() []string {
	urls := []string{t.Mirror}
	for _, r := range t.Repositories {
		urls = append(urls, r.BaseURL, r.GPGKey)
	}
	var out []string
	for _, u := range urls {
		if h, ok := executor.SourceHost(u); ok && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// Target returns the configured target called name.
func (c Config) Target(name string) (Target, bool) {
	for _, t := range c.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

// ParseSize parses a size such as "512M", "8G", "1GiB" or "1048576" into
// bytes. An empty string is 0.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	mult := uint64(1)
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I") {
	case "":
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: use a number with K, M, G or T, e.g. 8G", s)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (1<<63)/mult {
		return 0, fmt.Errorf("size %q: use a number with K, M, G or T, e.g. 8G", s)
	}
	return n * mult, nil
}

package job

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ErrRefused marks a request that can never succeed as asked: an unknown
// release or target, a package name no distribution accepts, a source no
// worker could fetch. It is the client's to fix, never retried.
var ErrRefused = errors.New("refused")

// Releases is what the coordinator's config says of each release: its
// targets and each target's package format (deb or rpm).
type Releases map[string]map[string]string

// Names lists the releases, sorted.
func (r Releases) Names() []string { return sortedKeys(r) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var (
	// Debian Policy 5.6.1: at least two characters, lower-case letters,
	// digits, plus, minus and full stop, starting with a letter or digit.
	debName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// RPM names may also hold capitals and underscores.
	rpmName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+.-]*$`)
)

// Check decides, before a build is queued, whether it can succeed at all:
// the release is configured, the target is one of the release's targets,
// the package name is one the target's format accepts, and every source is
// a URL or absolute path a worker can fetch. Gerrit's builds and the
// clients' go through the same check. Errors wrap ErrRefused and name what
// is configured.
func (r Releases) Check(b *Build) error {
	if len(r) == 0 {
		return fmt.Errorf("%w: release %q: no releases are configured (add it under releases: in the coordinator's config)", ErrRefused, b.Release)
	}
	targets, ok := r[b.Release]
	if !ok {
		return fmt.Errorf("%w: release %q is not configured: use one of %s", ErrRefused, b.Release, strings.Join(r.Names(), ", "))
	}
	format, ok := targets[b.Target]
	if !ok {
		return fmt.Errorf("%w: target %q is not a target of release %s: use one of %s", ErrRefused, b.Target, b.Release, strings.Join(sortedKeys(targets), ", "))
	}
	if strings.EqualFold(format, "rpm") {
		if !rpmName.MatchString(b.Package) {
			return fmt.Errorf("%w: package name %q: an RPM name is letters, digits and _ + . - starting with a letter or digit", ErrRefused, b.Package)
		}
	} else if !debName.MatchString(b.Package) {
		return fmt.Errorf("%w: package name %q: a Debian source package name is at least two lower-case letters, digits and + . - starting with a letter or digit", ErrRefused, b.Package)
	}
	for _, s := range b.Sources {
		if err := CheckSourceURL(s.URL); err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
	}
	return nil
}

// CheckSourceURL accepts what a worker can fetch wherever it runs: a URL
// with a scheme, scp-like user@host:path, or an absolute path. A relative
// path would be looked up in the worker's own directory.
func CheckSourceURL(u string) error {
	switch {
	case strings.Contains(u, "://"), strings.HasPrefix(u, "/"):
		return nil
	}
	if i := strings.IndexByte(u, ':'); i > 0 && !strings.Contains(u[:i], "/") {
		return nil // scp-like host:path
	}
	return fmt.Errorf("source %q is a relative path: a worker would look for it in its own directory; give an absolute path or a URL", u)
}

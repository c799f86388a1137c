package pkgbuild

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/debversion"
)

var (
	changelogHeadRE = regexp.MustCompile(`^([a-z0-9][a-z0-9+.-]+) \(([^ ()]+)\) ([^;]+);(.*)$`)
	debSuffixRE     = regexp.MustCompile(`^[A-Za-z0-9.+~]*$`)
)

// changelogHead is the first entry's header line of debian/changelog.
type changelogHead struct {
	Source, Version, Distribution string
}

// parseChangelogHead reads the first entry's header of a debian/changelog.
func parseChangelogHead(data []byte) (changelogHead, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := changelogHeadRE.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			return changelogHead{}, badSource("debian/changelog: first line %q is not \"source (version) distribution; urgency=...\"; fix the changelog", truncate(line, 120))
		}
		if !debversion.Valid(m[2]) {
			return changelogHead{}, badSource("debian/changelog: version %q is not a valid Debian version", m[2])
		}
		if strings.TrimSpace(m[3]) == "" {
			return changelogHead{}, badSource("debian/changelog: first line %q names no distribution; write one before the ';', e.g. unstable", truncate(line, 120))
		}
		return changelogHead{Source: m[1], Version: m[2], Distribution: strings.TrimSpace(m[3])}, nil
	}
	return changelogHead{}, badSource("debian/changelog is empty; add an entry")
}

// upstreamVersion is the version without epoch and Debian revision.
func upstreamVersion(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	return v
}

// withoutEpoch is the version as it appears in file names.
func withoutEpoch(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[i+1:]
	}
	return v
}

// sourceFormat is the debian/source/format of a tree.
type sourceFormat string

const (
	formatNative sourceFormat = "3.0 (native)"
	formatQuilt  sourceFormat = "3.0 (quilt)"
	format10     sourceFormat = "1.0"
)

// parseSourceFormat reads debian/source/format; missing means 1.0.
func parseSourceFormat(data []byte, exists bool) (sourceFormat, error) {
	if !exists {
		return format10, nil
	}
	f := sourceFormat(strings.TrimSpace(string(data)))
	switch f {
	case formatNative, formatQuilt, format10:
		return f, nil
	}
	return "", badSource("debian/source/format %q is not supported; use \"3.0 (quilt)\", \"3.0 (native)\" or \"1.0\"", truncate(string(f), 60))
}

// formatFitsVersion checks what dpkg-source would refuse late: a native
// package's version has no Debian revision, a quilt package's has one.
func formatFitsVersion(f sourceFormat, version string) error {
	v := withoutEpoch(version)
	i := strings.LastIndex(v, "-")
	switch {
	case f == formatNative && i >= 0:
		upstream, revision := v[:i], v[i+1:]
		return fmt.Errorf("debian/source/format says %s, but debian/changelog's version %s has the Debian revision -%s, which a native package may not have; "+
			"for a native package drop the revision (%s), or, if the package has an upstream, set debian/source/format to \"3.0 (quilt)\"", f, version, revision, upstream)
	case f == formatQuilt && i < 0:
		return fmt.Errorf("debian/source/format says %s, but debian/changelog's version %s has no Debian revision, which a non-native package needs; "+
			"add one (%s-1), or, if the package is native (no upstream apart from Debian), set debian/source/format to \"3.0 (native)\"", f, version, version)
	}
	return nil
}

// needsOrig reports whether the source package has an upstream tarball.
func needsOrig(f sourceFormat, version string) bool {
	switch f {
	case formatNative:
		return false
	case formatQuilt:
		return true
	}
	return strings.Contains(withoutEpoch(version), "-")
}

// changelogEntry is the entry that writes the release revision into the
// version. Its date is the packaging commit's, so that the same source
// gives the same entry (and SOURCE_DATE_EPOCH) on every build.
func changelogEntry(head changelogHead, version, release string, revision int64, maintainer string, date time.Time) string {
	return fmt.Sprintf("%s (%s) %s; urgency=medium\n\n  * Kiln build for release %s, revision %d.\n\n -- %s  %s\n\n",
		head.Source, version, head.Distribution, release, revision, maintainer, date.UTC().Format(time.RFC1123Z))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

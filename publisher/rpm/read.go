package rpm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// Main header tags read by this package.
const (
	tagName            = 1000
	tagVersion         = 1001
	tagRelease         = 1002
	tagEpoch           = 1003
	tagSummary         = 1004
	tagDescription     = 1005
	tagBuildTime       = 1006
	tagBuildHost       = 1007
	tagSize            = 1009
	tagVendor          = 1011
	tagLicense         = 1014
	tagPackager        = 1015
	tagGroup           = 1016
	tagURL             = 1020
	tagArch            = 1022
	tagOldFilenames    = 1027
	tagFileModes       = 1030
	tagFileFlags       = 1037
	tagSourceRPM       = 1044
	tagArchiveSize     = 1046
	tagProvideName     = 1047
	tagRequireFlags    = 1048
	tagRequireName     = 1049
	tagRequireVersion  = 1050
	tagConflictFlags   = 1053
	tagConflictName    = 1054
	tagConflictVersion = 1055
	tagChangelogTime   = 1080
	tagChangelogName   = 1081
	tagChangelogText   = 1082
	tagObsoleteName    = 1090
	tagProvideFlags    = 1112
	tagProvideVersion  = 1113
	tagObsoleteFlags   = 1114
	tagObsoleteVersion = 1115
	tagDirIndexes      = 1116
	tagBasenames       = 1117
	tagDirnames        = 1118
	tagLongArchiveSize = 271
	tagLongSize        = 5009
	tagRecommendName   = 5046
	tagSuggestName     = 5049
	tagSupplementName  = 5052
	tagEnhanceName     = 5055
	// The weak dependency tags come in (name, version, flags) triples.
)

// File flags and modes.
const (
	fileFlagGhost = 1 << 6
	modeTypeMask  = 0o170000
	modeDir       = 0o040000
)

// ReadFile reads the rpm at path; see Read. Location is set to the file's
// base name and FileTime to its modification time.
func ReadFile(path string) (*Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read rpm: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read rpm: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read rpm %s: not a regular file", path)
	}
	p, err := Read(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("read rpm %s: %w", path, err)
	}
	p.Location = filepath.Base(path)
	p.FileTime = fi.ModTime().Unix()
	return p, nil
}

// Read parses the rpm of the given size from r and computes its sha256.
func Read(r io.ReaderAt, size int64) (*Package, error) {
	layout, err := readLayout(r, size)
	if err != nil {
		return nil, err
	}
	p, err := packageFromHeader(layout.main, layout.sig)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(r, 0, size)); err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	p.Checksum = hex.EncodeToString(sum.Sum(nil))
	p.PackageSize = size
	p.HeaderStart = layout.mainStart
	p.HeaderEnd = layout.payloadStart
	return p, nil
}

// layout is where the parts of an rpm file are.
type layout struct {
	lead         []byte
	sig          *header
	main         *header
	mainStart    int64
	payloadStart int64
}

func readLayout(r io.ReaderAt, size int64) (*layout, error) {
	if size < leadSize {
		return nil, fmt.Errorf("file of %d bytes is shorter than the %d-byte lead: %w", size, leadSize, ErrInvalid)
	}
	lead := make([]byte, leadSize)
	if _, err := r.ReadAt(lead, 0); err != nil {
		return nil, fmt.Errorf("read lead: %w", err)
	}
	if string(lead[:4]) != leadMagic {
		return nil, fmt.Errorf("bad lead magic %x, not an rpm file: %w", lead[:4], ErrInvalid)
	}
	if lead[4] != 3 && lead[4] != 4 {
		return nil, fmt.Errorf("rpm format version %d.%d not supported (want 3 or 4): %w", lead[4], lead[5], ErrInvalid)
	}
	if st := int(lead[78])<<8 | int(lead[79]); st != 5 {
		return nil, fmt.Errorf("lead signature type %d not supported (want 5, a header-style signature): %w", st, ErrInvalid)
	}
	sig, err := readHeader(r, leadSize, size-leadSize, "signature header")
	if err != nil {
		return nil, err
	}
	n := int64(len(sig.raw))
	mainStart := leadSize + n + sigPadding(n)
	if mainStart > size {
		return nil, fmt.Errorf("file ends inside the signature header padding: %w", ErrInvalid)
	}
	main, err := readHeader(r, mainStart, size-mainStart, "main header")
	if err != nil {
		return nil, err
	}
	return &layout{lead: lead, sig: sig, main: main, mainStart: mainStart, payloadStart: mainStart + int64(len(main.raw))}, nil
}

func packageFromHeader(h, sig *header) (*Package, error) {
	p := &Package{
		Name:        h.string(tagName),
		Version:     h.string(tagVersion),
		Release:     h.string(tagRelease),
		Arch:        h.string(tagArch),
		SourceRPM:   h.string(tagSourceRPM),
		Summary:     h.string(tagSummary),
		Description: h.string(tagDescription),
		Packager:    h.string(tagPackager),
		URL:         h.string(tagURL),
		License:     h.string(tagLicense),
		Vendor:      h.string(tagVendor),
		Group:       h.string(tagGroup),
		BuildHost:   h.string(tagBuildHost),
	}
	for _, f := range []struct{ what, value string }{
		{"name", p.Name}, {"version", p.Version}, {"release", p.Release}, {"arch", p.Arch},
	} {
		if err := checkNEVRAField(f.what, f.value); err != nil {
			return nil, err
		}
	}
	if h.string(tagSourceRPM) == "" {
		// Source packages carry no SOURCERPM; createrepo_c and dnf call
		// their architecture "src".
		p.Arch = "src"
	}
	if e, ok := h.int(tagEpoch); ok {
		p.Epoch = uint32(e)
	}
	p.BuildTime, _ = h.int(tagBuildTime)
	if v, ok := h.int(tagLongSize); ok {
		p.InstalledSize = v
	} else {
		p.InstalledSize, _ = h.int(tagSize)
	}
	switch {
	case hasInt(h, tagLongArchiveSize):
		p.ArchiveSize, _ = h.int(tagLongArchiveSize)
	case hasInt(h, tagArchiveSize):
		p.ArchiveSize, _ = h.int(tagArchiveSize)
	case hasInt(sig, tagLongArchiveSize):
		p.ArchiveSize, _ = sig.int(tagLongArchiveSize)
	default:
		p.ArchiveSize, _ = sig.int(sigTagPayloadSize)
	}

	var err error
	deps := []struct {
		dst                  *[]Dependency
		name, flags, version uint32
	}{
		{&p.Provides, tagProvideName, tagProvideFlags, tagProvideVersion},
		{&p.Requires, tagRequireName, tagRequireFlags, tagRequireVersion},
		{&p.Conflicts, tagConflictName, tagConflictFlags, tagConflictVersion},
		{&p.Obsoletes, tagObsoleteName, tagObsoleteFlags, tagObsoleteVersion},
		{&p.Recommends, tagRecommendName, tagRecommendName + 2, tagRecommendName + 1},
		{&p.Suggests, tagSuggestName, tagSuggestName + 2, tagSuggestName + 1},
		{&p.Supplements, tagSupplementName, tagSupplementName + 2, tagSupplementName + 1},
		{&p.Enhances, tagEnhanceName, tagEnhanceName + 2, tagEnhanceName + 1},
	}
	for _, d := range deps {
		if *d.dst, err = dependencies(h, d.name, d.flags, d.version); err != nil {
			return nil, err
		}
	}
	if p.Files, err = files(h); err != nil {
		return nil, err
	}
	if p.Changelog, err = changelog(h); err != nil {
		return nil, err
	}
	return p, nil
}

// checkNEVRAField refuses name, version, release and arch values that could
// not come from rpmbuild and that would be dangerous in a file name or an
// index: empty, with a path separator, white space or control characters,
// or starting with a dot.
func checkNEVRAField(what, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("main header has no %s: %w", what, ErrInvalid)
	case len(v) > 1024:
		return fmt.Errorf("package %s of %d bytes is too long: %w", what, len(v), ErrInvalid)
	case strings.HasPrefix(v, "."):
		return fmt.Errorf("package %s %q starts with a dot: %w", what, v, ErrInvalid)
	}
	for _, c := range v {
		if c <= ' ' || c == 0x7f || c == '/' || c == '\\' || !unicode.IsPrint(c) {
			return fmt.Errorf("package %s %q contains %q, which rpm names never do: %w", what, v, c, ErrInvalid)
		}
	}
	return nil
}

func hasInt(h *header, tag uint32) bool {
	_, ok := h.int(tag)
	return ok
}

func dependencies(h *header, nameTag, flagsTag, versionTag uint32) ([]Dependency, error) {
	names := h.strings(nameTag)
	if len(names) == 0 {
		return nil, nil
	}
	flags := h.ints(flagsTag)
	versions := h.strings(versionTag)
	if len(flags) != len(names) || len(versions) != len(names) {
		return nil, fmt.Errorf("tag %d: %d names but %d flags and %d versions: %w", nameTag, len(names), len(flags), len(versions), ErrInvalid)
	}
	out := make([]Dependency, len(names))
	for i, n := range names {
		d := Dependency{Name: n, Flags: uint32(flags[i])}
		d.Epoch, d.Version, d.Release = splitEVR(versions[i])
		out[i] = d
	}
	return out, nil
}

// splitEVR splits rpm's "[epoch:]version[-release]".
func splitEVR(evr string) (epoch, version, release string) {
	if evr == "" {
		return "", "", ""
	}
	if i := strings.IndexByte(evr, ':'); i >= 0 && isDigits(evr[:i]) {
		epoch, evr = evr[:i], evr[i+1:]
	}
	if i := strings.LastIndexByte(evr, '-'); i >= 0 {
		return epoch, evr[:i], evr[i+1:]
	}
	return epoch, evr, ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func files(h *header) ([]File, error) {
	var paths []string
	if base := h.strings(tagBasenames); len(base) > 0 {
		dirs := h.strings(tagDirnames)
		idx := h.ints(tagDirIndexes)
		if len(idx) != len(base) {
			return nil, fmt.Errorf("%d file base names but %d directory indexes: %w", len(base), len(idx), ErrInvalid)
		}
		paths = make([]string, len(base))
		for i, b := range base {
			if idx[i] < 0 || idx[i] >= int64(len(dirs)) {
				return nil, fmt.Errorf("file %q has directory index %d of %d directories: %w", b, idx[i], len(dirs), ErrInvalid)
			}
			paths[i] = dirs[idx[i]] + b
		}
	} else {
		paths = h.strings(tagOldFilenames)
	}
	if len(paths) == 0 {
		return nil, nil
	}
	modes := h.ints(tagFileModes)
	flags := h.ints(tagFileFlags)
	out := make([]File, len(paths))
	for i, path := range paths {
		f := File{Path: path}
		switch {
		case i < len(flags) && flags[i]&fileFlagGhost != 0:
			f.Type = FileGhost
		case i < len(modes) && modes[i]&modeTypeMask == modeDir:
			f.Type = FileDir
		}
		out[i] = f
	}
	return out, nil
}

func changelog(h *header) ([]ChangelogEntry, error) {
	times := h.ints(tagChangelogTime)
	if len(times) == 0 {
		return nil, nil
	}
	names := h.strings(tagChangelogName)
	texts := h.strings(tagChangelogText)
	if len(names) != len(times) || len(texts) != len(times) {
		return nil, fmt.Errorf("changelog has %d times, %d names and %d texts: %w", len(times), len(names), len(texts), ErrInvalid)
	}
	out := make([]ChangelogEntry, len(times))
	for i := range times {
		out[i] = ChangelogEntry{Author: names[i], Date: times[i], Text: texts[i]}
	}
	return out, nil
}

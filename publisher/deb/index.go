package deb

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// PackagesStanza returns the Packages index stanza of b stored at filename
// (relative to the repository root): the control fields as the package wrote
// them, then Filename, Size and the checksums.
func PackagesStanza(b *Binary, filename string) []byte {
	var buf bytes.Buffer
	b.Control.Append(&buf)
	fmt.Fprintf(&buf, "Filename: %s\nSize: %d\nMD5sum: %s\nSHA1: %s\nSHA256: %s\nSHA512: %s\n",
		filename, b.Size, b.MD5, b.SHA1, b.SHA256, b.SHA512)
	return buf.Bytes()
}

// SourcesStanza returns the Sources index stanza of s whose files are in
// directory dir (relative to the repository root).
func SourcesStanza(s *Source, dir string) []byte {
	var buf bytes.Buffer
	buf.WriteString("Package: " + s.Name + "\n")
	s.Control.Without("Source", "Files", "Checksums-Sha1", "Checksums-Sha256", "Checksums-Sha512").Append(&buf)
	buf.WriteString("Directory: " + dir + "\n")
	all := append([]SourceFile{s.DSC}, s.Files...)
	list := func(field string, sum func(SourceFile) string) {
		for _, f := range all {
			if sum(f) == "" {
				return // not known for every file: leave the list out
			}
		}
		buf.WriteString(field + ":\n")
		for _, f := range all {
			fmt.Fprintf(&buf, " %s %d %s\n", sum(f), f.Size, f.Name)
		}
	}
	list("Files", func(f SourceFile) string { return f.MD5 })
	list("Checksums-Sha1", func(f SourceFile) string { return f.SHA1 })
	list("Checksums-Sha256", func(f SourceFile) string { return f.SHA256 })
	list("Checksums-Sha512", func(f SourceFile) string { return f.SHA512 })
	return buf.Bytes()
}

// IndexEntry is one stanza destined for an index.
type IndexEntry struct {
	Component string
	// Arch is the binary architecture ("all" goes into every architecture's
	// index) or "source" for a Sources stanza.
	Arch   string
	UDeb   bool
	Stanza []byte
	// Files are the paths the package installs (see DataFiles), for the
	// Contents indexes when the suite has them.
	Files []string
}

// Suite describes one dists/<suite> directory.
type Suite struct {
	Origin, Label, Suite, Codename, Version, Description string
	// Components in the order they are listed; components with packages
	// are added when missing.
	Components []string
	// Architectures always listed, besides those of the packages.
	Architectures []string
	Date          time.Time
	// ValidFor sets Valid-Until to Date+ValidFor when positive.
	ValidFor time.Duration
	// Compressions of each index besides the uncompressed one: "gz", "xz".
	Compressions []string
	// NotAutomatic/ButAutomaticUpgrades as in Debian's backports.
	NotAutomatic bool
	// Contents adds a Contents-<arch> index (and its .gz) to each
	// component, from the entries' Files.
	Contents bool
	// XZBlockSize, when positive, writes each .xz index as one stream of
	// blocks of about this many uncompressed bytes, cut at stanzas, kept
	// in XZBlocks (which may be nil); 0 writes one block (see
	// xzBlockWriter).
	XZBlockSize int
	XZBlocks    XZBlockCache
}

// IndexFile is a file below dists/<suite>/.
type IndexFile struct {
	Path string
	Data []byte
	Checksums
}

// CheckCompressions validates compression names.
func CheckCompressions(cs []string) error {
	for _, c := range cs {
		if c != "gz" && c != "xz" {
			return fmt.Errorf("compression %q is not supported: use gz and/or xz", c)
		}
	}
	return nil
}

// BuildIndexes builds the index files of a suite from entries, in the order
// given (callers sort them), in memory, and returns the unsigned top-level
// Release file and the files it lists. A publish streams them to disk with
// an IndexWriter instead; the files are the same.
func BuildIndexes(s Suite, entries []IndexEntry) ([]byte, []IndexFile, error) {
	l := NewLayout(s)
	for _, e := range entries {
		l.Note(e.Component, e.Arch, e.UDeb)
	}
	bufs := map[string]*bytes.Buffer{}
	w, err := NewIndexWriter(s, l, func(rel string) (io.WriteCloser, error) {
		b := &bytes.Buffer{}
		bufs[rel] = b
		return nopCloser{b}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if err := w.Add(e); err != nil {
			w.Abort()
			return nil, nil, err
		}
	}
	release, files, err := w.Close()
	if err != nil {
		return nil, nil, err
	}
	for i := range files {
		files[i].Data = bufs[files[i].Path].Bytes()
	}
	return release, files, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func dirRelease(s Suite, comp, arch string) []byte {
	var b bytes.Buffer
	field := func(n, v string) {
		if v != "" {
			b.WriteString(n + ": " + v + "\n")
		}
	}
	field("Archive", s.Suite)
	field("Origin", s.Origin)
	field("Label", s.Label)
	field("Version", s.Version)
	field("Codename", s.Codename)
	field("Component", comp)
	field("Architecture", arch)
	if s.NotAutomatic {
		field("NotAutomatic", "yes")
		field("ButAutomaticUpgrades", "yes")
	}
	return b.Bytes()
}

// releaseDate formats t as Release files want it (RFC 2822 in UTC).
func releaseDate(t time.Time) string {
	return t.UTC().Format("Mon, 02 Jan 2006 15:04:05 UTC")
}

func topRelease(s Suite, comps, archs []string, hasSource map[string]bool, files []IndexFile) []byte {
	var b bytes.Buffer
	field := func(n, v string) {
		if v != "" {
			b.WriteString(n + ": " + v + "\n")
		}
	}
	field("Origin", s.Origin)
	field("Label", s.Label)
	field("Suite", s.Suite)
	field("Version", s.Version)
	field("Codename", s.Codename)
	field("Date", releaseDate(s.Date))
	if s.ValidFor > 0 {
		field("Valid-Until", releaseDate(s.Date.Add(s.ValidFor)))
	}
	if s.NotAutomatic {
		field("NotAutomatic", "yes")
		field("ButAutomaticUpgrades", "yes")
	}
	field("Acquire-By-Hash", "yes")
	field("Architectures", strings.Join(archs, " "))
	field("Components", strings.Join(comps, " "))
	field("Description", s.Description)
	width := 0
	for _, f := range files {
		width = max(width, len(strconv.FormatInt(f.Size, 10)))
	}
	list := func(name string, sum func(IndexFile) string) {
		b.WriteString(name + ":\n")
		for _, f := range files {
			fmt.Fprintf(&b, " %s %*d %s\n", sum(f), width, f.Size, f.Path)
		}
	}
	list("MD5Sum", func(f IndexFile) string { return f.MD5 })
	list("SHA1", func(f IndexFile) string { return f.SHA1 })
	list("SHA256", func(f IndexFile) string { return f.SHA256 })
	list("SHA512", func(f IndexFile) string { return f.SHA512 })
	_ = hasSource
	return b.Bytes()
}

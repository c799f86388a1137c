package deb

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/publisher/deb/archive"
)

// Contents indices (dists/<suite>/<component>/Contents-<arch>) map every
// file a component's packages install to the packages that install it, for
// apt-file and its kind. Each line is a path (relative to /, without a
// leading "./") padded with spaces to 55 columns, a space, and the
// comma-separated qualified names of the packages that hold it,
// [section/]name, where a section of another area reads area/section as in
// the package's control file; lines are sorted by path and there is no
// header. That is the layout of Debian's own Contents files (aptly writes
// one space and a "FILE LOCATION" header); apt-file reads both.

// A package's file list is held whole while a Contents index is made,
// so a hostile package (millions of tiny entries compress to little) is
// refused beyond these bounds; Debian's largest packages list about a
// hundred thousand files.
var (
	maxDataFiles     = 1 << 20
	maxDataPathBytes = 256 << 20
)

// DataFiles returns the paths of the regular files, symbolic and hard links
// in the data member of the .deb read from r, relative to / and without a
// leading "./": the paths a Contents index lists. r is read to the end of
// the data member. More than maxDataFiles paths, or maxDataPathBytes of
// them, is an error.
func DataFiles(r io.Reader) ([]string, error) {
	ar := archive.NewArReader(r, 0)
	for {
		hdr, err := ar.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no data.tar member", ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if !strings.HasPrefix(hdr.Name, "data.tar") {
			continue
		}
		dr, done, err := archive.Decompressor(hdr.Name, ar)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		defer done()
		var files []string
		size := 0
		tr := tar.NewReader(dr)
		for {
			th, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return files, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, hdr.Name, err)
			}
			switch th.Typeflag {
			case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			default:
				continue
			}
			p := strings.TrimPrefix(path.Clean("/"+th.Name), "/")
			if p == "" || strings.ContainsAny(p, "\n\r") {
				continue // not a line a Contents index can hold
			}
			if size += len(p); len(files) == maxDataFiles || size > maxDataPathBytes {
				return nil, fmt.Errorf("%w: %s lists more than %d files or %d MiB of paths: too many for a Contents index; "+
					"remove the package or turn contents off for its repository", ErrInvalid, hdr.Name, maxDataFiles, maxDataPathBytes>>20)
			}
			files = append(files, p)
		}
	}
}

// QualifiedName returns the name a Contents index gives the package of a
// Packages stanza: section/name, or name when the stanza has no Section.
func QualifiedName(stanza []byte) string {
	name, section := stanzaField(stanza, "Package"), stanzaField(stanza, "Section")
	if section == "" {
		return name
	}
	return section + "/" + name
}

// stanzaField returns the one-line value of field in stanza.
func stanzaField(stanza []byte, field string) string {
	for line := range bytes.Lines(stanza) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// contentsColumn is the width the paths of a Contents index are padded to.
const contentsColumn = 55

// contentsIndex collects the files of one Contents index: a pair of path
// and package for each file of each package, sorted when the index is
// written. Most paths belong to one package: a map from path to names
// costs a map entry and a slice for each path besides the pair's strings.
type contentsIndex struct {
	pairs []contentsPair
}

type contentsPair struct {
	path, name string
}

// add records that the package qualified name q holds files.
func (c *contentsIndex) add(q string, files []string) {
	for _, f := range files {
		c.pairs = append(c.pairs, contentsPair{f, q})
	}
}

// bytes returns the index text: each path once, padded to
// contentsColumn, with the names of the packages that hold it, sorted and
// without repeats.
func (c *contentsIndex) bytes() []byte {
	if c == nil {
		return nil
	}
	pairs := c.pairs
	slices.SortFunc(pairs, func(a, b contentsPair) int {
		if n := strings.Compare(a.path, b.path); n != 0 {
			return n
		}
		return strings.Compare(a.name, b.name)
	})
	size := 0
	for i, p := range pairs {
		if i == 0 || p.path != pairs[i-1].path {
			size += max(len(p.path), contentsColumn) + 2
		}
		size += len(p.name) + 1
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	for i, p := range pairs {
		switch {
		case i > 0 && p.path == pairs[i-1].path && p.name == pairs[i-1].name:
			continue
		case i > 0 && p.path == pairs[i-1].path:
			b.WriteByte(',')
		default:
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.path)
			for range contentsColumn - len(p.path) {
				b.WriteByte(' ')
			}
			b.WriteByte(' ')
		}
		b.WriteString(p.name)
	}
	if len(pairs) > 0 {
		b.WriteByte('\n')
	}
	c.pairs = nil
	return b.Bytes()
}

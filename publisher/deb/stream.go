package deb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"

	"github.com/klauspost/compress/gzip"
)

// Layout is what a suite's indexes are, known before their stanzas are
// read: the components, the architectures, and which components have
// sources and udebs. Note every entry before the IndexWriter is made.
type Layout struct {
	comps     []string
	archSet   map[string]bool
	hasSource map[string]bool
	hasUDeb   map[string]bool
}

// NewLayout returns the layout of a suite with no packages yet: s's
// components and architectures.
func NewLayout(s Suite) *Layout {
	l := &Layout{comps: slices.Clone(s.Components), archSet: map[string]bool{}, hasSource: map[string]bool{}, hasUDeb: map[string]bool{}}
	for _, a := range s.Architectures {
		l.archSet[a] = true
	}
	return l
}

// Note records that an entry of component and arch ("source" for a Sources
// stanza) will be added.
func (l *Layout) Note(component, arch string, udeb bool) {
	if !slices.Contains(l.comps, component) {
		l.comps = append(l.comps, component)
	}
	switch {
	case arch == "source":
		l.hasSource[component] = true
	case udeb:
		l.hasUDeb[component] = true
	}
	if arch != "source" && arch != "all" {
		l.archSet[arch] = true
	}
}

func (l *Layout) components() []string {
	if len(l.comps) == 0 {
		return []string{"main"}
	}
	return l.comps
}

func (l *Layout) architectures() []string {
	archs := make([]string, 0, len(l.archSet))
	for a := range l.archSet {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	if len(archs) == 0 {
		archs = []string{"all"}
	}
	return archs
}

// IndexWriter writes the indexes of a suite as their stanzas come, each
// straight into its files, compressors and checksums, so that neither the
// stanzas nor the index text are held in memory (the Contents indexes are,
// being sorted by path).
type IndexWriter struct {
	s         Suite
	comps     []string
	archs     []string
	hasSource map[string]bool
	hasUDeb   map[string]bool
	create    func(rel string) (io.WriteCloser, error)
	// indexes by component and path below it; order is their creation.
	indexes  map[indexKey]*index
	order    []*index
	contents map[indexKey]*contentsIndex
	err      error
}

type indexKey struct{ comp, rel string }

// index is one index (Packages, Sources) with its compressed variants.
type index struct {
	outs []*output
	n    int64 // bytes of text so far
}

// output is one file of an index: the text, or the text compressed.
type output struct {
	path string
	file io.WriteCloser
	h    *Hasher
	buf  *bufio.Writer // into file and h
	comp io.WriteCloser
	in   io.Writer // where the index text goes
	xin  *bufio.Writer
	// blocks is the xz stream of blocks, when the suite has a block size;
	// xz the single-block xz(1), otherwise.
	blocks *xzBlockWriter
	xz     *xzWriter
}

// NewIndexWriter starts the indexes of suite s laid out as l. create makes
// each file, by its path below dists/<suite>/; its Close must make the file
// durable. Add the entries in index order, then Close (or Abort).
func NewIndexWriter(s Suite, l *Layout, create func(rel string) (io.WriteCloser, error)) (*IndexWriter, error) {
	if err := CheckCompressions(s.Compressions); err != nil {
		return nil, err
	}
	w := &IndexWriter{s: s, comps: l.components(), archs: l.architectures(), hasSource: l.hasSource, hasUDeb: l.hasUDeb,
		create: create, indexes: map[indexKey]*index{}, contents: map[indexKey]*contentsIndex{}}
	for _, c := range w.comps {
		for _, a := range w.archs {
			if err := w.start(c, "binary-"+a+"/Packages"); err != nil {
				return nil, err
			}
			if w.hasUDeb[c] {
				if err := w.start(c, "debian-installer/binary-"+a+"/Packages"); err != nil {
					return nil, err
				}
			}
		}
		if w.hasSource[c] {
			if err := w.start(c, "source/Sources"); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// start creates an index and its compressed variants.
func (w *IndexWriter) start(comp, rel string) error {
	ix := &index{}
	w.indexes[indexKey{comp, rel}] = ix
	w.order = append(w.order, ix)
	p := path.Join(comp, rel)
	for _, c := range append([]string{""}, w.s.Compressions...) {
		o, err := w.output(p, c)
		if err != nil {
			w.Abort()
			return err
		}
		ix.outs = append(ix.outs, o)
	}
	return nil
}

// output creates file p, compressed by kind ("", "gz", "xz").
func (w *IndexWriter) output(p, kind string) (*output, error) {
	if kind != "" {
		p += "." + kind
	}
	f, err := w.create(p)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	o := &output{path: p, file: f, h: NewHasher()}
	o.buf = bufio.NewWriterSize(io.MultiWriter(f, o.h), 64<<10)
	switch kind {
	case "":
		o.in = o.buf
	case "gz":
		z, err := gzip.NewWriterLevel(o.buf, gzip.DefaultCompression)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("compress %s: %w", p, err)
		}
		o.comp, o.in = z, z
	case "xz":
		if w.s.XZBlockSize > 0 {
			b, err := newXZBlockWriter(o.buf, w.s.XZBlockSize, w.s.XZBlocks)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("write %s: %w", p, err)
			}
			o.comp, o.in, o.blocks = b, b, b
			break
		}
		x, err := newXZWriter(context.Background(), o.buf)
		if err != nil {
			f.Close()
			return nil, err
		}
		// Whole pipe buffers to xz, not one write per stanza.
		o.comp, o.xz, o.xin = x, x, bufio.NewWriterSize(x, 64<<10)
		o.in = o.xin
	}
	return o, nil
}

// finish ends o's stream and file and returns what Release lists of it.
func (o *output) finish() (IndexFile, error) {
	var err error
	if o.xin != nil {
		err = o.xin.Flush()
	}
	if o.comp != nil {
		err = errors.Join(err, o.comp.Close())
	}
	err = errors.Join(err, o.buf.Flush(), o.file.Close())
	o.file = nil
	if err != nil {
		return IndexFile{}, fmt.Errorf("write %s: %w", o.path, err)
	}
	return IndexFile{Path: o.path, Checksums: o.h.Sum()}, nil
}

func (o *output) abort() {
	switch {
	case o.blocks != nil:
		o.blocks.abort()
	case o.xz != nil:
		o.xz.abort()
	case o.comp != nil:
		_ = o.comp.Close()
	}
	if o.file != nil {
		_ = o.file.Close()
		o.file = nil
	}
}

func (ix *index) write(stanza []byte) error {
	for _, o := range ix.outs {
		if ix.n > 0 {
			if _, err := o.in.Write([]byte{'\n'}); err != nil {
				return fmt.Errorf("write %s: %w", o.path, err)
			}
		}
		if _, err := o.in.Write(stanza); err != nil {
			return fmt.Errorf("write %s: %w", o.path, err)
		}
		if o.blocks != nil {
			if err := o.blocks.stanzaEnd(stanza); err != nil {
				return fmt.Errorf("write %s: %w", o.path, err)
			}
		}
	}
	if ix.n > 0 {
		ix.n++
	}
	ix.n += int64(len(stanza))
	return nil
}

// Add writes an entry's stanza into its indexes: a Sources stanza into its
// component's Sources, a binary one into the Packages of its architecture,
// or of every architecture for "all".
func (w *IndexWriter) Add(e IndexEntry) error {
	if w.err != nil {
		return w.err
	}
	w.err = w.add(e)
	return w.err
}

func (w *IndexWriter) add(e IndexEntry) error {
	if e.Arch == "source" {
		ix := w.indexes[indexKey{e.Component, "source/Sources"}]
		if ix == nil {
			return fmt.Errorf("source entry of component %s not noted in the layout", e.Component)
		}
		return ix.write(e.Stanza)
	}
	dir := "binary-"
	if e.UDeb {
		dir = "debian-installer/binary-"
	}
	added := false
	for _, a := range w.archs {
		if e.Arch == a || (e.Arch == "all" && a != "all") || (e.Arch == "all" && len(w.archs) == 1) {
			ix := w.indexes[indexKey{e.Component, dir + a + "/Packages"}]
			if ix == nil {
				return fmt.Errorf("entry of component %s, architecture %s not noted in the layout", e.Component, e.Arch)
			}
			if err := ix.write(e.Stanza); err != nil {
				return err
			}
			added = true
			if w.s.Contents && !e.UDeb {
				k := indexKey{e.Component, a}
				if w.contents[k] == nil {
					w.contents[k] = &contentsIndex{}
				}
				w.contents[k].add(QualifiedName(e.Stanza), e.Files)
			}
		}
	}
	if !added {
		return fmt.Errorf("entry of architecture %s not noted in the layout", e.Arch)
	}
	return nil
}

// Close finishes every index, writes the per-directory Release files and
// the Contents indexes, and returns the unsigned top-level Release and the
// files it lists (their Data is nil: they are in the created files).
func (w *IndexWriter) Close() ([]byte, []IndexFile, error) {
	if w.err != nil {
		w.Abort()
		return nil, nil, w.err
	}
	var files []IndexFile
	for _, ix := range w.order {
		for _, o := range ix.outs {
			f, err := o.finish()
			if err != nil {
				w.Abort()
				return nil, nil, err
			}
			files = append(files, f)
		}
	}
	w.order = nil
	whole := func(p string, data []byte, kinds ...string) error {
		for _, k := range append([]string{""}, kinds...) {
			o, err := w.output(p, k)
			if err != nil {
				return err
			}
			if _, err := o.in.Write(data); err != nil {
				o.abort()
				return fmt.Errorf("write %s: %w", o.path, err)
			}
			f, err := o.finish()
			if err != nil {
				return err
			}
			files = append(files, f)
		}
		return nil
	}
	for _, c := range w.comps {
		for _, a := range w.archs {
			if err := whole(path.Join(c, "binary-"+a, "Release"), dirRelease(w.s, c, a)); err != nil {
				return nil, nil, err
			}
			if w.s.Contents {
				// .gz as Debian's archive and aptly write them: apt-file
				// keeps them compressed.
				k := indexKey{c, a}
				if err := whole(path.Join(c, "Contents-"+a), w.contents[k].bytes(), "gz"); err != nil {
					return nil, nil, err
				}
				delete(w.contents, k)
			}
		}
		if w.hasSource[c] {
			if err := whole(path.Join(c, "source", "Release"), dirRelease(w.s, c, "source")); err != nil {
				return nil, nil, err
			}
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return topRelease(w.s, w.comps, w.archs, w.hasSource, files), files, nil
}

// Abort stops every index still open (its xz processes too); the files
// created so far are left to the caller.
func (w *IndexWriter) Abort() {
	for _, ix := range w.order {
		for _, o := range ix.outs {
			o.abort()
		}
	}
	w.order = nil
}

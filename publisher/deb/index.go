package deb

import (
	"bytes"
	"fmt"
	"path"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
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
// given (callers sort them), and returns the unsigned top-level Release file
// and the files it lists. It sets each entry's Stanza to nil once the stanza
// is copied into its indexes, so that a caller holding no other reference
// lets it be freed while the indexes grow.
func BuildIndexes(s Suite, entries []IndexEntry) ([]byte, []IndexFile, error) {
	if err := CheckCompressions(s.Compressions); err != nil {
		return nil, nil, err
	}
	comps := slices.Clone(s.Components)
	archSet := map[string]bool{}
	for _, a := range s.Architectures {
		archSet[a] = true
	}
	for _, e := range entries {
		if !slices.Contains(comps, e.Component) {
			comps = append(comps, e.Component)
		}
		if e.Arch != "source" && e.Arch != "all" {
			archSet[e.Arch] = true
		}
	}
	if len(comps) == 0 {
		comps = []string{"main"}
	}
	archs := make([]string, 0, len(archSet))
	for a := range archSet {
		archs = append(archs, a)
	}
	sort.Strings(archs)
	if len(archs) == 0 {
		archs = []string{"all"}
	}

	type key struct{ comp, dir string }
	// Two passes: the first sizes every index, so that each is allocated
	// once (a growing buffer holds up to twice its text); the second fills
	// them and drops the entries' stanzas.
	sizes := map[key]int{}
	bufs := map[key]*bytes.Buffer{}
	add := func(k key, stanza []byte, sizing bool) {
		if sizing {
			sizes[k] += len(stanza) + 1
			return
		}
		b := bufs[k]
		if b == nil {
			b = bytes.NewBuffer(make([]byte, 0, sizes[k]))
			bufs[k] = b
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.Write(stanza)
	}
	hasSource := map[string]bool{}
	hasUDeb := map[string]bool{}
	contents := map[key]contentsIndex{}
	addContents := func(comp, arch string, e IndexEntry) {
		k := key{comp, arch}
		if contents[k] == nil {
			contents[k] = contentsIndex{}
		}
		contents[k].add(QualifiedName(e.Stanza), e.Files)
	}
	for _, sizing := range []bool{true, false} {
		for i, e := range entries {
			switch {
			case e.Arch == "source":
				hasSource[e.Component] = true
				add(key{e.Component, "source/Sources"}, e.Stanza, sizing)
			default:
				dir := "binary-%s/Packages"
				if e.UDeb {
					hasUDeb[e.Component] = true
					dir = "debian-installer/binary-%s/Packages"
				}
				for _, a := range archs {
					if e.Arch == a || (e.Arch == "all" && a != "all") || (e.Arch == "all" && len(archs) == 1) {
						add(key{e.Component, fmt.Sprintf(dir, a)}, e.Stanza, sizing)
						if s.Contents && !sizing && !e.UDeb {
							addContents(e.Component, a, e)
						}
					}
				}
			}
			if !sizing {
				entries[i].Stanza, entries[i].Files = nil, nil
			}
		}
	}
	type raw struct {
		path string
		data []byte
		// compressions: the compressed variants written besides it
		compressions []string
	}
	var raws []raw
	for _, c := range comps {
		for _, a := range archs {
			raws = append(raws, raw{path.Join(c, "binary-"+a, "Packages"), bytesOf(bufs[key{c, "binary-" + a + "/Packages"}]), s.Compressions})
			raws = append(raws, raw{path.Join(c, "binary-"+a, "Release"), dirRelease(s, c, a), nil})
			if hasUDeb[c] {
				raws = append(raws, raw{path.Join(c, "debian-installer", "binary-"+a, "Packages"), bytesOf(bufs[key{c, "debian-installer/binary-" + a + "/Packages"}]), s.Compressions})
			}
			if s.Contents {
				// .gz as Debian's archive and aptly write them: apt-file
				// keeps them compressed.
				raws = append(raws, raw{path.Join(c, "Contents-"+a), contents[key{c, a}].bytes(), []string{"gz"}})
				delete(contents, key{c, a})
			}
		}
		if hasSource[c] {
			raws = append(raws, raw{path.Join(c, "source", "Sources"), bytesOf(bufs[key{c, "source/Sources"}]), s.Compressions})
			raws = append(raws, raw{path.Join(c, "source", "Release"), dirRelease(s, c, "source"), nil})
		}
	}
	var jobs []*IndexFile
	type job struct {
		out  *IndexFile
		src  []byte
		comp string
	}
	var work []job
	for _, r := range raws {
		f := &IndexFile{Path: r.path, Data: r.data}
		jobs = append(jobs, f)
		work = append(work, job{f, r.data, ""})
		for _, c := range r.compressions {
			cf := &IndexFile{Path: r.path + "." + c}
			jobs = append(jobs, cf)
			work = append(work, job{cf, r.data, c})
		}
	}
	// Compress and hash in parallel: xz dominates the time of a publish.
	sort.SliceStable(work, func(i, j int) bool { return len(work[i].src) > len(work[j].src) })
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	ch := make(chan job)
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				data, err := compress(j.comp, j.src)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("compress %s: %w", j.out.Path, err)
					}
					mu.Unlock()
					continue
				}
				h := NewHasher()
				_, _ = h.Write(data)
				j.out.Data = data
				j.out.Checksums = h.Sum()
			}
		}()
	}
	for _, j := range work {
		ch <- j
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	files := make([]IndexFile, len(jobs))
	for i, f := range jobs {
		files[i] = *f
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return topRelease(s, comps, archs, hasSource, files), files, nil
}

func bytesOf(b *bytes.Buffer) []byte {
	if b == nil {
		return []byte{}
	}
	return b.Bytes()
}

func compress(kind string, data []byte) ([]byte, error) {
	var out bytes.Buffer
	switch kind {
	case "":
		return data, nil
	case "gz":
		w, err := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	case "xz":
		// One stream of blocks compressed in parallel (see xz.go).
		return xzCompress(data)
	default:
		return nil, fmt.Errorf("unknown compression %q", kind)
	}
	return out.Bytes(), nil
}

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

package rpm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// RepodataOptions tunes WriteRepodata.
type RepodataOptions struct {
	// Signer, when set, signs repomd.xml into repomd.xml.asc.
	Signer Signer
	// Revision is written to repomd.xml's <revision>; empty means the
	// timestamp in seconds.
	Revision string
	// Time is the timestamp written for every metadata file; zero means
	// time.Now().
	Time time.Time
	// ChangelogLimit is how many of each package's newest changelog
	// entries go into other.xml: 0 means 10 (createrepo_c's default),
	// a negative value means all.
	ChangelogLimit int
}

// Names in and below the repository directory.
const (
	repodataDir    = "repodata"
	repomdName     = "repomd.xml"
	repomdSigName  = "repomd.xml.asc"
	tmpRepodataPfx = ".repodata.tmp-"
)

// XML namespaces of the repodata files.
const (
	nsCommon    = "http://linux.duke.edu/metadata/common"
	nsRPM       = "http://linux.duke.edu/metadata/rpm"
	nsFilelists = "http://linux.duke.edu/metadata/filelists"
	nsOther     = "http://linux.duke.edu/metadata/other"
	nsRepo      = "http://linux.duke.edu/metadata/repo"
)

// Dependency flags (RPMSENSE_*) that repodata shows.
const (
	senseLess       = 1 << 1
	senseGreater    = 1 << 2
	senseEqual      = 1 << 3
	sensePrereq     = 1 << 6
	senseScriptPre  = 1 << 9
	senseScriptPost = 1 << 10
	senseRPMLib     = 1 << 24
)

// mdFile describes one written metadata file for repomd.xml.
type mdFile struct {
	kind         string
	href         string
	checksum     string
	openChecksum string
	size         int64
	openSize     int64
}

// WriteRepodata writes dir/repodata for pkgs (see the package doc). The
// packages' Location fields are written as given; they must be relative
// paths below dir. Callers serialise WriteRepodata calls for one dir.
//
// The new files go into a temporary directory beside repodata/, which is
// then exchanged with the live repodata/ in one rename(2) with
// RENAME_EXCHANGE and the old set removed. On file systems without
// RENAME_EXCHANGE the old directory is renamed away first, so a reader may
// briefly find no repodata/ at all, but never a mix of old and new files.
// Temporary directories left by an interrupted earlier call are removed.
func WriteRepodata(ctx context.Context, dir string, pkgs []*Package, opts RepodataOptions) (err error) {
	for _, p := range pkgs {
		if err := checkLocation(p.Location); err != nil {
			return fmt.Errorf("write repodata in %s: package %s: %w", dir, p.NEVRA(), err)
		}
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	if opts.Revision == "" {
		opts.Revision = strconv.FormatInt(opts.Time.Unix(), 10)
	}
	if opts.ChangelogLimit == 0 {
		opts.ChangelogLimit = 10
	}
	if err := removeStale(dir); err != nil {
		return fmt.Errorf("write repodata in %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(dir, tmpRepodataPfx)
	if err != nil {
		return fmt.Errorf("write repodata: %w", err)
	}
	defer func() {
		// After the exchange tmp holds the old set; on failure, the new one.
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("write repodata: remove old set: %w", rerr)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("write repodata: %w", err)
	}

	gens := []struct {
		kind string
		gen  func(*xmlWriter, *Package)
		head func(*xmlWriter)
		tail string
	}{
		{"primary", writePrimary, func(x *xmlWriter) {
			x.raw(`<metadata xmlns="` + nsCommon + `" xmlns:rpm="` + nsRPM + `"`)
			x.attrInt("packages", int64(len(pkgs)))
			x.raw(">\n")
		}, "</metadata>"},
		{"filelists", writeFilelists, func(x *xmlWriter) {
			x.raw(`<filelists xmlns="` + nsFilelists + `"`)
			x.attrInt("packages", int64(len(pkgs)))
			x.raw(">\n")
		}, "</filelists>"},
		{"other", func(x *xmlWriter, p *Package) { writeOther(x, p, opts.ChangelogLimit) }, func(x *xmlWriter) {
			x.raw(`<otherdata xmlns="` + nsOther + `"`)
			x.attrInt("packages", int64(len(pkgs)))
			x.raw(">\n")
		}, "</otherdata>"},
	}
	files := make([]mdFile, len(gens))
	errs := make([]error, len(gens))
	var wg sync.WaitGroup
	for i, g := range gens {
		wg.Go(func() {
			files[i], errs[i] = writeMetadataFile(ctx, tmp, g.kind, func(x *xmlWriter) error {
				x.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
				g.head(x)
				for n, p := range pkgs {
					if n%512 == 0 {
						if err := ctx.Err(); err != nil {
							return err
						}
					}
					g.gen(x, p)
				}
				x.raw(g.tail)
				return nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write repodata in %s: %w", dir, err)
	}

	repomd := buildRepomd(files, opts)
	if err := writeFileSync(filepath.Join(tmp, repomdName), repomd); err != nil {
		return fmt.Errorf("write repodata: %w", err)
	}
	if opts.Signer != nil {
		sig, err := opts.Signer.DetachSign(ctx, bytes.NewReader(repomd), true)
		if err != nil {
			return fmt.Errorf("write repodata in %s: sign repomd.xml: %w", dir, err)
		}
		if err := writeFileSync(filepath.Join(tmp, repomdSigName), sig); err != nil {
			return fmt.Errorf("write repodata: %w", err)
		}
	}
	if err := keepPrevious(filepath.Join(dir, repodataDir), tmp); err != nil {
		return fmt.Errorf("write repodata in %s: %w", dir, err)
	}
	if err := syncDir(tmp); err != nil {
		return fmt.Errorf("write repodata: %w", err)
	}
	if err := switchDir(tmp, filepath.Join(dir, repodataDir)); err != nil {
		return fmt.Errorf("write repodata in %s: %w", dir, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write repodata: %w", err)
	}
	return nil
}

// checkLocation refuses hrefs that would point outside the repository.
func checkLocation(loc string) error {
	switch {
	case loc == "":
		return errors.New("empty location; set Package.Location to the rpm's path relative to the repository")
	case strings.HasPrefix(loc, "/"), strings.Contains(loc, `\`), path.Clean(loc) != loc,
		loc == "..", strings.HasPrefix(loc, "../"), strings.ContainsAny(loc, "\x00\n\r"):
		return fmt.Errorf("location %q is not a clean relative path below the repository", loc)
	}
	return nil
}

// keepPrevious hard-links the metadata files that the live repomd.xml
// references into the new set, so that a client or mirror that fetched the
// previous repomd.xml just before the switch still finds the files it
// names. Only one generation is kept: files the previous set itself kept
// are not referenced by its repomd.xml.
func keepPrevious(live, next string) error {
	raw, err := os.ReadFile(filepath.Join(live, repomdName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read previous repomd.xml: %w", err)
	}
	var md struct {
		Data []struct {
			Location struct {
				Href string `xml:"href,attr"`
			} `xml:"location"`
		} `xml:"data"`
	}
	if err := xml.Unmarshal(raw, &md); err != nil {
		// A damaged previous set is replaced, not kept.
		return nil
	}
	for _, d := range md.Data {
		name, ok := strings.CutPrefix(d.Location.Href, repodataDir+"/")
		if !ok || name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || name == repomdName || name == repomdSigName {
			continue
		}
		err := os.Link(filepath.Join(live, name), filepath.Join(next, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("keep previous %s: %w", name, err)
		}
	}
	return nil
}

// removeStale removes temporary directories an interrupted call left behind.
func removeStale(dir string) error {
	old, err := filepath.Glob(filepath.Join(dir, tmpRepodataPfx+"*"))
	if err != nil {
		return err
	}
	for _, o := range old {
		if err := os.RemoveAll(o); err != nil {
			return fmt.Errorf("remove stale %s: %w", o, err)
		}
	}
	return nil
}

// switchDir puts the directory tmp in the place of live: in one step when
// the file system can exchange two names, else by two renames. Afterwards
// tmp holds the old contents (or does not exist).
func switchDir(tmp, live string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, live, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		if _, serr := os.Lstat(live); !errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("exchange %s and %s: %w", tmp, live, err)
		}
		// First publication: nothing to exchange with.
		if err := os.Rename(tmp, live); err != nil {
			return fmt.Errorf("publish %s: %w", live, err)
		}
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		aside := tmp + ".old"
		if err := os.Rename(live, aside); err != nil {
			return fmt.Errorf("move %s aside: %w", live, err)
		}
		if err := os.Rename(tmp, live); err != nil {
			return fmt.Errorf("publish %s: %w", live, err)
		}
		return os.Rename(aside, tmp)
	}
	return fmt.Errorf("exchange %s and %s: %w", tmp, live, err)
}

// countingHash counts and hashes what is written through it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// writeMetadataFile writes one gzip-compressed XML file generated by gen
// into dir under its checksum-prefixed name.
func writeMetadataFile(ctx context.Context, dir, kind string, gen func(*xmlWriter) error) (mdFile, error) {
	f, err := os.CreateTemp(dir, "."+kind+"-*")
	if err != nil {
		return mdFile{}, fmt.Errorf("%s: %w", kind, err)
	}
	defer f.Close()
	packed := &countingHash{h: sha256.New()}
	fileBuf := bufio.NewWriterSize(io.MultiWriter(f, packed), 256<<10)
	gz, err := gzip.NewWriterLevel(fileBuf, gzip.DefaultCompression)
	if err != nil {
		return mdFile{}, fmt.Errorf("%s: %w", kind, err)
	}
	open := &countingHash{h: sha256.New()}
	x := &xmlWriter{w: bufio.NewWriterSize(io.MultiWriter(gz, open), 256<<10)}
	if err := gen(x); err != nil {
		return mdFile{}, fmt.Errorf("%s: %w", kind, err)
	}
	if err := x.w.Flush(); err != nil {
		return mdFile{}, fmt.Errorf("%s: write %s: %w", kind, f.Name(), err)
	}
	if err := gz.Close(); err != nil {
		return mdFile{}, fmt.Errorf("%s: write %s: %w", kind, f.Name(), err)
	}
	if err := fileBuf.Flush(); err != nil {
		return mdFile{}, fmt.Errorf("%s: write %s: %w", kind, f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		return mdFile{}, fmt.Errorf("%s: %w", kind, err)
	}
	if err := f.Sync(); err != nil {
		return mdFile{}, fmt.Errorf("%s: sync %s: %w", kind, f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return mdFile{}, fmt.Errorf("%s: write %s: %w", kind, f.Name(), err)
	}
	md := mdFile{
		kind:         kind,
		checksum:     hex.EncodeToString(packed.h.Sum(nil)),
		openChecksum: hex.EncodeToString(open.h.Sum(nil)),
		size:         packed.n,
		openSize:     open.n,
	}
	name := md.checksum + "-" + kind + ".xml.gz"
	md.href = repodataDir + "/" + name
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return mdFile{}, fmt.Errorf("%s: %w", kind, err)
	}
	return md, nil
}

func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func buildRepomd(files []mdFile, opts RepodataOptions) []byte {
	var b bytes.Buffer
	x := &xmlWriter{w: bufio.NewWriter(&b)}
	ts := strconv.FormatInt(opts.Time.Unix(), 10)
	x.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.raw(`<repomd xmlns="` + nsRepo + `" xmlns:rpm="` + nsRPM + `">` + "\n")
	x.element("  ", "revision", opts.Revision)
	for _, f := range files {
		x.raw(`  <data type="` + f.kind + `">` + "\n")
		x.raw(`    <checksum type="sha256">` + f.checksum + "</checksum>\n")
		x.raw(`    <open-checksum type="sha256">` + f.openChecksum + "</open-checksum>\n")
		x.raw(`    <location href="` + f.href + `"/>` + "\n")
		x.raw("    <timestamp>" + ts + "</timestamp>\n")
		x.raw("    <size>" + strconv.FormatInt(f.size, 10) + "</size>\n")
		x.raw("    <open-size>" + strconv.FormatInt(f.openSize, 10) + "</open-size>\n")
		x.raw("  </data>\n")
	}
	x.raw("</repomd>\n")
	x.w.Flush()
	return b.Bytes()
}

func writeVersion(x *xmlWriter, p *Package) {
	x.raw("  <version")
	x.attrInt("epoch", int64(p.Epoch))
	x.attr("ver", p.Version)
	x.attr("rel", p.Release)
	x.raw("/>\n")
}

// isPrimaryFile reports whether a path goes into primary.xml as well as
// filelists.xml: the files dependency solvers most often ask about.
func isPrimaryFile(p string) bool {
	return strings.HasPrefix(p, "/etc/") || strings.Contains(p, "bin/") || p == "/usr/lib/sendmail"
}

func writeFile(x *xmlWriter, indent string, f File) {
	x.raw(indent)
	x.raw("<file")
	if f.Type != FileRegular {
		x.attr("type", string(f.Type))
	}
	x.raw(">")
	x.text(f.Path)
	x.raw("</file>\n")
}

func writePrimary(x *xmlWriter, p *Package) {
	x.raw("<package type=\"rpm\">\n")
	x.element("  ", "name", p.Name)
	x.element("  ", "arch", p.Arch)
	writeVersion(x, p)
	x.raw(`  <checksum type="sha256" pkgid="YES">`)
	x.text(p.Checksum)
	x.raw("</checksum>\n")
	x.element("  ", "summary", p.Summary)
	x.element("  ", "description", p.Description)
	x.element("  ", "packager", p.Packager)
	x.element("  ", "url", p.URL)
	x.raw("  <time")
	x.attrInt("file", p.FileTime)
	x.attrInt("build", p.BuildTime)
	x.raw("/>\n  <size")
	x.attrInt("package", p.PackageSize)
	x.attrInt("installed", p.InstalledSize)
	x.attrInt("archive", p.ArchiveSize)
	x.raw("/>\n  <location")
	x.attr("href", p.Location)
	x.raw("/>\n  <format>\n")
	x.element("    ", "rpm:license", p.License)
	x.element("    ", "rpm:vendor", p.Vendor)
	x.element("    ", "rpm:group", p.Group)
	x.element("    ", "rpm:buildhost", p.BuildHost)
	x.element("    ", "rpm:sourcerpm", p.SourceRPM)
	x.raw("    <rpm:header-range")
	x.attrInt("start", p.HeaderStart)
	x.attrInt("end", p.HeaderEnd)
	x.raw("/>\n")
	writeDeps(x, "provides", p.Provides, nil)
	writeDeps(x, "requires", p.Requires, p.Provides)
	writeDeps(x, "conflicts", p.Conflicts, nil)
	writeDeps(x, "obsoletes", p.Obsoletes, nil)
	writeDeps(x, "suggests", p.Suggests, nil)
	writeDeps(x, "enhances", p.Enhances, nil)
	writeDeps(x, "recommends", p.Recommends, nil)
	writeDeps(x, "supplements", p.Supplements, nil)
	for _, f := range p.Files {
		if isPrimaryFile(f.Path) {
			writeFile(x, "    ", f)
		}
	}
	x.raw("  </format>\n</package>\n")
}

// writeDeps writes one dependency list. For requires, rpmlib() features and
// what the package provides itself are left out, as createrepo_c does.
func writeDeps(x *xmlWriter, kind string, deps, selfProvides []Dependency) {
	opened := false
	for i, d := range deps {
		if selfProvides != nil && (d.Flags&senseRPMLib != 0 || strings.HasPrefix(d.Name, "rpmlib(") || containsDep(selfProvides, d) || containsDep(deps[:i], d)) {
			continue
		}
		if !opened {
			x.raw("    <rpm:" + kind + ">\n")
			opened = true
		}
		x.raw("      <rpm:entry")
		x.attr("name", d.Name)
		if fl := compareFlag(d.Flags); fl != "" {
			x.raw(` flags="` + fl + `"`)
		}
		if d.Version != "" {
			ep := d.Epoch
			if ep == "" {
				ep = "0"
			}
			x.attr("epoch", ep)
			x.attr("ver", d.Version)
			if d.Release != "" {
				x.attr("rel", d.Release)
			}
		}
		if selfProvides != nil && d.Flags&(sensePrereq|senseScriptPre|senseScriptPost) != 0 {
			x.raw(` pre="1"`)
		}
		x.raw("/>\n")
	}
	if opened {
		x.raw("    </rpm:" + kind + ">\n")
	}
}

func containsDep(list []Dependency, d Dependency) bool {
	for _, o := range list {
		if o.Name == d.Name && o.Flags&0xf == d.Flags&0xf && o.Epoch == d.Epoch && o.Version == d.Version && o.Release == d.Release {
			return true
		}
	}
	return false
}

func compareFlag(flags uint32) string {
	switch flags & (senseLess | senseGreater | senseEqual) {
	case senseEqual:
		return "EQ"
	case senseLess:
		return "LT"
	case senseGreater:
		return "GT"
	case senseLess | senseEqual:
		return "LE"
	case senseGreater | senseEqual:
		return "GE"
	}
	return ""
}

func writePkgid(x *xmlWriter, p *Package) {
	x.raw("<package")
	x.attr("pkgid", p.Checksum)
	x.attr("name", p.Name)
	x.attr("arch", p.Arch)
	x.raw(">\n")
	writeVersion(x, p)
}

func writeFilelists(x *xmlWriter, p *Package) {
	writePkgid(x, p)
	for _, f := range p.Files {
		writeFile(x, "  ", f)
	}
	x.raw("</package>\n")
}

func writeOther(x *xmlWriter, p *Package, limit int) {
	writePkgid(x, p)
	// rpm keeps the newest entry first; other.xml lists the newest
	// limit entries oldest first.
	n := len(p.Changelog)
	if limit > 0 && n > limit {
		n = limit
	}
	for i := n - 1; i >= 0; i-- {
		c := p.Changelog[i]
		x.raw("  <changelog")
		x.attr("author", c.Author)
		x.attrInt("date", c.Date)
		x.raw(">")
		x.text(c.Text)
		x.raw("</changelog>\n")
	}
	x.raw("</package>\n")
}

package pkgbuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// quiltPatch is one entry of debian/patches/series.
type quiltPatch struct {
	name  string // relative to debian/patches
	strip int    // patch -p level
}

// parseSeries reads debian/patches/series: a patch name a line, optionally
// followed by -pN; # starts a comment.
func parseSeries(data []byte) ([]quiltPatch, error) {
	var out []quiltPatch
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i == 0 || (i > 0 && (line[i-1] == ' ' || line[i-1] == '\t')) {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p := quiltPatch{name: f[0], strip: 1}
		if !filepath.IsLocal(p.name) {
			return nil, fmt.Errorf("debian/patches/series names %q, which is not a path under debian/patches", p.name)
		}
		for _, o := range f[1:] {
			n, ok := strings.CutPrefix(o, "-p")
			v, err := strconv.Atoi(n)
			if !ok || err != nil || v < 0 || v > 9 {
				return nil, fmt.Errorf("debian/patches/series: option %q of %s is not supported; only -pN is", o, p.name)
			}
			p.strip = v
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// patchesApplied says how a 3.0 (quilt) tree holds its patches. When they
// are applied (gbp with patches applied, dgit, apt-get source), it returns
// the upstream tree: the code archive (without debian/ and .pc/) with the
// applied patches reverted, in scratch. unapplied is "" then; otherwise
// upstream is "". A tree with some patches applied and others not is bad
// input.
func patchesApplied(ctx context.Context, in prepInput, tree, scratch string) (layout, upstream string, err error) {
	troot, err := os.OpenRoot(tree)
	if err != nil {
		return "", "", fmt.Errorf("open source tree: %w", err)
	}
	defer troot.Close()
	data, err := troot.ReadFile("debian/patches/series")
	if errors.Is(err, fs.ErrNotExist) {
		return "patches: none", "", nil
	}
	if err != nil {
		return "", "", wrapTreeErr(in.what, "debian/patches/series", err)
	}
	series, err := parseSeries(data)
	if err != nil {
		return "", "", badSource("%s: %v", in.what, err)
	}
	if len(series) == 0 {
		return "patches: none", "", nil
	}
	// quilt's own record of what is applied, when the tree has it.
	toRevert, withPC := series, false
	if pc, err := troot.ReadFile(".pc/applied-patches"); err == nil {
		withPC = true
		toRevert = nil
		for _, name := range strings.Fields(string(pc)) {
			i := slicesIndex(series, name)
			if i < 0 {
				return "", "", badSource("%s: .pc/applied-patches names %q, which debian/patches/series does not list; remove .pc/ or refresh it with quilt", in.what, name)
			}
			toRevert = append(toRevert, series[i])
		}
		if len(toRevert) == 0 {
			return "patches: unapplied (.pc/ records none applied)", "", nil
		}
	}
	for _, p := range series {
		fi, err := troot.Lstat(path.Join("debian/patches", p.name))
		if err != nil || !fi.Mode().IsRegular() {
			return "", "", badSource("%s: debian/patches/series lists %s, but debian/patches/%s is not a regular file; add it or remove it from the series", in.what, p.name, p.name)
		}
	}
	upstream = filepath.Join(scratch, filepath.Base(tree))
	if err := extractArchive(in.codeWhat, in.archives[in.codeRole], upstream, "", func(n string) bool { return !inDebian(n) && !inPC(n) }); err != nil {
		return "", "", err
	}
	if err := giveToUntrusted(upstream); err != nil {
		return "", "", fmt.Errorf("hand the upstream tree to uid %d for patch: %w", untrustedID, err)
	}
	for i := len(toRevert) - 1; i >= 0; i-- {
		p := toRevert[i]
		out, err := runPatch(ctx, upstream, filepath.Join(tree, "debian/patches", p.name), p.strip)
		if err == nil {
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return "", "", fmt.Errorf("revert debian/patches/%s: %w", p.name, err)
		}
		switch {
		case withPC:
			return "", "", badSource("%s: .pc/applied-patches says debian/patches/%s is applied, but it does not revert cleanly from the tree (%s); refresh the patch with quilt or commit the tree with the patches unapplied", in.what, p.name, firstLine(out))
		case i < len(toRevert)-1:
			return "", "", badSource("%s: the tree holds some of debian/patches applied and others not: %s reverts cleanly, %s does not (%s); commit the tree with all patches applied or none", in.what, toRevert[i+1].name, p.name, firstLine(out))
		}
		// The last patch is not applied: the patches are unapplied,
		// unless the first one is.
		if first := toRevert[0]; len(toRevert) > 1 {
			if _, err := runPatch(ctx, upstream, filepath.Join(tree, "debian/patches", first.name), first.strip, "--dry-run"); err == nil {
				return "", "", badSource("%s: the tree holds some of debian/patches applied and others not: the first, %s, is applied, the last, %s, is not; commit the tree with all patches applied (dgit, gbp pq) or none (gbp)", in.what, first.name, p.name)
			}
		}
		if err := os.RemoveAll(scratch); err != nil {
			return "", "", err
		}
		return "patches: unapplied", "", nil
	}
	how := "without .pc/"
	if withPC {
		how = "with .pc/"
	}
	return fmt.Sprintf("patches: applied %s (%d reverted for the upstream tarball)", how, len(toRevert)), upstream, nil
}

func slicesIndex(series []quiltPatch, name string) int {
	for i, p := range series {
		if p.name == name {
			return i
		}
	}
	return -1
}

// runPatch reverts patchFile in dir with GNU patch, no fuzz, no backup
// and no reject files; extra are more options, e.g. --dry-run. patch runs as untrustedID (see untrustedCmd) in
// dir, which must be that user's (giveToUntrusted), reading the patch
// from its standard input.
func runPatch(ctx context.Context, dir, patchFile string, strip int, extra ...string) (string, error) {
	f, err := os.OpenFile(patchFile, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd := untrustedCmd(ctx, dir, []string{"LC_ALL=C", "PATH=/usr/bin:/bin"}, "patch", append([]string{"-R", "-f", "-s", "-F0", "-p" + strconv.Itoa(strip),
		"--no-backup-if-mismatch", "--reject-file=-"}, extra...)...)
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "patch failed"
	}
	return truncate(s, 200)
}

func inDebian(name string) bool { return name == "debian" || strings.HasPrefix(name, "debian/") }
func inPC(name string) bool     { return name == ".pc" || strings.HasPrefix(name, ".pc/") }

// tarDir writes the tree at dir as a tar stream, members in lexical
// order, every mtime date (as git archive does), leaving out members for
// which skip is true; symlinks are kept as they are.
func tarDir(dir string, date time.Time, w io.Writer, skip func(string) bool) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if skip != nil && skip(name) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: date, Mode: 0o644, Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if fi.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Mode = tar.TypeSymlink, 0o777
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// origExts are the compressions of an upstream tarball dpkg-source takes.
var origExts = []string{"gz", "bz2", "xz", "lzma"}

// writeOrig puts the upstream tarball into src/ from where the maintainer
// keeps it, in this order: the pristine-tar branch of the packaging
// repository; a <source>_<upstream>.orig.tar.* committed beside debian/ in
// a separate packaging repository; the upstream/<version> tag (gbp's
// name); the code commit (upstreamTar: its archive, or the tree with the
// quilt patches reverted). It returns which it used, for the log.
func (b *Builder) writeOrig(ctx context.Context, in prepInput, source, upver, debDir, upstreamTar string) (string, error) {
	outDir := filepath.Join(in.job.WorkDir, srcDir)
	base := source + "_" + upver + ".orig.tar."
	pkgDir, pkgSrc := in.repoDirs[in.pkgRole], in.srcs[in.pkgRole]
	commit, err := b.git.FetchOptional(ctx, pkgDir, pkgSrc, pristineTarBranch, pristineTarBranch, nil)
	if err != nil {
		return "", err
	}
	if commit != "" {
		for _, ext := range origExts {
			ok, err := b.git.PristineTar(ctx, pkgDir, base+ext, outDir)
			if bad, isBad := isBadSource(err); isBad {
				return "", badSource("source %s: %s", pkgSrc.URL, bad.Msg)
			}
			if err != nil {
				return "", err
			}
			if ok {
				return fmt.Sprintf("%s from the pristine-tar branch of %s at %s", base+ext, pkgSrc.URL, short(commit)), nil
			}
		}
	}
	if in.pkgRole == "packaging" {
		for _, ext := range origExts {
			p := path.Join(debDir, base+ext)
			fi, err := in.root.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			data, err := in.root.ReadFile(p)
			if err != nil {
				return "", wrapTreeErr(in.what, p, err)
			}
			if err := os.WriteFile(filepath.Join(outDir, base+ext), data, 0o644); err != nil {
				return "", err
			}
			return fmt.Sprintf("%s committed in %s", p, in.what), nil
		}
	}
	treeName := source + "-" + upver
	skip := func(n string) bool { return inDebian(n) || inPC(n) }
	codeDir, codeSrc := in.repoDirs[in.codeRole], in.srcs[in.codeRole]
	tag := "refs/tags/upstream/" + gbpTagVersion(upver)
	tagCommit, err := b.git.FetchOptional(ctx, codeDir, codeSrc, tag, "refs/kiln/tags/upstream/"+gbpTagVersion(upver), nil)
	if err != nil {
		return "", err
	}
	from := fmt.Sprintf("%sgz made from %s", base, in.codeWhat)
	if upstreamTar != in.archives[in.codeRole] {
		from += " with the quilt patches reverted"
	}
	if tagCommit != "" {
		upstreamTar = filepath.Join(in.job.WorkDir, stateDir, "upstream-tag.tar")
		if err := writeFileFrom(upstreamTar, func(w io.Writer) error { return b.git.Archive(ctx, codeDir, tagCommit, w) }); err != nil {
			return "", err
		}
		from = fmt.Sprintf("%sgz made from tag %s of %s (%s)", base, strings.TrimPrefix(tag, "refs/tags/"), codeSrc.URL, short(tagCommit))
	}
	err = writeFileFrom(filepath.Join(outDir, base+"gz"), func(w io.Writer) error {
		f, err := os.Open(upstreamTar)
		if err != nil {
			return err
		}
		defer f.Close()
		return writeTarball(in.codeWhat, f, w, treeName, skip)
	})
	if err != nil {
		return "", err
	}
	return from, nil
}

// gbpTagVersion writes an upstream version as git-buildpackage does in
// its upstream/<version> tags: "~" becomes "_" and ":" "%".
func gbpTagVersion(v string) string {
	return strings.NewReplacer("~", "_", ":", "%").Replace(v)
}

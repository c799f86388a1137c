package pkgbuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/debversion"
)

func addTestdataSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds match %s: %v", pattern, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseChangelogHead: a changelog head that is accepted names a valid
// source and version, and the entry the builder writes on top of it reads
// back as the new version.
func FuzzParseChangelogHead(f *testing.F) {
	addTestdataSeeds(f, "testdata/*/debian/changelog")
	f.Add([]byte("hello (1:2.0-1) unstable; urgency=low\r\n"))
	f.Add([]byte("\n\n  \nhello (2.0) ; urgency=low\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		head, err := parseChangelogHead(data)
		if err != nil {
			if _, ok := isBadSource(err); !ok {
				t.Fatalf("refusal is not a bad source error: %v", err)
			}
			return
		}
		if !debversion.Valid(head.Version) {
			t.Fatalf("accepted version %q", head.Version)
		}
		if head.Source == "" || strings.ContainsAny(head.Source, " \n()") {
			t.Fatalf("accepted source %q", head.Source)
		}
		version := head.Version + "~kiln1"
		entry := changelogEntry(head, version, "r1", 1, "Kiln <kiln@kiln.invalid>", time.Unix(0, 0))
		again, err := parseChangelogHead(append([]byte(entry), data...))
		if err != nil {
			t.Fatalf("the builder's own entry does not parse: %v\n%s", err, entry)
		}
		if again.Source != head.Source || again.Version != version || again.Distribution != head.Distribution {
			t.Fatalf("the builder's entry reads back as %+v, want %s %s %s", again, head.Source, version, head.Distribution)
		}
	})
}

// FuzzParseEvaluated: whatever rpm printed, an accepted name is a plain
// package name and no source file name has a slash.
func FuzzParseEvaluated(f *testing.F) {
	f.Add([]byte("a\n(none)\n1\n1\n"), []byte("Source0: http://x/a-1.tar.gz\nPatch1: p.diff\n%prep\nrm -rf 'a-1'\n"))
	f.Add([]byte("a\n1\n1\n"), []byte("Source: /\n"))
	f.Fuzz(func(t *testing.T, nevr, parsed []byte) {
		s, err := parseEvaluated(nevr, parsed)
		if err != nil {
			return
		}
		if !rpmNameRE.MatchString(s.Name) {
			t.Fatalf("accepted name %q", s.Name)
		}
		for _, src := range append(s.Sources, s.SetupDir) {
			if strings.Contains(src, "/") || src == ".." {
				t.Fatalf("file name %q escapes", src)
			}
		}
	})
}

// fuzzTar builds a tar archive from a line-based description, one member a
// line: a type letter (f file, d dir, l symlink, h hard link, c char
// device), a space, the name, and for links a space and the target. Lines
// that do not fit are skipped.
func fuzzTar(spec string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for line := range strings.SplitSeq(spec, "\n") {
		kind, rest, ok := strings.Cut(line, " ")
		if !ok || kind == "" {
			continue
		}
		name, link, _ := strings.Cut(rest, " ")
		h := &tar.Header{Name: name, Mode: 0o644, Format: tar.FormatPAX}
		switch kind[0] {
		case 'f':
			h.Typeflag, h.Size = tar.TypeReg, int64(len(name))
			if len(kind) > 1 {
				h.Mode = 0o755
			}
		case 'd':
			h.Typeflag = tar.TypeDir
		case 'l':
			h.Typeflag, h.Linkname = tar.TypeSymlink, link
		case 'h':
			h.Typeflag, h.Linkname = tar.TypeLink, link
		case 'c':
			h.Typeflag = tar.TypeChar
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(name))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzExtractTar: whatever the archive holds, nothing is written outside
// the target root, and no symlink left in the tree resolves outside it.
func FuzzExtractTar(f *testing.F) {
	f.Add("d pkg/\nf pkg/a/b\nl pkg/a/l b\nl pkg/up a/../a/b\nf other/x", "pkg", false)
	f.Add("f ../evil\nf a/../../evil\nf /etc/evil", "", false)
	f.Add("l l /etc\nl a/l ../../x\nl skipped/l /etc", "", true)
	f.Add("h h x\nc d", "", false)
	f.Add("l a .\nl a/l ../x\nf a/l", "", false)
	f.Add("l pkg/l ../x\nf pkg/x", "pkg", false)
	f.Add("d d\nl d/l ..\nf d/l/escaped", "", false)
	f.Add("fx run.sh\nl s run.sh\nf s", "", false)
	f.Fuzz(func(t *testing.T, spec, strip string, filter bool) {
		if strings.ContainsRune(strip, 0) || strings.HasPrefix(strip, "/") {
			return
		}
		base := t.TempDir()
		tree := filepath.Join(base, "tree")
		outside := filepath.Join(base, "outside")
		for _, d := range []string{tree, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(tree)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		var keep func(string) bool
		if filter {
			keep = func(n string) bool { return !strings.HasPrefix(n, "skipped") }
		}
		err = extractTar("fuzz", bytes.NewReader(fuzzTar(spec)), root, strip, keep)
		if err != nil {
			if _, ok := isBadSource(err); !ok {
				t.Logf("not a bad source error: %v", err)
			}
		}
		var written []string
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if p == base || p == tree || p == outside || p == filepath.Join(outside, "secret") {
				return nil
			}
			if strings.HasPrefix(p, tree+"/") {
				return nil
			}
			written = append(written, p)
			return nil
		})
		if len(written) > 0 {
			t.Fatalf("written outside the tree: %v", written)
		}
		if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "secret" {
			t.Fatalf("file outside the tree changed: %q, %v", b, err)
		}
		realTree, err := filepath.EvalSymlinks(tree)
		if err != nil {
			t.Fatal(err)
		}
		filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, err := filepath.EvalSymlinks(p)
			if errors.Is(err, fs.ErrNotExist) {
				// Dangling: judge where it would point.
				dir, derr := filepath.EvalSymlinks(filepath.Dir(p))
				link, lerr := os.Readlink(p)
				if derr != nil || lerr != nil {
					return nil
				}
				target = filepath.Join(dir, link)
			} else if err != nil {
				return nil
			}
			if target != realTree && !strings.HasPrefix(target, realTree+"/") {
				t.Fatalf("symlink %s resolves outside the tree, to %s (archive %q, strip %q)", p, target, spec, strip)
			}
			return nil
		})
	})
}

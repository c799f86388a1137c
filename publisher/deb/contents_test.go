package deb_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/deb"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
)

func TestDataFilesOfDpkgDeb(t *testing.T) {
	t.Parallel()
	tool := testenv.Tool(t, "dpkg-deb")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"DEBIAN", "usr/bin", "usr/share/doc/kiln-c", "etc/empty.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{
		"DEBIAN/control":                     "Package: kiln-c\nVersion: 1\nArchitecture: amd64\nMaintainer: T <t@kiln.invalid>\nDescription: t\n t\n",
		"usr/bin/kiln-c":                     "#!/bin/sh\n",
		"usr/share/doc/kiln-c/copyright":     "none\n",
		"usr/share/doc/kiln-c/with space.md": "x\n",
	} {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("kiln-c", filepath.Join(root, "usr/bin/kc")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kiln-c.deb")
	if b, err := exec.Command(tool, "-Zxz", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := deb.DataFiles(f)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"usr/bin/kc", "usr/bin/kiln-c", "usr/share/doc/kiln-c/copyright", "usr/share/doc/kiln-c/with space.md"}
	if !slices.Equal(got, want) {
		t.Fatalf("DataFiles = %q, want %q (files and links, no directories)", got, want)
	}
}

func TestDataFilesRefusesPackageWithoutData(t *testing.T) {
	t.Parallel()
	data := build(t, "Package: x\nVersion: 1\nArchitecture: all\n", debtest.Options{NoData: true})
	if _, err := deb.DataFiles(bytes.NewReader(data)); err == nil {
		t.Fatal("DataFiles accepted a package without a data member")
	}
}

// TestContentsIndexFormat pins the Contents format: one line per path,
// sorted, padded to 55 columns and a space (as in Debian's archive), the
// qualified names sorted and comma-separated; "all" packages in every
// architecture's index; udebs and sources in none.
func TestContentsIndexFormat(t *testing.T) {
	t.Parallel()
	stanza := func(name, arch, section string) []byte {
		s := "Package: " + name + "\nVersion: 1\nArchitecture: " + arch + "\n"
		if section != "" {
			s += "Section: " + section + "\n"
		}
		return []byte(s)
	}
	long := "usr/share/kiln/a-path-longer-than-the-fifty-five-columns-of-the-index"
	entries := func() []deb.IndexEntry {
		return []deb.IndexEntry{
			{Component: "main", Arch: "amd64", Stanza: stanza("bash", "amd64", "shells"), Files: []string{"usr/bin/bash", "etc/bash.bashrc"}},
			{Component: "main", Arch: "all", Stanza: stanza("bash-doc", "all", "doc"), Files: []string{"usr/share/doc/bash/README"}},
			{Component: "main", Arch: "arm64", Stanza: stanza("bash", "arm64", "shells"), Files: []string{"usr/bin/bash"}},
			{Component: "main", Arch: "amd64", Stanza: stanza("zsh", "amd64", "contrib/shells"), Files: []string{"usr/bin/rbash", "usr/share/doc/bash/README"}},
			{Component: "main", Arch: "amd64", Stanza: stanza("nosection", "amd64", ""), Files: []string{"usr/bin/rbash", long}},
			// Another version of bash: its paths are not listed twice.
			{Component: "main", Arch: "amd64", Stanza: stanza("bash", "amd64", "shells"), Files: []string{"usr/bin/bash"}},
			{Component: "main", Arch: "amd64", UDeb: true, Stanza: stanza("bash-udeb", "amd64", "debian-installer"), Files: []string{"usr/bin/bash"}},
			{Component: "main", Arch: "source", Stanza: []byte("Package: bash\n")},
		}
	}
	suite := deb.Suite{Suite: "stable", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Compressions: []string{"xz"}, Contents: true}
	release, files, err := deb.BuildIndexes(suite, entries())
	if err != nil {
		t.Fatal(err)
	}
	pad := func(p string) string { return p + strings.Repeat(" ", max(0, 55-len(p))) + " " }
	want := map[string]string{
		"main/Contents-amd64": pad("etc/bash.bashrc") + "shells/bash\n" +
			pad("usr/bin/bash") + "shells/bash\n" +
			pad("usr/bin/rbash") + "contrib/shells/zsh,nosection\n" +
			pad("usr/share/doc/bash/README") + "contrib/shells/zsh,doc/bash-doc\n" +
			long + " nosection\n", // longer than the column: one space
		"main/Contents-arm64": pad("usr/bin/bash") + "shells/bash\n" +
			pad("usr/share/doc/bash/README") + "doc/bash-doc\n",
	}
	byPath := map[string]deb.IndexFile{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	for p, w := range want {
		f, ok := byPath[p]
		if !ok {
			t.Fatalf("no %s among the indexes", p)
		}
		if string(f.Data) != w {
			t.Errorf("%s:\n%s\nwant:\n%s", p, f.Data, w)
		}
		gz, ok := byPath[p+".gz"]
		if !ok {
			t.Fatalf("no %s.gz among the indexes", p)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz.Data))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || string(plain) != w {
			t.Errorf("%s.gz does not decompress to %s: %v", p, p, err)
		}
		for _, name := range []string{p, p + ".gz"} {
			if !bytes.Contains(release, []byte(" "+byPath[name].SHA256+" ")) {
				t.Errorf("Release does not list %s with its SHA256", name)
			}
		}
	}
	if _, ok := byPath["main/Contents-amd64.xz"]; ok {
		t.Error("Contents written as .xz: only the plain file and .gz are")
	}

	// Off by default.
	suite.Contents = false
	_, files, err = deb.BuildIndexes(suite, entries())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if filepath.Base(f.Path) == "Contents-amd64" {
			t.Fatalf("Contents written without Suite.Contents")
		}
	}
}

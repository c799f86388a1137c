package deb_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/deb"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func build(t testing.TB, control string, o debtest.Options) []byte {
	t.Helper()
	b, err := debtest.Build(control, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadBinary(t *testing.T) {
	t.Parallel()
	for _, comp := range []string{"gz", "xz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			data := build(t, debtest.Control("hello", "1:2.10-3", "amd64")+"Source: hello-src (2.10-1)\n", debtest.Options{Compression: comp, Payload: []byte("x")})
			b, err := deb.ReadBinary(bytes.NewReader(data), false, deb.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != "hello" || b.Version != "1:2.10-3" || b.Arch != "amd64" || b.Source != "hello-src" {
				t.Errorf("got %s %s %s source %s", b.Name, b.Version, b.Arch, b.Source)
			}
			if b.Size != int64(len(data)) {
				t.Errorf("Size = %d, want %d", b.Size, len(data))
			}
			if got, want := b.FileName(), "hello_2.10-3_amd64.deb"; got != want {
				t.Errorf("FileName() = %s, want %s", got, want)
			}
			if !strings.Contains(b.Control.Get("Description"), "\n generated") {
				t.Errorf("multi-line description lost: %q", b.Control.Get("Description"))
			}
		})
	}
}

func TestReadBinaryFromDpkgDeb(t *testing.T) {
	t.Parallel()
	dpkgDeb := testenv.Tool(t, "dpkg-deb")
	dir := t.TempDir()
	root := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(debtest.Control("real-one", "0.1-1", "all")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, z := range []string{"xz", "zstd", "gzip"} {
		out := filepath.Join(dir, "real-"+z+".deb")
		if b, err := exec.Command(dpkgDeb, "-Z"+z, "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb: %v\n%s", err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		b, err := deb.ReadBinary(f, false, deb.DefaultLimits())
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", z, err)
		}
		if b.Name != "real-one" || b.Arch != "all" {
			t.Errorf("%s: got %s %s", z, b.Name, b.Arch)
		}
	}
}

func TestReadBinaryRefusesHostileInput(t *testing.T) {
	t.Parallel()
	good := build(t, debtest.Control("hello", "1.0", "amd64"), debtest.Options{})
	big := bytes.Repeat([]byte("A"), 2<<20)
	cases := []struct {
		name    string
		data    []byte
		lim     *deb.Limits
		wantErr string
	}{
		{name: "injected stanza", data: build(t, debtest.Control("hello", "1.0", "amd64")+"\nPackage: evil\nVersion: 6.6.6\n", debtest.Options{}), wantErr: "second stanza"},
		{name: "injected field via CR", data: build(t, "Package: hello\nVersion: 1.0\rFilename: ../x\nArchitecture: amd64\n", debtest.Options{}), wantErr: "control character"},
		{name: "filename field", data: build(t, debtest.Control("hello", "1.0", "amd64")+"Filename: ../../etc/passwd\n", debtest.Options{}), wantErr: "Filename is set by the repository"},
		{name: "checksum field", data: build(t, debtest.Control("hello", "1.0", "amd64")+"SHA256: 00\n", debtest.Options{}), wantErr: "SHA256 is set by the repository"},
		{name: "slash in name", data: build(t, debtest.Control("../hello", "1.0", "amd64"), debtest.Options{}), wantErr: `package "../hello" is not a valid`},
		{name: "slash in version", data: build(t, debtest.Control("hello", "1.0/../../x", "amd64"), debtest.Options{}), wantErr: "not a valid Debian version"},
		{name: "slash in arch", data: build(t, debtest.Control("hello", "1.0", "amd64/../x"), debtest.Options{}), wantErr: "not a valid Debian architecture"},
		{name: "multi-line version", data: build(t, "Package: hello\nVersion: 1.0\n 2.0\nArchitecture: amd64\n", debtest.Options{}), wantErr: "Version spans several lines"},
		{name: "duplicate field", data: build(t, "Package: hello\nPackage: evil\nVersion: 1\nArchitecture: all\n", debtest.Options{}), wantErr: "appears twice"},
		{name: "missing version", data: build(t, "Package: hello\nArchitecture: all\n", debtest.Options{}), wantErr: "no Version field"},
		{name: "truncated", data: good[:len(good)-10], wantErr: "truncated"},
		{name: "truncated in header", data: good[:70], wantErr: "truncated"},
		{name: "no data member", data: build(t, debtest.Control("hello", "1.0", "amd64"), debtest.Options{NoData: true}), wantErr: "no data.tar member"},
		{name: "not ar", data: []byte("PK\x03\x04 zip file"), wantErr: "not an ar archive"},
		{name: "oversized control", data: build(t, debtest.Control("hello", "1.0", "amd64")+"X-Big: "+string(big)+"\n", debtest.Options{}), wantErr: "control file is"},
		{name: "oversized control member", data: good, lim: &deb.Limits{MaxControlMember: 10, MaxControlTar: 1 << 20, MaxControlFile: 1 << 20}, wantErr: "more than the limit of 10"},
		{name: "control tar bomb", data: good, lim: &deb.Limits{MaxControlMember: 1 << 20, MaxControlTar: 100, MaxControlFile: 1 << 20}, wantErr: "decompresses to more than 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lim := deb.DefaultLimits()
			if tc.lim != nil {
				lim = *tc.lim
			}
			_, err := deb.ReadBinary(bytes.NewReader(tc.data), false, lim)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, deb.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

const dscText = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: hello
Binary: hello
Architecture: any
Version: 2.10-3
Maintainer: Kiln Tests <tests@kiln.invalid>
Standards-Version: 4.6.2
Checksums-Sha1:
 f7bebf6f9c62a2295e889f66e05ce9bfaed9ace3 725946 hello_2.10.orig.tar.gz
 5e73b1c6e1ae8bd0fc1c4d5a6c0f1d9cd8e4b5ce 12688 hello_2.10-3.debian.tar.xz
Checksums-Sha256:
 31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b 725946 hello_2.10.orig.tar.gz
 6b2a2b3d9d2c3a1bd3bb2d0dcd2b0a4b58b2c6b1da1a90e1a0b3a4b7e9a6d3c1 12688 hello_2.10-3.debian.tar.xz
Files:
 6cd0ffea3884a4e79330338dcc2987d6 725946 hello_2.10.orig.tar.gz
 27b3c5a4bb8d12c6c9a0a1c3f8b9e0d1 12688 hello_2.10-3.debian.tar.xz
- -dash-escaped: no
-----BEGIN PGP SIGNATURE-----

iQ==
-----END PGP SIGNATURE-----
`

func TestParseDSC(t *testing.T) {
	t.Parallel()
	s, err := deb.ParseDSC("hello_2.10-3.dsc", []byte(strings.Replace(dscText, "- -dash-escaped: no\n", "", 1)), deb.Checksums{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "hello" || s.Version != "2.10-3" || len(s.Files) != 2 {
		t.Fatalf("got %+v", s)
	}
	if s.Files[0].MD5 != "6cd0ffea3884a4e79330338dcc2987d6" || s.Files[0].SHA256 == "" || s.Files[0].Size != 725946 {
		t.Errorf("file 0: %+v", s.Files[0])
	}
	// A dash-escaped "-dash-escaped" line is a comment-like bogus field: refused.
	if _, err := deb.ParseDSC("hello_2.10-3.dsc", []byte(dscText), deb.Checksums{}); err == nil {
		t.Error("dash-escaped bogus line accepted")
	}
}

func TestParseDSCRefusals(t *testing.T) {
	t.Parallel()
	base := strings.Replace(dscText, "- -dash-escaped: no\n", "", 1)
	cases := []struct{ name, dscName, text, wantErr string }{
		{"traversal in file list", "hello.dsc", strings.Replace(base, " hello_2.10.orig.tar.gz", " ../../../etc/shadow", 3), "path separator"},
		{"slash in dsc name", "a/hello.dsc", base, "path separator"},
		{"dotdot name", "..", base, "not a plain file name"},
		{"bad checksum", "hello.dsc", strings.Replace(base, "6cd0ffea3884a4e79330338dcc2987d6", "xyz", 1), "not a lower-case hex checksum"},
		{"size mismatch", "hello.dsc", strings.Replace(base, "6cd0ffea3884a4e79330338dcc2987d6 725946", "6cd0ffea3884a4e79330338dcc2987d6 1", 1), "another list says"},
		{"truncated signature", "hello.dsc", base[:strings.Index(base, "-----BEGIN PGP SIGNATURE")], "no signature block"},
		{"second stanza", "hello.dsc", strings.Replace(base, "Standards-Version: 4.6.2\n", "Standards-Version: 4.6.2\n\nSource: evil\n", 1), "second stanza"},
		{"directory field", "hello.dsc", strings.Replace(base, "Standards-Version: 4.6.2\n", "Directory: /etc\n", 1), "Directory is set by the repository"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := deb.ParseDSC(tc.dscName, []byte(tc.text), deb.Checksums{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestBuildIndexesGolden(t *testing.T) {
	t.Parallel()
	var entries []deb.IndexEntry
	for _, p := range []struct {
		name, arch string
		udeb       bool
	}{{"alpha", "amd64", false}, {"beta", "all", false}, {"gamma", "arm64", false}, {"alpha-udeb", "amd64", true}} {
		data := build(t, debtest.Control(p.name, "1.0-1", p.arch), debtest.Options{})
		b, err := deb.ReadBinary(bytes.NewReader(data), p.udeb, deb.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, deb.IndexEntry{Component: "main", Arch: b.Arch, UDeb: p.udeb,
			Stanza: deb.PackagesStanza(b, deb.PoolDir("main", b.Source)+"/"+b.FileName())})
	}
	src, err := deb.ParseDSC("hello_2.10-3.dsc", []byte(strings.Replace(dscText, "- -dash-escaped: no\n", "", 1)), deb.Checksums{Size: 1, MD5: "m", SHA1: "s1", SHA256: "s256", SHA512: "s512"})
	if err != nil {
		t.Fatal(err)
	}
	entries = append(entries, deb.IndexEntry{Component: "main", Arch: "source", Stanza: deb.SourcesStanza(src, deb.PoolDir("main", "hello"))})
	suite := deb.Suite{Origin: "Kiln", Label: "Kiln", Suite: "stable", Codename: "bookworm", Description: "golden",
		Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ValidFor: 7 * 24 * time.Hour, Compressions: []string{"gz", "xz"}}
	release, files, err := deb.BuildIndexes(suite, entries)
	if err != nil {
		t.Fatal(err)
	}
	golden := map[string][]byte{"Release": release}
	for _, f := range files {
		if !strings.HasSuffix(f.Path, ".gz") && !strings.HasSuffix(f.Path, ".xz") {
			golden[f.Path] = f.Data
		}
	}
	for name, got := range golden {
		path := filepath.Join("testdata", "golden", filepath.FromSlash(name))
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from golden file %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
		}
	}
	// The udeb never lands in the deb index and vice versa.
	for _, f := range files {
		if f.Path == "main/binary-amd64/Packages" && bytes.Contains(f.Data, []byte("alpha-udeb")) {
			t.Error("udeb in binary-amd64/Packages")
		}
		if f.Path == "main/debian-installer/binary-amd64/Packages" && !bytes.Contains(f.Data, []byte("Package: alpha-udeb")) {
			t.Error("udeb missing from debian-installer index")
		}
	}
}

func FuzzParseControl(f *testing.F) {
	f.Add([]byte(debtest.Control("hello", "1.0", "amd64")))
	f.Add([]byte("Package: a\n\nPackage: b\n"))
	f.Add([]byte("Files:\n 00 1 a\n .\n"))
	f.Add([]byte("Package: a\r\nVersion: 1\n"))
	f.Add([]byte(" continuation\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := deb.ParseControl(data)
		if err != nil {
			return
		}
		// What parses must write back as exactly one stanza that parses to
		// the same fields: nothing can be injected into an index.
		var b bytes.Buffer
		p.Append(&b)
		if bytes.Contains(b.Bytes(), []byte("\n\n")) {
			t.Fatalf("written stanza has a blank line: %q", b.Bytes())
		}
		q, err := deb.ParseControl(b.Bytes())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.Bytes(), err)
		}
		if len(p) != len(q) {
			t.Fatalf("re-parse changed field count %d -> %d", len(p), len(q))
		}
		for i := range p {
			if p[i] != q[i] {
				t.Fatalf("field %d changed: %q -> %q", i, p[i], q[i])
			}
		}
	})
}

func FuzzReadBinary(f *testing.F) {
	good, err := debtest.Build(debtest.Control("hello", "1.0", "amd64"), debtest.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := deb.ReadBinary(bytes.NewReader(data), false, deb.Limits{MaxControlMember: 1 << 16, MaxControlTar: 1 << 16, MaxControlFile: 1 << 14})
		if err != nil {
			return
		}
		if strings.ContainsAny(b.FileName(), "/\n") {
			t.Fatalf("unsafe file name %q", b.FileName())
		}
	})
}

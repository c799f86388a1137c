package rpm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const testRPM = "testdata/kiln-hello-1.2.3-4.noarch.rpm"

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it; review the diff):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func readTestRPM(t *testing.T) *Package {
	t.Helper()
	p, err := ReadFile(testRPM)
	if err != nil {
		t.Fatal(err)
	}
	p.FileTime = 1795600000 // the checkout's mtime is not part of the package
	return p
}

func TestReadGolden(t *testing.T) {
	t.Parallel()
	p := readTestRPM(t)
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kiln-hello.json", append(b, '\n'))
	var back Package
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("Package does not survive a JSON round trip:\n got %+v\nwant %+v", back, *p)
	}
}

// TestReadMatchesRPMQuery compares what Read finds with what rpm itself
// says about a freshly built package.
func TestReadMatchesRPMQuery(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "rpm")
	path := buildRPM(t, "kiln-query", "3.1", "7.kiln")
	p, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := []struct {
		tag string
		got string
	}{
		{"NAME", p.Name},
		{"EPOCH", strconv.FormatUint(uint64(p.Epoch), 10)},
		{"VERSION", p.Version},
		{"RELEASE", p.Release},
		{"ARCH", p.Arch},
		{"SOURCERPM", p.SourceRPM},
		{"SUMMARY", p.Summary},
		{"DESCRIPTION", p.Description},
		{"URL", p.URL},
		{"LICENSE", p.License},
		{"VENDOR", p.Vendor},
		{"GROUP", p.Group},
		{"PACKAGER", p.Packager},
		{"BUILDTIME", strconv.FormatInt(p.BuildTime, 10)},
		{"BUILDHOST", p.BuildHost},
		{"LONGSIZE", strconv.FormatInt(p.InstalledSize, 10)},
		{"LONGARCHIVESIZE", strconv.FormatInt(p.ArchiveSize, 10)},
	}
	for _, f := range fields {
		want := run(t, "", nil, "rpm", "-qp", "--nosignature", "--qf", "%{"+f.tag+"}", path)
		if f.got != want {
			t.Errorf("%s: got %q, rpm says %q", f.tag, f.got, want)
		}
	}
	lists := []struct {
		what, qf string
		got      []string
	}{
		{"provides", "[%{PROVIDENEVRS}\n]", depStrings(p.Provides)},
		{"requires", "[%{REQUIRENEVRS}\n]", depStrings(p.Requires)},
		{"conflicts", "[%{CONFLICTNEVRS}\n]", depStrings(p.Conflicts)},
		{"obsoletes", "[%{OBSOLETENEVRS}\n]", depStrings(p.Obsoletes)},
		{"recommends", "[%{RECOMMENDNEVRS}\n]", depStrings(p.Recommends)},
		{"files", "[%{FILENAMES}\n]", filePaths(p.Files)},
		{"changelog", "[%{CHANGELOGTIME} %{CHANGELOGNAME}: %{CHANGELOGTEXT}\n]", changelogStrings(p.Changelog)},
	}
	for _, l := range lists {
		want := strings.Split(strings.TrimSuffix(run(t, "", nil, "rpm", "-qp", "--nosignature", "--qf", l.qf, path), "\n"), "\n")
		if !reflect.DeepEqual(l.got, want) {
			t.Errorf("%s:\n got %q\nrpm says %q", l.what, l.got, want)
		}
	}
	if len(p.Requires) == 0 || len(p.Files) != 4 || len(p.Changelog) != 2 {
		t.Errorf("test package lost its content: %d requires, %d files, %d changelog entries", len(p.Requires), len(p.Files), len(p.Changelog))
	}
	hdr := run(t, "", nil, "rpm", "-qp", "--nosignature", "--qf", "%{HEADERIMMUTABLE}", path)
	if int64(len(hdr)/2) >= p.HeaderEnd-p.HeaderStart || p.HeaderStart <= leadSize {
		t.Errorf("header range %d-%d does not fit the %d-byte immutable region", p.HeaderStart, p.HeaderEnd, len(hdr)/2)
	}
}

// depStrings formats dependencies as rpm's *NEVRS query tags do.
func depStrings(deps []Dependency) []string {
	out := make([]string, len(deps))
	for i, d := range deps {
		s := d.Name
		if op := map[string]string{"EQ": "=", "LT": "<", "GT": ">", "LE": "<=", "GE": ">="}[compareFlag(d.Flags)]; op != "" {
			s += " " + op + " "
			if d.Epoch != "" {
				s += d.Epoch + ":"
			}
			s += d.Version
			if d.Release != "" {
				s += "-" + d.Release
			}
		}
		out[i] = s
	}
	return out
}

func filePaths(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Path
	}
	return out
}

func changelogStrings(c []ChangelogEntry) []string {
	out := make([]string, len(c))
	for i, e := range c {
		out[i] = strconv.FormatInt(e.Date, 10) + " " + e.Author + ": " + e.Text
	}
	return out
}

// TestReadRejects damages the test rpm in specific ways; each must be
// refused with ErrInvalid and a message that says what was wrong.
func TestReadRejects(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(testRPM)
	if err != nil {
		t.Fatal(err)
	}
	sigIL := int(binary.BigEndian.Uint32(orig[leadSize+8:]))
	sigLen := headerIntro + sigIL*indexEntrySize + int(binary.BigEndian.Uint32(orig[leadSize+12:]))
	mainStart := leadSize + sigLen + int(sigPadding(int64(sigLen)))
	mainIndex := mainStart + headerIntro
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	tests := []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"empty", func(b []byte) []byte { return nil }, "shorter than the 96-byte lead"},
		{"not an rpm", func(b []byte) []byte { return append([]byte("!<arch>\n"), b[8:]...) }, "bad lead magic"},
		{"lead version", func(b []byte) []byte { b[4] = 9; return b }, "format version 9"},
		{"lead only", func(b []byte) []byte { return b[:leadSize] }, "file ends before the header"},
		{"signature magic", func(b []byte) []byte { b[leadSize+1] = 0; return b }, "signature header at offset 96: bad magic"},
		{"signature header too many entries", put32(leadSize+8, 1<<20), "index entries"},
		{"signature store oversized", put32(leadSize+12, 1<<30), "exceeds the limit"},
		{"truncated in main header", func(b []byte) []byte { return b[:mainStart+100] }, "truncated"},
		{"main magic", func(b []byte) []byte { b[mainStart] = 0; return b }, "main header"},
		{"main no entries", put32(mainStart+8, 0), "0 index entries"},
		{"data offset outside store", put32(mainIndex+16+8, 0x7ffffff0), "outside the"},
		{"negative data offset", put32(mainIndex+16+8, 0xfffffff0), "outside the"},
		{"unknown type", put32(mainIndex+16+4, 42), "unknown type 42"},
		{"huge count", put32(mainIndex+16+12, 0x7fffffff), "count"},
		{"overlapping data", put32(mainIndex+2*16+8, 0), "overlaps the previous tag's"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := tc.damage(bytes.Clone(orig))
			_, err := Read(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				t.Fatal("damaged rpm accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestSplitEVR(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, epoch, version, release string }{
		{"", "", "", ""},
		{"1.0", "", "1.0", ""},
		{"1.0-2", "", "1.0", "2"},
		{"3:1.0-2.el9", "3", "1.0", "2.el9"},
		{"x:1.0", "", "x:1.0", ""},
		{"1:2", "1", "2", ""},
		{"1.0-2-3", "", "1.0-2", "3"},
	}
	for _, tc := range tests {
		e, v, r := splitEVR(tc.in)
		if e != tc.epoch || v != tc.version || r != tc.release {
			t.Errorf("splitEVR(%q) = %q, %q, %q; want %q, %q, %q", tc.in, e, v, r, tc.epoch, tc.version, tc.release)
		}
	}
}

// FuzzRead feeds damaged rpms to the parser: it must never panic nor hang,
// and whatever it accepts must be well-formed enough to write repodata for.
func FuzzRead(f *testing.F) {
	orig, err := os.ReadFile(testRPM)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(orig)
	f.Add(orig[:leadSize+16])
	f.Add(orig[:4600])
	short := bytes.Clone(orig)
	binary.BigEndian.PutUint32(short[leadSize+8:], 1)
	f.Add(short)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if p.Name == "" || p.HeaderEnd > int64(len(b)) || p.HeaderStart >= p.HeaderEnd {
			t.Fatalf("accepted an inconsistent package: %+v", p)
		}
		// Whatever the header held, the XML written for it is well-formed.
		p.Location = "p.rpm"
		for _, write := range []func(*xmlWriter, *Package){
			writePrimary, writeFilelists, func(x *xmlWriter, p *Package) { writeOther(x, p, -1) },
		} {
			var b bytes.Buffer
			b.WriteString(`<m xmlns:rpm="r">`)
			x := newXMLWriter(&b)
			write(x, p)
			x.w.Flush()
			b.WriteString(`</m>`)
			d := xml.NewDecoder(&b)
			for {
				_, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("ill-formed XML for %s: %v\n%s", p.NEVRA(), err, b.String())
				}
			}
		}
	})
}

// rewriteMain returns the test rpm with its main header rebuilt from the
// values edit returns, using this package's own header writer.
func rewriteMain(t *testing.T, edit func([]tagValue) []tagValue) []byte {
	t.Helper()
	b, err := os.ReadFile(testRPM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := readLayout(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), b[:l.mainStart]...)
	out = append(out, buildHeader(tagHeaderImmutable, edit(l.main.values()))...)
	return append(out, b[l.payloadStart:]...)
}

// TestBuildHeaderRoundTrip rebuilds both headers of an rpmbuild-made
// package from their parsed values; the result must be byte-identical.
func TestBuildHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(testRPM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := readLayout(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := buildHeader(tagHeaderImmutable, l.main.values()); !bytes.Equal(got, l.main.raw) {
		t.Errorf("rebuilt main header differs (%d bytes, was %d)", len(got), len(l.main.raw))
	}
	if got := buildHeader(tagHeaderSignatures, l.sig.values()); !bytes.Equal(got, l.sig.raw) {
		t.Errorf("rebuilt signature header differs (%d bytes, was %d)", len(got), len(l.sig.raw))
	}
}

// TestReadRejectsBadNames refuses packages whose name, version, release or
// arch could escape a directory or break an index.
func TestReadRejectsBadNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tag   uint32
		value string
		want  string
	}{
		{tagName, "../../etc/evil", `name "../../etc/evil" starts with a dot`},
		{tagName, "a/b", `contains '/'`},
		{tagName, "two\nlines", `contains '\n'`},
		{tagName, "sp ace", `contains ' '`},
		{tagVersion, "", "no version"},
		{tagRelease, "1\x00", ""}, // a NUL ends the string: release "1" is fine
		{tagArch, "x86_64/..", `contains '/'`},
	}
	for _, tc := range tests {
		b := rewriteMain(t, func(vals []tagValue) []tagValue {
			for i, v := range vals {
				if v.Tag == tc.tag {
					vals[i] = stringValue(tc.tag, tc.value)
				}
			}
			return vals
		})
		_, err := Read(bytes.NewReader(b), int64(len(b)))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("tag %d = %q: %v", tc.tag, tc.value, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("tag %d = %q: error %v, want ErrInvalid saying %q", tc.tag, tc.value, err, tc.want)
		}
	}
}

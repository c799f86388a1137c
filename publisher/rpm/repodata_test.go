package rpm

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/kiln-build/kiln/internal/testenv"
)

// repomd is the part of repomd.xml the tests check.
type repomd struct {
	Revision string `xml:"revision"`
	Data     []struct {
		Type         string `xml:"type,attr"`
		Checksum     string `xml:"checksum"`
		OpenChecksum string `xml:"open-checksum"`
		Location     struct {
			Href string `xml:"href,attr"`
		} `xml:"location"`
		Timestamp int64 `xml:"timestamp"`
		Size      int64 `xml:"size"`
		OpenSize  int64 `xml:"open-size"`
	} `xml:"data"`
}

// readRepodata parses dir/repodata/repomd.xml, checks every file it lists
// against its checksums and sizes, and returns the uncompressed files by
// type.
func readRepodata(t *testing.T, dir string) (repomd, map[string][]byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var md repomd
	if err := xml.Unmarshal(raw, &md); err != nil {
		t.Fatalf("repomd.xml: %v", err)
	}
	files := map[string][]byte{}
	for _, d := range md.Data {
		packed, err := os.ReadFile(filepath.Join(dir, d.Location.Href))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(packed); hex.EncodeToString(sum[:]) != d.Checksum || int64(len(packed)) != d.Size {
			t.Errorf("%s: checksum/size in repomd.xml do not match the file", d.Type)
		}
		zr, err := gzip.NewReader(bytes.NewReader(packed))
		if err != nil {
			t.Fatalf("%s: %v", d.Type, err)
		}
		open, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", d.Type, err)
		}
		if sum := sha256.Sum256(open); hex.EncodeToString(sum[:]) != d.OpenChecksum || int64(len(open)) != d.OpenSize {
			t.Errorf("%s: open-checksum/open-size in repomd.xml do not match the content", d.Type)
		}
		if err := xml.Unmarshal(open, new(struct{})); err != nil {
			t.Errorf("%s is not well-formed XML: %v", d.Type, err)
		}
		files[d.Type] = open
	}
	return md, files
}

func TestWriteRepodataGolden(t *testing.T) {
	t.Parallel()
	p := readTestRPM(t)
	p.Location = "pool/k/" + p.Location
	dir := t.TempDir()
	opts := RepodataOptions{Time: time.Unix(1795600100, 0), Revision: "42"}
	if err := WriteRepodata(context.Background(), dir, []*Package{p}, opts); err != nil {
		t.Fatal(err)
	}
	md, files := readRepodata(t, dir)
	if md.Revision != "42" || len(md.Data) != 3 {
		t.Errorf("repomd.xml: revision %q and %d data entries, want 42 and 3", md.Revision, len(md.Data))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "repomd.xml.golden", raw)
	for _, kind := range []string{"primary", "filelists", "other"} {
		golden(t, kind+".xml.golden", files[kind])
	}
	if _, err := os.Stat(filepath.Join(dir, "repodata", "repomd.xml.asc")); !os.IsNotExist(err) {
		t.Errorf("repomd.xml.asc written without a signer (stat: %v)", err)
	}
}

// TestWriteRepodataMatchesCreaterepo writes repodata for packages built by
// rpmbuild and compares it, package by package, with createrepo_c's.
func TestWriteRepodataMatchesCreaterepo(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "createrepo_c")
	dir := t.TempDir()
	var pkgs []*Package
	for _, b := range []struct{ template, name, loc string }{
		{specTemplate, "kiln-cr-one", "a"},
		{specTemplate, "kiln-cr-two", "b/c"},
		{plainSpecTemplate, "kiln-cr-plain", "a"},
	} {
		src := buildRPMFrom(t, b.template, b.name, "1.0", "1")
		loc := b.loc + "/" + filepath.Base(src)
		copyFile(t, src, filepath.Join(dir, loc))
		p, err := ReadFile(filepath.Join(dir, loc))
		if err != nil {
			t.Fatal(err)
		}
		p.Location = loc
		pkgs = append(pkgs, p)
	}
	srpm := buildSRPM(t, "kiln-cr-source", "1.0", "1")
	copyFile(t, srpm, filepath.Join(dir, "src", filepath.Base(srpm)))
	sp, err := ReadFile(filepath.Join(dir, "src", filepath.Base(srpm)))
	if err != nil {
		t.Fatal(err)
	}
	if sp.Arch != "src" || sp.SourceRPM != "" {
		t.Errorf("source rpm read as arch %q with source rpm %q, want src and none", sp.Arch, sp.SourceRPM)
	}
	sp.Location = "src/" + filepath.Base(srpm)
	pkgs = append(pkgs, sp)
	ref := t.TempDir()
	run(t, "", nil, "createrepo_c", "--quiet", "--no-database", "--outputdir", ref, dir)
	if err := WriteRepodata(context.Background(), dir, pkgs, RepodataOptions{}); err != nil {
		t.Fatal(err)
	}
	_, ours := readRepodata(t, dir)
	_, theirs := readRepodata(t, ref)
	for _, kind := range []string{"primary", "filelists", "other"} {
		o, th := packageChunks(ours[kind]), packageChunks(theirs[kind])
		if len(o) != len(pkgs) {
			t.Errorf("%s: %d packages, want %d", kind, len(o), len(pkgs))
		}
		if !slices.Equal(o, th) {
			t.Errorf("%s differs from createrepo_c's:\n--- ours\n%s\n--- createrepo_c\n%s", kind, strings.Join(o, ""), strings.Join(th, ""))
		}
		if hd, thd := headOf(ours[kind]), headOf(theirs[kind]); hd != thd {
			t.Errorf("%s: document element %q, createrepo_c writes %q", kind, hd, thd)
		}
	}
}

// packageChunks splits a metadata file into its <package> elements, sorted.
func packageChunks(b []byte) []string {
	s := string(b)
	var out []string
	for {
		i := strings.Index(s, "<package ")
		if i < 0 {
			break
		}
		j := strings.Index(s[i:], "</package>")
		out = append(out, s[i:i+j+len("</package>")])
		s = s[i+j:]
	}
	slices.Sort(out)
	return out
}

func headOf(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "<package "); i >= 0 {
		return s[:i]
	}
	return s
}

func TestWriteRepodataReplaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := readTestRPM(t)
	dir := t.TempDir()
	if err := WriteRepodata(ctx, dir, []*Package{p}, RepodataOptions{Time: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	first, _ := readRepodata(t, dir)
	// An interrupted earlier run leaves a temporary directory behind.
	stale := filepath.Join(dir, tmpRepodataPfx+"crashed")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteRepodata(ctx, dir, nil, RepodataOptions{Time: time.Unix(2, 0)}); err != nil {
		t.Fatal(err)
	}
	second, files := readRepodata(t, dir)
	if first.Revision == second.Revision || !bytes.Contains(files["primary"], []byte(`packages="0"`)) {
		t.Errorf("second write did not replace the first: revisions %q, %q", first.Revision, second.Revision)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "repodata" {
		t.Errorf("repository holds %v, want only repodata", entries)
	}
	md, err := os.ReadDir(filepath.Join(dir, "repodata"))
	if err != nil {
		t.Fatal(err)
	}
	// The first set's files stay for one generation, the new set is
	// complete, and nothing else is there.
	want := map[string]bool{"repomd.xml": true}
	for _, d := range append(first.Data, second.Data...) {
		want[strings.TrimPrefix(d.Location.Href, "repodata/")] = true
	}
	var got []string
	for _, e := range md {
		got = append(got, e.Name())
		if !want[e.Name()] {
			t.Errorf("unexpected file repodata/%s", e.Name())
		}
	}
	if len(md) != len(want) {
		t.Errorf("repodata holds %v, want %d files: the new set, the previous set's metadata and repomd.xml", got, len(want))
	}
	// A third write drops the first set's files.
	if err := WriteRepodata(ctx, dir, []*Package{p, p}, RepodataOptions{Time: time.Unix(3, 0)}); err != nil {
		t.Fatal(err)
	}
	third, _ := readRepodata(t, dir)
	for _, d := range first.Data {
		if _, err := os.Stat(filepath.Join(dir, d.Location.Href)); !os.IsNotExist(err) {
			t.Errorf("%s of the first set still there after two more writes", d.Location.Href)
		}
	}
	for _, d := range append(second.Data, third.Data...) {
		if _, err := os.Stat(filepath.Join(dir, d.Location.Href)); err != nil {
			t.Errorf("%s missing: %v", d.Location.Href, err)
		}
	}
}

func TestWriteRepodataRefusesBadLocation(t *testing.T) {
	t.Parallel()
	for _, loc := range []string{"", "/etc/passwd", "../x.rpm", "a/../../x.rpm", "a//b.rpm", "./a.rpm", `a\b.rpm`, "a\nb.rpm", ".."} {
		p := readTestRPM(t)
		p.Location = loc
		dir := t.TempDir()
		err := WriteRepodata(context.Background(), dir, []*Package{p}, RepodataOptions{})
		if err == nil {
			t.Errorf("location %q accepted", loc)
			continue
		}
		if loc != "" && !strings.Contains(err.Error(), "kiln-hello") {
			t.Errorf("error for location %q does not name the package: %v", loc, err)
		}
		if _, serr := os.Stat(filepath.Join(dir, "repodata")); !os.IsNotExist(serr) {
			t.Errorf("location %q: repodata written despite the error", loc)
		}
	}
}

func TestWriteRepodataSigned(t *testing.T) {
	t.Parallel()
	ent, err := openpgp.NewEntity("Kiln Test", "", "test@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := readTestRPM(t)
	if err := WriteRepodata(context.Background(), dir, []*Package{p}, RepodataOptions{Signer: testSigner{entity: ent}}); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	asc, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(asc, []byte("-----BEGIN PGP SIGNATURE-----")) {
		t.Errorf("repomd.xml.asc is not armored: %.40q", asc)
	}
	ring := openpgp.EntityList{ent}
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(md), bytes.NewReader(asc), nil); err != nil {
		t.Errorf("repomd.xml.asc does not verify: %v", err)
	}
	md[len(md)/2] ^= 1
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(md), bytes.NewReader(asc), nil); err == nil {
		t.Error("repomd.xml.asc verifies a changed repomd.xml")
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, text, attr string }{
		{"plain", "plain", "plain"},
		{`a<b>&"c"`, `a&lt;b&gt;&amp;"c"`, `a&lt;b&gt;&amp;&quot;c&quot;`},
		{"</name><injected/>", "&lt;/name&gt;&lt;injected/&gt;", "&lt;/name&gt;&lt;injected/&gt;"},
		{"line\nbreak\ttab\rcr", "line\nbreak\ttab&#13;cr", "line&#10;break&#9;tab&#13;cr"},
		{"nul\x00bell\x07", "nulbell", "nulbell"},
		{"latin1 \xe9", "latin1 \uFFFD", "latin1 \uFFFD"},
		{"ünïcode ✓", "ünïcode ✓", "ünïcode ✓"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		x := newXMLWriter(&b)
		x.text(tc.in)
		x.w.Flush()
		if b.String() != tc.text {
			t.Errorf("text(%q) = %q, want %q", tc.in, b.String(), tc.text)
		}
		b.Reset()
		x.escape(tc.in, true)
		x.w.Flush()
		if b.String() != tc.attr {
			t.Errorf("attr(%q) = %q, want %q", tc.in, b.String(), tc.attr)
		}
	}
}

// TestWriteRepodataCancelled checks that a cancelled write leaves the live
// repodata as it was and no temporary directory behind.
func TestWriteRepodataCancelled(t *testing.T) {
	t.Parallel()
	p := readTestRPM(t)
	dir := t.TempDir()
	if err := WriteRepodata(context.Background(), dir, []*Package{p}, RepodataOptions{Time: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteRepodata(ctx, dir, []*Package{p, p}, RepodataOptions{Time: time.Unix(2, 0)}); err == nil {
		t.Fatal("cancelled write succeeded")
	}
	after, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("cancelled write changed repomd.xml")
	}
	readRepodata(t, dir)
	if left, _ := filepath.Glob(filepath.Join(dir, tmpRepodataPfx+"*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

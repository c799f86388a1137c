package itest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

// debFile is a file of a Debian source package, pinned by its sha256.
type debFile struct{ name, sha256 string }

// Debian's hello 2.10-3 and cowsay 3.03+dfsg2-8 (bookworm; cowsay has 21
// quilt patches).
var (
	helloFiles = []debFile{
		{"hello_2.10-3.dsc", "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790"},
		{"hello_2.10.orig.tar.gz", "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"},
		{"hello_2.10.orig.tar.gz.asc", "4ea69de913428a4034d30dcdcb34ab84f5c4a76acf9040f3091f0d3fac411b60"},
		{"hello_2.10-3.debian.tar.xz", "60ee7a466808301fbaa7fea2490b5e7a6d86f598956fb3e79c71b3295dc1f249"},
	}
	cowsayFiles = []debFile{
		{"cowsay_3.03+dfsg2-8.dsc", "a08bd8ef3d3c84471ae5fdd0383edf5ab1e8721762cb55a456408ec1d2de2cd4"},
		{"cowsay_3.03+dfsg2.orig.tar.gz", "3b89965c7d6b19f321867e59d14d4aec820d36068f56d2b1e783498beeb4183e"},
		{"cowsay_3.03+dfsg2-8.debian.tar.xz", "d0c8832b05408498869603c8c7d30d75da72bd491561be598875529cd4980341"},
	}
)

// debianSource puts the files of a source package from Debian's archive
// (pool is its directory, e.g. "main/h/hello") into dir, each checked
// against its sha256. Downloads are kept in $KILN_TEST_CACHE/debian-sources
// (default /var/cache/kiln-test) for the next run.
func debianSource(t *testing.T, dir, pool string, files []debFile) {
	t.Helper()
	mirror := debianMirror()
	cacheRoot := os.Getenv("KILN_TEST_CACHE")
	if cacheRoot == "" {
		cacheRoot = "/var/cache/kiln-test"
	}
	cache := filepath.Join(cacheRoot, "debian-sources")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		cached := filepath.Join(cache, f.name)
		data, err := os.ReadFile(cached)
		if err != nil || sha256Hex(data) != f.sha256 {
			resp, err := http.Get(mirror + "/pool/" + pool + "/" + f.name)
			testenv.Require(t, err == nil && resp.StatusCode == http.StatusOK, "Debian's archive at "+mirror+" serving "+f.name)
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("download %s: %v", f.name, err)
			}
			if got := sha256Hex(data); got != f.sha256 {
				t.Fatalf("%s from %s: sha256 %s, want %s", f.name, mirror, got, f.sha256)
			}
			if err := os.WriteFile(cached+".tmp", data, 0o644); err == nil {
				os.Rename(cached+".tmp", cached)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// debianMirror is Debian's archive as the tests reach it.
func debianMirror() string {
	if m := os.Getenv("KILN_TEST_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// command runs a command in dir with env added and fails t on error.
func command(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 3000))
	}
	return string(out)
}

// layoutBuild is one Debian git layout, built in its own release.
type layoutBuild struct {
	release, pkg, version string
	sources               []string
	// inLog must appear in the build's log.
	inLog []string
	// binaries and, for each, a command run from the unpacked package
	// (its root is $ROOT) with the output it must print.
	binaries map[string][2]string
	// alongside are packages of Debian's unpacked with the binaries, that
	// the command needs and this system may lack.
	alongside []string
	// origSHA256, when set, is the sha256 the published upstream tarball
	// origName must have.
	origName, origSHA256 string
	// reference is the tree the published source package must unpack to
	// (debian/changelog aside, where the release's version is added).
	reference string
}

// TestDebianLayoutsPublished builds a real Debian package in each layout
// maintainers keep it in git, in one fleet run (a worker, two slots), each
// into its own release with --publish; then apt judges each signed
// repository: the binaries install (apt resolves them against this
// system and Debian's bookworm, and they run unpacked), the source
// package downloads with apt-get source and unpacks with dpkg-source -x
// to the tree Debian publishes, and pristine-tar's upstream tarball is
// Debian's, byte for byte.
func TestDebianLayoutsPublished(t *testing.T) {
	for _, tool := range []string{"gbp", "pristine-tar", "dpkg-source"} {
		testenv.Tool(t, tool)
	}
	p := newPipelineReleases(t, nil, nil, "gbp", "pc", "dgit", "native", "split", "swap")
	c, g, dir := p.c, p.g, p.dir
	dl := filepath.Join(dir, "debian")
	os.MkdirAll(dl, 0o755)
	debianSource(t, dl, "main/h/hello", helloFiles)
	debianSource(t, dl, "main/c/cowsay", cowsayFiles)
	gitEnv := []string{"HOME=" + dir, "GIT_AUTHOR_NAME=Kiln Tests", "GIT_AUTHOR_EMAIL=tests@kiln.invalid",
		"GIT_COMMITTER_NAME=Kiln Tests", "GIT_COMMITTER_EMAIL=tests@kiln.invalid", "GIT_CONFIG_NOSYSTEM=1"}

	// The trees Debian's tools make. dpkg-source -x gives the patches
	// applied with .pc/ (as apt-get source does); without .pc/ it is
	// what dgit leaves.
	ref := filepath.Join(dir, "reference")
	os.MkdirAll(ref, 0o755)
	helloRef, cowsayRef := filepath.Join(ref, "hello-2.10"), filepath.Join(ref, "cowsay-3.03+dfsg2")
	command(t, ref, nil, "dpkg-source", "--no-check", "-x", filepath.Join(dl, "hello_2.10-3.dsc"), helloRef)
	command(t, ref, nil, "dpkg-source", "--no-check", "-x", filepath.Join(dl, "cowsay_3.03+dfsg2-8.dsc"), cowsayRef)
	series := strings.Fields(string(mustRead(t, filepath.Join(cowsayRef, "debian/patches/series"))))

	// gbp import-dsc --pristine-tar: patches unapplied, an upstream
	// branch and tag, and the tarball's delta on the pristine-tar branch.
	hello := filepath.Join(g.base, "hello")
	os.MkdirAll(hello, 0o755)
	command(t, hello, gitEnv, "git", "init", "--quiet", "--initial-branch=master")
	command(t, hello, gitEnv, "gbp", "import-dsc", "--pristine-tar", "--no-sign-tags", filepath.Join(dl, "hello_2.10-3.dsc"))
	if out := command(t, hello, gitEnv, "git", "branch", "--list", "pristine-tar"); !strings.Contains(out, "pristine-tar") {
		t.Fatalf("gbp import-dsc made no pristine-tar branch")
	}
	// Patches applied, with and without .pc/.
	pcURL, _ := g.repo(t, "cowsay-pc", cowsayRef)
	dgitTree := filepath.Join(dir, "cowsay-dgit")
	command(t, dir, nil, "cp", "-a", cowsayRef, dgitTree)
	os.RemoveAll(filepath.Join(dgitTree, ".pc"))
	dgitURL, _ := g.repo(t, "cowsay-dgit", dgitTree)
	// Two repositories: upstream's code as released, Debian's debian/.
	code, packaging := filepath.Join(dir, "cowsay-code"), filepath.Join(dir, "cowsay-packaging")
	os.MkdirAll(code, 0o755)
	os.MkdirAll(packaging, 0o755)
	command(t, code, nil, "tar", "--strip-components=1", "-xzf", filepath.Join(dl, "cowsay_3.03+dfsg2.orig.tar.gz"))
	command(t, packaging, nil, "tar", "-xJf", filepath.Join(dl, "cowsay_3.03+dfsg2-8.debian.tar.xz"))
	codeURL, _ := g.repo(t, "cowsay-code", code)
	pkgURL, _ := g.repo(t, "cowsay-packaging", packaging)
	nativeURL, _ := g.repo(t, "hello-native", "../worker/pkgbuild/testdata/hello-native")

	helloRun := [2]string{"$ROOT/usr/bin/hello", "Hello, world!"}
	cowsayRun := [2]string{"COWPATH=$ROOT/usr/share/cowsay/cows PERL5LIB=$ROOT/usr/lib/x86_64-linux-gnu/perl5/5.36 perl $ROOT/usr/games/cowsay moo", "< moo >"}
	charwidth := []string{"libtext-charwidth-perl"}
	unpacks := "kiln: the source package unpacks"
	twoRepos := "layout: two repositories (code + packaging), format 3.0 (quilt), patches: unapplied"
	builds := []layoutBuild{
		{release: "gbp", pkg: "hello", version: "2.10-3+rel1", sources: []string{g.url + "hello@master"},
			inLog:    []string{"upstream tarball: hello_2.10.orig.tar.gz from the pristine-tar branch of " + g.url + "hello", "layout: one repository, format 3.0 (quilt)", "DEB_BUILD_PROFILES=nocheck", unpacks},
			binaries: map[string][2]string{"hello": helloRun}, origName: "hello_2.10.orig.tar.gz", origSHA256: helloFiles[1].sha256, reference: helloRef},
		{release: "pc", pkg: "cowsay", version: "3.03+dfsg2-8+rel1", sources: []string{pcURL + "@master"},
			inLog:    []string{fmt.Sprintf("patches: applied with .pc/ (%d reverted for the upstream tarball)", len(series)), unpacks},
			binaries: map[string][2]string{"cowsay": cowsayRun}, alongside: charwidth, reference: cowsayRef},
		{release: "dgit", pkg: "cowsay", version: "3.03+dfsg2-8+rel1", sources: []string{dgitURL + "@master"},
			inLog:    []string{fmt.Sprintf("patches: applied without .pc/ (%d reverted for the upstream tarball)", len(series)), unpacks},
			binaries: map[string][2]string{"cowsay": cowsayRun}, alongside: charwidth, reference: cowsayRef},
		{release: "native", pkg: "hello-native", version: "1.2+rel1", sources: []string{nativeURL + "@master"},
			inLog:    []string{"layout: one repository, format 3.0 (native)", unpacks},
			binaries: map[string][2]string{"hello-native": {"$ROOT/usr/bin/hello-native", "hello from a native package"}}, reference: "../worker/pkgbuild/testdata/hello-native"},
		{release: "split", pkg: "cowsay", version: "3.03+dfsg2-8+rel1", sources: []string{codeURL + "@master", pkgURL + "@master"},
			inLog: []string{twoRepos, unpacks}, binaries: map[string][2]string{"cowsay": cowsayRun}, alongside: charwidth, reference: cowsayRef},
		// Unmarked, the code comes first; marked with the suffixes, the
		// order does not matter.
		{release: "swap", pkg: "cowsay", version: "3.03+dfsg2-8+rel1", sources: []string{pkgURL + "@master#packaging", codeURL + "@master#code"},
			inLog: []string{twoRepos, unpacks}, binaries: map[string][2]string{"cowsay": cowsayRun}, alongside: charwidth, reference: cowsayRef},
	}

	// One fleet run: every build submitted at once, the worker runs two at
	// a time.
	type result struct {
		out, errOut string
		code        int
	}
	results := make([]result, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "--release", b.release, "--target", p.target, "--package", b.pkg, "--profiles", "nocheck", "--publish", "--wait"}
			for _, s := range b.sources {
				args = append(args, "--source", s)
			}
			out, errOut, code := c.cliTimeout(30*time.Minute, args...)
			results[i] = result{out, errOut, code}
		}()
	}
	wg.Wait()
	for i, b := range builds {
		r := results[i]
		if r.code != 0 || !strings.Contains(r.errOut, "publish: published") {
			t.Errorf("%s: build of %s: exit %d\n%s\n%s", b.release, b.pkg, r.code, tail(r.out, 4000), r.errOut)
			continue
		}
		for _, want := range append(b.inLog, b.pkg+"_"+b.version) {
			if !strings.Contains(r.out, want) {
				t.Errorf("%s: the log lacks %q:\n%s", b.release, want, tail(r.out, 4000))
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// apt judges each repository beside Debian's bookworm, where the
	// packages' dependencies come from, as on a user's system.
	aptDir := filepath.Join(dir, "apt")
	debian := fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main", debianMirror())
	opts := isolatedApt(aptDir, debian)
	for _, b := range builds {
		t.Run(b.release, func(t *testing.T) { judgeWithApt(t, p, aptDir, opts, debian, b) })
	}
}

// judgeWithApt has apt judge a layout's repository in the isolated apt
// configuration opts (see isolatedApt) in aptDir, with Debian's source
// line debian and the repository, signed with the operator's key.
func judgeWithApt(t *testing.T, p *pipeline, aptDir string, opts []string, debian string, b layoutBuild) {
	repo := fmt.Sprintf("[signed-by=%s] http://%s/%s-%s bookworm main", filepath.Join(p.dir, "pub.asc"), p.mirrorAddr, b.release, p.target)
	if err := os.WriteFile(filepath.Join(aptDir, "sources.list"), []byte(debian+"\ndeb "+repo+"\ndeb-src "+repo+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aptDir = filepath.Join(aptDir, b.release)
	os.MkdirAll(aptDir, 0o755)
	aptGet := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("apt-get", append(opts, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "W: ") {
			t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	aptGet(aptDir, "update")

	// The binaries: apt installs them on this system (simulated: their
	// dependencies resolve against what is installed), and each runs from
	// the package apt downloads.
	for bin, check := range b.binaries {
		out := aptGet(aptDir, "install", "--simulate", "--no-install-recommends", bin+"="+b.version)
		if !strings.Contains(out, "Inst "+bin+" ("+b.version+" ") {
			t.Errorf("apt-get install --simulate %s=%s does not install it:\n%s", bin, b.version, out)
		}
		dl := filepath.Join(aptDir, "dl-"+bin)
		os.MkdirAll(dl, 0o755)
		aptGet(dl, "download", bin+"="+b.version)
		debs, _ := filepath.Glob(filepath.Join(dl, bin+"_*.deb"))
		if len(debs) != 1 {
			t.Fatalf("apt-get download %s: %v", bin, debs)
		}
		root := filepath.Join(dl, "root")
		command(t, dl, nil, "dpkg-deb", "-x", debs[0], root)
		for _, pkg := range b.alongside {
			aptGet(dl, "download", pkg)
			m, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
			if len(m) != 1 {
				t.Fatalf("apt-get download %s: %v", pkg, m)
			}
			command(t, dl, nil, "dpkg-deb", "-x", m[0], root)
		}
		if out := command(t, dl, []string{"ROOT=" + root}, "sh", "-c", check[0]); !strings.Contains(out, check[1]) {
			t.Errorf("%s from the repository printed %q, want %q", bin, out, check[1])
		}
	}

	// The source package: apt-get source fetches it (checking every file
	// against the signed Sources index) and dpkg-source -x unpacks it.
	src := filepath.Join(aptDir, "src")
	os.MkdirAll(src, 0o755)
	aptGet(src, "source", "--download-only", b.pkg+"="+b.version)
	dsc := filepath.Join(src, b.pkg+"_"+b.version+".dsc")
	tree := filepath.Join(src, "tree")
	command(t, src, nil, "dpkg-source", "-x", dsc, tree)
	if b.origSHA256 != "" {
		if got := sha256Hex(mustRead(t, filepath.Join(src, b.origName))); got != b.origSHA256 {
			t.Errorf("published %s has sha256 %s; the .dsc in Debian's archive has %s", b.origName, got, b.origSHA256)
		}
	}
	// It unpacks to the tree Debian's own tools give, the release's
	// changelog entry aside.
	cmd := exec.Command("diff", "-rq", "-x", ".pc", "-x", ".git", b.reference, tree)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("diff %s %s: %v\n%s", b.reference, tree, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasSuffix(line, "/debian/changelog differ") {
			t.Errorf("the unpacked source package differs from Debian's tree: %s", line)
		}
	}
}

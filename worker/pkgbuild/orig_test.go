package pkgbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestOrigFromWhereTheMaintainerKeepsIt: a tarball committed beside
// debian/ in the packaging repository is used as it is (its compression
// too); an upstream/<version> tag is used before the code commit.
func TestOrigFromWhereTheMaintainerKeepsIt(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	testenv.Tool(t, "xz")
	srv := newGitServer(t)
	codeC := srv.repo(t, "code", "hello-split-code", nil)
	// The upstream tarball as upstream released it, xz-compressed.
	kept := filepath.Join(t.TempDir(), "hello-split_3.0.orig.tar.xz")
	tarCmd := exec.Command("sh", "-c", "tar --owner=0 --group=0 --transform 's,^\\.,hello-split-3.0,' -cJf "+kept+" .")
	tarCmd.Dir = "testdata/hello-split-code"
	if out, err := tarCmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	keptData, _ := os.ReadFile(kept)
	pkgC := srv.repo(t, "packaging", "hello-split-packaging", func(dir string) {
		os.WriteFile(filepath.Join(dir, "hello-split_3.0.orig.tar.xz"), keptData, 0o644)
	})
	quiltC := srv.repo(t, "tagged", "hello-quilt", nil)
	runGit(t, filepath.Join(srv.base, "tagged"), "tag", "upstream/2.0")

	var lastRecord executor.Record
	run := func(t *testing.T, pb executor.PackageBuild) (string, string) {
		b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
		job := newJob(t, pb)
		var log bytes.Buffer
		res, err := b.Run(context.Background(), job, &log)
		if err != nil || res.Failed() {
			t.Fatalf("Run: %v %+v\n%s", err, res, log.String())
		}
		if res.Record != nil {
			lastRecord = *res.Record
		}
		return log.String(), job.WorkDir
	}
	t.Run("committed in the packaging repository", func(t *testing.T) {
		log, dir := run(t, executor.PackageBuild{Package: "hello-split", Sources: []executor.Source{
			{URL: srv.url("code"), Commit: codeC, Role: "code"}, {URL: srv.url("packaging"), Commit: pkgC, Role: "packaging"}}})
		if !strings.Contains(log, "upstream tarball: hello-split_3.0.orig.tar.xz committed in source "+srv.url("packaging")) {
			t.Errorf("log does not say the committed tarball was used:\n%s", log)
		}
		got, err := os.ReadFile(filepath.Join(dir, outDir, "hello-split_3.0.orig.tar.xz"))
		if err != nil || !bytes.Equal(got, keptData) {
			t.Errorf("published orig tarball is not the committed one: %v", err)
		}
	})
	t.Run("upstream tag", func(t *testing.T) {
		log, _ := run(t, executor.PackageBuild{Package: "hello-quilt", Sources: []executor.Source{{URL: srv.url("tagged"), Commit: quiltC}}})
		if !strings.Contains(log, "upstream tarball: hello-quilt_2.0.orig.tar.gz made from tag upstream/2.0 of "+srv.url("tagged")) {
			t.Errorf("log does not say the tag was used:\n%s", log)
		}
		if !strings.Contains(lastRecord.SourceLayout, "upstream tarball: hello-quilt_2.0.orig.tar.gz made from tag upstream/2.0") {
			t.Errorf("the build record does not say where the tarball came from: %q", lastRecord.SourceLayout)
		}
	})
}

// debianFile downloads a file of hello 2.10-3 from Debian's archive and
// checks its sha256.
func debianFile(t testing.TB, dir, name, sum string) string {
	t.Helper()
	mirror := os.Getenv("KILN_TEST_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	resp, err := http.Get(mirror + "/pool/main/h/hello/" + name)
	testenv.Require(t, err == nil && resp.StatusCode == http.StatusOK, "Debian's archive at "+mirror)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != sum {
		t.Fatalf("%s: sha256 %x, want %s", name, h, sum)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const helloOrigSum = "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"

// gbpHello serves the git repository `gbp import-dsc --pristine-tar` makes
// of Debian's hello 2.10-3 (as "hello") and returns its server and head.
func gbpHello(t testing.TB) (*gitServer, string) {
	t.Helper()
	dl := t.TempDir()
	dsc := debianFile(t, dl, "hello_2.10-3.dsc", "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790")
	debianFile(t, dl, "hello_2.10.orig.tar.gz", helloOrigSum)
	debianFile(t, dl, "hello_2.10.orig.tar.gz.asc", "4ea69de913428a4034d30dcdcb34ab84f5c4a76acf9040f3091f0d3fac411b60")
	debianFile(t, dl, "hello_2.10-3.debian.tar.xz", "60ee7a466808301fbaa7fea2490b5e7a6d86f598956fb3e79c71b3295dc1f249")
	srv := newGitServer(t)
	repo := filepath.Join(srv.base, "hello")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, repo, "init", "--quiet", "--initial-branch=master")
	gbp := exec.Command("gbp", "import-dsc", "--pristine-tar", "--no-sign-tags", dsc)
	gbp.Dir = repo
	gbp.Env = append(os.Environ(), "HOME="+repo, "GIT_AUTHOR_NAME=Kiln Tests", "GIT_AUTHOR_EMAIL=tests@kiln.invalid",
		"GIT_COMMITTER_NAME=Kiln Tests", "GIT_COMMITTER_EMAIL=tests@kiln.invalid", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := gbp.CombinedOutput(); err != nil {
		t.Fatalf("gbp import-dsc: %v\n%s", err, out)
	}
	return srv, strings.TrimSpace(runGit(t, repo, "rev-parse", "HEAD"))
}

// TestIntegrationPristineTar builds Debian's hello 2.10-3 from the git
// repository gbp import-dsc --pristine-tar makes of it: the orig tarball
// Kiln publishes is the one in Debian's archive, byte for byte.
func TestIntegrationPristineTar(t *testing.T) {
	testenv.Tool(t, "gbp")
	testenv.Tool(t, "pristine-tar")
	br, target := buildroottest.New(t)
	srv, commit := gbpHello(t)

	b := New(testConfig(t), br, buildroottest.Logger(t))
	// nocheck: hello's test suite is not what this test is about.
	res, log, workDir := runBuild(t, b, executor.PackageBuild{Package: "hello", Target: target, Release: "mos-9.0", Profiles: []string{"nocheck"},
		Sources: []executor.Source{{URL: srv.url("hello"), Commit: commit}}})
	if res.Failed() {
		t.Fatalf("build failed: %s\n%s", res.Reason, log)
	}
	for _, want := range []string{"upstream tarball: hello_2.10.orig.tar.gz from the pristine-tar branch of " + srv.url("hello"), "kiln: the source package unpacks",
		"DEB_BUILD_PROFILES=nocheck"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	data, err := os.ReadFile(filepath.Join(workDir, outDir, "hello_2.10.orig.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != helloOrigSum {
		t.Errorf("published hello_2.10.orig.tar.gz has sha256 %x, Debian's has %s", h, helloOrigSum)
	}
}

package pkgbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestIntegrationSignedReleaseRepository builds against a release
// repository the project's publisher signed, named the way an operator
// does (signed-by= an armored key file on the worker host): apt in the
// buildroot verifies it with the key the worker hands in, and refuses it
// with another key (key_file, a binary keyring).
func TestIntegrationSignedReleaseRepository(t *testing.T) {
	br, target := buildroottest.New(t)
	key := signtest.Generate(t, "ed25519", "")
	stranger := signtest.Generate(t, "ed25519", "")
	public := publishedRepo(t, key, "kiln-test-dep")
	// The operator's key as gpg exports it, armored.
	armored := filepath.Join(t.TempDir(), "mos.asc")
	cmd := exec.Command(testenv.Tool(t, "gpg"), "--armor", "--export", key.Fingerprint)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+key.Home)
	out, err := cmd.Output()
	if err != nil || len(out) == 0 {
		t.Fatalf("gpg --export: %v", err)
	}
	if err := os.WriteFile(armored, out, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newGitServer(t)
	c := srv.repo(t, "packages/hello-withdep", "hello-withdep", nil)
	pb := executor.PackageBuild{Package: "hello-withdep", Target: target, Release: "mos-9.0",
		Sources: []executor.Source{{URL: srv.url("packages/hello-withdep"), Commit: c}}}
	builder := func(r Repository) *Builder {
		cfg := testConfig(t)
		cfg.Repositories = []Repository{r}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		return New(cfg, br, buildroottest.Logger(t))
	}

	t.Run("signed-by the operator's key", func(t *testing.T) {
		b := builder(Repository{Release: "mos-9.0", Apt: "deb [signed-by=" + armored + "] file://" + public + " bookworm main"})
		res, log, _ := runBuild(t, b, pb)
		if res.Failed() {
			t.Fatalf("build failed: %s\n%s", res.Reason, log)
		}
		if !strings.Contains(log, "building hello-withdep against: kiln-test-dep 1.0 from the release repository") {
			t.Errorf("the dependency from the signed repository was not used:\n%s", log)
		}
		if strings.Contains(log, "not verified") || strings.Contains(log, "trusted=yes") {
			t.Errorf("the repository was taken unverified:\n%s", log)
		}
	})
	t.Run("wrong key refused", func(t *testing.T) {
		b := builder(Repository{Release: "mos-9.0", Apt: "deb file://" + public + " bookworm main", KeyFile: stranger.Keyring})
		res, log, _ := runBuild(t, b, pb)
		if !res.Failed() || !strings.Contains(res.Reason, "build dependencies failed") {
			t.Fatalf("result = %+v, want phase 1 to fail\n%s", res, log)
		}
		if !strings.Contains(log, "NO_PUBKEY") {
			t.Errorf("log does not say the signature's key is unknown:\n%s", log)
		}
	})
}

// publishedRepo publishes testdata/<pkg>, built with dpkg-deb, with the
// project's publisher signing with key, and returns the public directory
// (suite bookworm, component main).
func publishedRepo(t *testing.T, key *signtest.OperatorKey, pkg string) string {
	t.Helper()
	goTool := testenv.Tool(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "publisher")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/kiln-build/kiln/publisher").CombinedOutput(); err != nil {
		t.Fatalf("go build publisher: %v\n%s", err, out)
	}
	deb := filepath.Join(dir, pkg+"_1.0_all.deb")
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	for _, argv := range [][]string{
		{"dpkg-deb", "--root-owner-group", "--build", filepath.Join("testdata", pkg), deb},
		append([]string{bin, "include", "--repo", "mos", "--format", "deb", "--suite", "bookworm", deb}, base...),
		append([]string{bin, "publish", "--repo", "mos"}, base...),
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	return filepath.Join(root, "public", "mos")
}

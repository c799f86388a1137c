package rpm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// dnfInstall runs the real dnf against the repository served at url, in an
// installroot and configuration of its own, with package and repomd.xml
// signature checks on, and reports dnf's output and error.
func dnfInstall(t *testing.T, url string, pubKey []byte, pkg string) (string, error) {
	t.Helper()
	testenv.Root(t)
	testenv.Tool(t, "dnf")
	base := t.TempDir()
	keyFile := filepath.Join(base, "key.asc")
	reposDir := filepath.Join(base, "repos.d")
	root := filepath.Join(base, "root")
	for _, d := range []string{reposDir, root, filepath.Join(base, "log"), filepath.Join(base, "cache"), filepath.Join(base, "persist")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(keyFile, pubKey, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "dnf.conf")
	if err := os.WriteFile(conf, []byte("[main]\ngpgcheck=1\nrepo_gpgcheck=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := fmt.Sprintf(`[kiln-test]
name=kiln test
baseurl=%s/
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=file://%s
metadata_expire=0
skip_if_unavailable=False
`, url, keyFile)
	if err := os.WriteFile(filepath.Join(reposDir, "kiln-test.repo"), []byte(repo), 0o644); err != nil {
		t.Fatal(err)
	}
	return runErr("", nil, "dnf", "-y", "--installroot="+root, "--config="+conf,
		"--setopt=reposdir="+reposDir, "--setopt=cachedir="+filepath.Join(base, "cache"),
		"--setopt=logdir="+filepath.Join(base, "log"), "--setopt=persistdir="+filepath.Join(base, "persist"),
		"--setopt=install_weak_deps=False", "--releasever=1", "--disablerepo=*", "--enablerepo=kiln-test",
		"--downloadonly", "--destdir="+filepath.Join(base, "download"), "install", pkg)
}

// serve serves dir over HTTP on loopback for the test's lifetime.
func serve(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDnfJudgesRepository publishes signed repositories and lets the real
// dnf, with gpgcheck and repo_gpgcheck on, install from them or refuse.
func TestDnfJudgesRepository(t *testing.T) {
	t.Parallel()
	testenv.Root(t)
	testenv.Tool(t, "dnf")
	key := gpgKey(t, "rsa3072")
	stranger := gpgKey(t, "rsa3072")
	signer := newTestSigner(t, key.Private)
	built := buildRPMFrom(t, plainSpecTemplate, "kiln-plain", "2.0", "1")
	ctx := context.Background()

	// publish makes a repository with the rpm under pool/, signed with
	// pkgSigner (nil: unsigned) and repomd.xml signed with mdSigner, then
	// lets tamper change it.
	publish := func(t *testing.T, pkgSigner, mdSigner Signer, tamper func(dir string)) string {
		dir := t.TempDir()
		dst := filepath.Join(dir, "pool", "k", filepath.Base(built))
		if pkgSigner != nil {
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := SignFile(ctx, pkgSigner, built, dst); err != nil {
				t.Fatal(err)
			}
		} else {
			copyFile(t, built, dst)
		}
		p, err := ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		p.Location = "pool/k/" + filepath.Base(built)
		if err := WriteRepodata(ctx, dir, []*Package{p}, RepodataOptions{Signer: mdSigner}); err != nil {
			t.Fatal(err)
		}
		if tamper != nil {
			tamper(dir)
		}
		return dir
	}
	tamperRepomd := func(dir string) {
		name := filepath.Join(dir, "repodata", "repomd.xml")
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		b2 := strings.Replace(string(b), "<revision>", "<revision>9", 1)
		if b2 == string(b) {
			t.Fatal("tamper: no <revision> in repomd.xml")
		}
		if err := os.WriteFile(name, []byte(b2), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	strangerSigner := newTestSigner(t, stranger.Private)
	edKey := gpgKey(t, "ed25519")
	edSigner := newTestSigner(t, edKey.Private)

	tests := []struct {
		name      string
		pkgSigner Signer
		mdSigner  Signer
		tamper    func(string)
		trust     []byte // the key dnf is given; nil means key
		wantOK    bool
		wantInOut string // part of dnf's complaint, to be sure it refused for the right reason
	}{
		{name: "signed", pkgSigner: signer, mdSigner: signer, wantOK: true},
		{name: "signed with EdDSA", pkgSigner: edSigner, mdSigner: edSigner, trust: edKey.Public, wantOK: true},
		{name: "unsigned rpm", pkgSigner: nil, mdSigner: signer, wantInOut: "kiln-plain-2.0-1.noarch.rpm is not signed"},
		{name: "rpm signed by unknown key", pkgSigner: strangerSigner, mdSigner: signer, wantInOut: "Public key for kiln-plain-2.0-1.noarch.rpm is not installed"},
		{name: "repomd.xml signed by unknown key", pkgSigner: signer, mdSigner: strangerSigner, wantInOut: "repomd.xml GPG signature verification error"},
		{name: "repomd.xml unsigned", pkgSigner: signer, mdSigner: nil, wantInOut: "GPG signature is not available"},
		{name: "repomd.xml tampered", pkgSigner: signer, mdSigner: signer, tamper: tamperRepomd, wantInOut: "repomd.xml GPG signature verification error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := publish(t, tc.pkgSigner, tc.mdSigner, tc.tamper)
			trust := key.Public
			if tc.trust != nil {
				trust = tc.trust
			}
			out, err := dnfInstall(t, serve(t, dir), trust, "kiln-plain")
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("dnf refused a correctly signed repository: %v\n%s", err, out)
			case !tc.wantOK && err == nil:
				t.Fatalf("dnf accepted the repository (%s):\n%s", tc.name, out)
			case tc.wantOK && !strings.Contains(out, "Complete!"):
				t.Fatalf("dnf did not complete:\n%s", out)
			case !tc.wantOK && !strings.Contains(out, tc.wantInOut):
				t.Errorf("dnf refused, but its output lacks %q:\n%s", tc.wantInOut, out)
			}
			t.Logf("dnf output:\n%s", out)
		})
	}
}

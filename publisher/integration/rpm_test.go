package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

const plainSpec = `Name: %s
Version: %s
Release: 1
Summary: Kiln publisher test package
License: MIT
BuildArch: noarch
%%description
Data file only.
%%install
mkdir -p %%{buildroot}/usr/share/kiln-test
echo %%{name} > %%{buildroot}/usr/share/kiln-test/%%{name}.txt
%%files
/usr/share/kiln-test/%%{name}.txt
`

func rpmbuild(t *testing.T, dir, name, version string) string {
	t.Helper()
	tool := testenv.Tool(t, "rpmbuild")
	top := filepath.Join(dir, "rpmbuild-"+name+"-"+version)
	must(t, os.MkdirAll(top, 0o755))
	spec := filepath.Join(top, name+".spec")
	must(t, os.WriteFile(spec, fmt.Appendf(nil, plainSpec, name, version), 0o644))
	if out, err := exec.Command(tool, "-bb", "--nodeps", "--quiet", "--define", "_topdir "+top, spec).CombinedOutput(); err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	return filepath.Join(top, "RPMS", "noarch", fmt.Sprintf("%s-%s-1.noarch.rpm", name, version))
}

// checksig runs rpmkeys --checksig in strict signature mode against a
// temporary rpm database that trusts only keyFile.
func checksig(t *testing.T, keyFile, rpmFile string) (string, bool) {
	t.Helper()
	tool := testenv.Tool(t, "rpmkeys")
	db := t.TempDir()
	if out, err := exec.Command(tool, "--dbpath", db, "--import", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	out, err := exec.Command(tool, "--dbpath", db, "--define", "_pkgverify_level signature", "--checksig", rpmFile).CombinedOutput()
	return string(out), err == nil
}

func dnfDownload(t *testing.T, url, keyFile, pkg string) (string, error) {
	t.Helper()
	testenv.Root(t)
	tool := testenv.Tool(t, "dnf")
	base := t.TempDir()
	repos := filepath.Join(base, "repos.d")
	for _, d := range []string{repos, "root", "log", "cache", "persist"} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(base, d)
		}
		must(t, os.MkdirAll(d, 0o755))
	}
	conf := filepath.Join(base, "dnf.conf")
	must(t, os.WriteFile(conf, []byte("[main]\ngpgcheck=1\nrepo_gpgcheck=1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(repos, "kiln.repo"), fmt.Appendf(nil,
		"[kiln]\nname=kiln\nbaseurl=%s/\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://%s\nmetadata_expire=0\nskip_if_unavailable=False\n", url, keyFile), 0o644))
	cmd := exec.Command(tool, "-y", "--installroot="+filepath.Join(base, "root"), "--config="+conf,
		"--setopt=reposdir="+repos, "--setopt=cachedir="+filepath.Join(base, "cache"),
		"--setopt=logdir="+filepath.Join(base, "log"), "--setopt=persistdir="+filepath.Join(base, "persist"),
		"--releasever=1", "--disablerepo=*", "--enablerepo=kiln", "--downloadonly",
		"--destdir="+filepath.Join(base, "download"), "install", pkg)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRPMRepositoryJudgedByRpmkeysAndDnf(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "rpmbuild")
	key := signtest.Generate(t, "rsa3072", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	pkg := rpmbuild(t, dir, "kiln-rpm-hello", "1.0")
	publisher(t, append([]string{"include", "--publish", "--repo", "el", "--format", "rpm", pkg}, base...)...)
	public := filepath.Join(root, "public", "el")
	signed := filepath.Join(public, "Packages", "k", "kiln-rpm-hello-1.0-1.noarch.rpm")
	pubKey := publicKey(t, key.KeyFile, filepath.Join(dir, "public.asc"))

	if out, ok := checksig(t, pubKey, signed); !ok {
		t.Fatalf("rpmkeys --checksig rejects the published rpm:\n%s", out)
	}
	if out, ok := checksig(t, pubKey, pkg); ok {
		t.Fatalf("rpmkeys --checksig accepts the unsigned original:\n%s", out)
	}
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(public, "repodata", "repomd.xml.asc"), filepath.Join(public, "repodata", "repomd.xml")); !ok {
		t.Fatalf("gpgv rejects repomd.xml.asc:\n%s", out)
	}
	url := serve(t, public)
	if out, err := dnfDownload(t, url, pubKey, "kiln-rpm-hello"); err != nil {
		t.Fatalf("dnf refused our rpm repository: %v\n%s", err, out)
	}
	// A foreign key is refused by dnf.
	stranger := signtest.Generate(t, "rsa3072", "")
	strangerPub := publicKey(t, stranger.KeyFile, filepath.Join(dir, "stranger.asc"))
	if out, err := dnfDownload(t, url, strangerPub, "kiln-rpm-hello"); err == nil {
		t.Fatalf("dnf accepted the repository with a foreign key:\n%s", out)
	}

	// The same NEVRA with other content is refused naming both digests;
	// the same file again is a no-op.
	out := publisher(t, append([]string{"include", "--repo", "el", pkg}, base...)...)
	if !strings.Contains(out, "already present") {
		t.Errorf("identical rpm again: %s", out)
	}
	other := rpmbuild(t, filepath.Join(dir, "b"), "kiln-rpm-hello", "1.0")
	cmd := exec.Command(publisherBin(t), append([]string{"include", "--repo", "el", other}, base...)...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "sha256") {
		t.Errorf("different rpm with the same NEVRA: %v\n%s", err, b)
	}
	// A corrupt rpm header is refused with a clear message and changes
	// nothing.
	data, err := os.ReadFile(pkg)
	must(t, err)
	bad := filepath.Join(dir, "corrupt-1.0-1.noarch.rpm")
	copy(data[200:], []byte("garbage garbage garbage garbage"))
	must(t, os.WriteFile(bad, data, 0o644))
	cmd = exec.Command(publisherBin(t), append([]string{"include", "--repo", "el", bad}, base...)...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "corrupt-1.0-1.noarch.rpm") {
		t.Errorf("corrupt rpm: %v\n%s", err, b)
	}
	list := publisher(t, append([]string{"list", "--repo", "el"}, base...)...)
	if strings.Count(list, "\n") != 2 {
		t.Errorf("repository changed by refused includes:\n%s", list)
	}

	// A snapshot of an rpm repository publishes signed under its own path.
	publisher(t, append([]string{"snapshot", "create", "--repo", "el", "el-rc1"}, base...)...)
	publisher(t, append([]string{"snapshot", "publish", "el-rc1"}, base...)...)
	snap := filepath.Join(root, "public", "snapshots", "el-rc1")
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(snap, "repodata", "repomd.xml.asc"), filepath.Join(snap, "repodata", "repomd.xml")); !ok {
		t.Fatalf("gpgv rejects the snapshot's repomd.xml.asc:\n%s", out)
	}
	if out, ok := checksig(t, pubKey, filepath.Join(snap, "Packages", "k", "kiln-rpm-hello-1.0-1.noarch.rpm")); !ok {
		t.Fatalf("rpmkeys rejects the snapshot's rpm:\n%s", out)
	}
}

// publicKey writes the armored public key that "publisher key show" prints
// to dst, as a customer would save it.
func publicKey(t *testing.T, keyFile, dst string) string {
	t.Helper()
	out := publisher(t, "key", "show", "--key", keyFile)
	i := strings.Index(out, "-----BEGIN PGP PUBLIC KEY BLOCK-----")
	if i < 0 {
		t.Fatalf("key show printed no public key:\n%s", out)
	}
	must(t, os.WriteFile(dst, []byte(out[i:]), 0o644))
	return dst
}

// TestRPMHeaderOnlySignatures: a repository created with --rpm-signatures
// header signs as rpmsign does since rpm 4.16; rpmkeys in strict mode and
// dnf with gpgcheck accept it, and a tampered payload is still refused (the
// header's payload digest covers it).
func TestRPMHeaderOnlySignatures(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "rpmbuild")
	key := signtest.Generate(t, "rsa3072", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	pkg := rpmbuild(t, dir, "kiln-rpm-header", "1.0")
	cmd := exec.Command(publisherBin(t), append([]string{"include", "--repo", "bad", "--format", "rpm", "--rpm-signatures", "v3", pkg}, base...)...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `rpm signatures "v3"`) {
		t.Errorf("--rpm-signatures v3: %v\n%s", err, b)
	}
	publisher(t, append([]string{"include", "--publish", "--repo", "el", "--format", "rpm", "--rpm-signatures", "header", pkg}, base...)...)
	public := filepath.Join(root, "public", "el")
	signed := filepath.Join(public, "Packages", "k", "kiln-rpm-header-1.0-1.noarch.rpm")
	pubKey := publicKey(t, key.KeyFile, filepath.Join(dir, "public.asc"))
	out, ok := checksig(t, pubKey, signed)
	if !ok {
		t.Fatalf("rpmkeys --checksig rejects the header-only signed rpm:\n%s", out)
	}
	verbose, err := exec.Command(testenv.Tool(t, "rpm"), "-qp", "--qf", "rsa=%{RSAHEADER:pgpsig} pgp=%{SIGPGP:pgpsig}\n", signed).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qp: %v\n%s", err, verbose)
	}
	if !strings.Contains(string(verbose), "rsa=RSA/SHA") || !strings.Contains(string(verbose), "pgp=(none)") {
		t.Errorf("want a header-only RSA signature and no header+payload one, rpm says: %s", verbose)
	}
	data, err := os.ReadFile(signed)
	must(t, err)
	data[len(data)-40] ^= 0x55
	tampered := filepath.Join(dir, "tampered.rpm")
	must(t, os.WriteFile(tampered, data, 0o644))
	if out, ok := checksig(t, pubKey, tampered); ok {
		t.Errorf("rpmkeys accepts a header-only signed rpm with a tampered payload:\n%s", out)
	}
	if out, err := dnfDownload(t, serve(t, public), pubKey, "kiln-rpm-header"); err != nil {
		t.Fatalf("dnf refused the header-only signed repository: %v\n%s", err, out)
	}
}

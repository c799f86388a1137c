package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// publisherBin builds the publisher binary once per test run.
func publisherBin(t *testing.T) string {
	t.Helper()
	goTool := testenv.Tool(t, "go")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-publisher-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "publisher")
		out, err := exec.Command(goTool, "build", "-o", binPath, "github.com/kiln-build/kiln/publisher").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// publisher runs the binary and fails the test on error.
func publisher(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(publisherBin(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("publisher %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// dpkgDeb builds a real package with dpkg-deb.
func dpkgDeb(t *testing.T, dir, name, version, arch, section string, udeb bool) string {
	t.Helper()
	tool := testenv.Tool(t, "dpkg-deb")
	root := filepath.Join(dir, "build-"+name+"-"+version)
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr/share/kiln-test"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr/share/kiln-test", name), []byte(name+" "+version+"\n"), 0o644))
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: Kiln Tests <tests@kiln.invalid>\nSection: %s\nPriority: optional\nDescription: Kiln test package %s\n built by the publisher's integration tests.\n", name, version, arch, section, name)
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644))
	ext := ".deb"
	if udeb {
		ext = ".udeb"
	}
	out := filepath.Join(dir, name+"_"+version+"_"+arch+ext)
	if b, err := exec.Command(tool, "-Zxz", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

// dpkgSource builds a native source package and returns its .dsc.
func dpkgSource(t *testing.T, dir, name, version string) string {
	t.Helper()
	tool := testenv.Tool(t, "dpkg-source")
	src := filepath.Join(dir, name+"-"+version)
	must(t, os.MkdirAll(filepath.Join(src, "debian", "source"), 0o755))
	files := map[string]string{
		"debian/control":       fmt.Sprintf("Source: %s\nSection: misc\nPriority: optional\nMaintainer: Kiln Tests <tests@kiln.invalid>\nStandards-Version: 4.6.2\n\nPackage: %s\nArchitecture: all\nDescription: test\n test\n", name, name),
		"debian/changelog":     fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Test.\n\n -- Kiln Tests <tests@kiln.invalid>  Mon, 02 Mar 2026 12:00:00 +0000\n", name, version),
		"debian/rules":         "#!/usr/bin/make -f\n%:\n\tdh $@\n",
		"debian/source/format": "3.0 (native)\n",
		"README":               "source\n",
	}
	for p, c := range files {
		must(t, os.WriteFile(filepath.Join(src, p), []byte(c), 0o644))
	}
	cmd := exec.Command(tool, "-b", filepath.Base(src))
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-source: %v\n%s", err, b)
	}
	return filepath.Join(dir, name+"_"+version+".dsc")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// aptClient is an apt configuration of its own in a temporary directory.
type aptClient struct {
	t   *testing.T
	dir string
	cfg string
}

func newAptClient(t *testing.T, sources string) *aptClient {
	t.Helper()
	testenv.Tool(t, "apt-get")
	testenv.Root(t) // apt-get update insists on locking its (temporary) lists as root
	dir := t.TempDir()
	for _, d := range []string{"etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d", "state/lists/partial", "cache/archives/partial", "log", "download"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(dir, "status"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "etc/sources.list"), []byte(sources), 0o644))
	conf := fmt.Sprintf(`Dir::Etc "%[1]s/etc";
Dir::Etc::main "%[1]s/etc/apt.conf";
Dir::Etc::parts "%[1]s/etc/apt.conf.d";
Dir::Etc::sourcelist "%[1]s/etc/sources.list";
Dir::Etc::sourceparts "%[1]s/etc/sources.list.d";
Dir::Etc::preferences "%[1]s/etc/preferences";
Dir::Etc::preferencesparts "%[1]s/etc/preferences.d";
Dir::Etc::trusted "%[1]s/etc/trusted.gpg";
Dir::Etc::trustedparts "%[1]s/etc/trusted.gpg.d";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Proxy "DIRECT";
`, dir)
	cfg := filepath.Join(dir, "apt.conf")
	must(t, os.WriteFile(cfg, []byte(conf), 0o644))
	return &aptClient{t: t, dir: dir, cfg: cfg}
}

func (a *aptClient) run(args ...string) (string, error) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "APT_CONFIG="+a.cfg, "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	cmd.Dir = filepath.Join(a.dir, "download")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// update runs apt-get update and reports whether apt accepted everything:
// exit 0 and no warning or error lines.
func (a *aptClient) update() (string, bool) {
	out, err := a.run("apt-get", "update", "-o", "APT::Update::Error-Mode=any")
	ok := err == nil && !strings.Contains(out, "\nW:") && !strings.Contains(out, "\nE:") && !strings.HasPrefix(out, "W:") && !strings.HasPrefix(out, "E:") && !strings.Contains(out, "Err:")
	return out, ok
}

// serve serves dir over HTTP on loopback.
func serve(t *testing.T, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAptAndGpgvAcceptPublishedRepository(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "rsa3072", "operator passphrase")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile, "--passphrase-file", key.PassphraseFile}
	deb := dpkgDeb(t, dir, "kiln-hello", "1.0-1", "all", "misc", false)
	deb2 := dpkgDeb(t, dir, "kiln-hello", "1.1-1", "all", "misc", false)
	udeb := dpkgDeb(t, dir, "kiln-hello-udeb", "1.0-1", "all", "debian-installer", true)
	dsc := dpkgSource(t, dir, "kiln-hello", "1.0")
	publisher(t, append([]string{"include", "--repo", "rel", "--format", "deb", "--suite", "bookworm", deb, deb2, udeb, dsc}, base...)...)
	publisher(t, append([]string{"publish", "--repo", "rel"}, base...)...)
	public := filepath.Join(root, "public", "rel")
	url := serve(t, public)

	// gpgv judges both signatures.
	dists := filepath.Join(public, "dists", "bookworm")
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(dists, "InRelease")); !ok {
		t.Fatalf("gpgv rejects InRelease:\n%s", out)
	}
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(dists, "Release.gpg"), filepath.Join(dists, "Release")); !ok {
		t.Fatalf("gpgv rejects Release.gpg:\n%s", out)
	}
	stranger := signtest.Generate(t, "ed25519", "")
	if out, ok := signtest.Gpgv(t, stranger.Keyring, filepath.Join(dists, "InRelease")); ok {
		t.Fatalf("gpgv accepts InRelease with an unrelated key:\n%s", out)
	}

	sources := fmt.Sprintf("deb [signed-by=%[2]s] %[1]s bookworm main main/debian-installer\ndeb-src [signed-by=%[2]s] %[1]s bookworm main\n", url, key.Keyring)
	apt := newAptClient(t, sources)
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update refused our repository:\n%s", out)
	}
	// Both versions are there; apt picks the newest.
	out, err := apt.run("apt-cache", "policy", "kiln-hello")
	if err != nil || !strings.Contains(out, "1.1-1") || !strings.Contains(out, "1.0-1") {
		t.Fatalf("apt-cache policy: %v\n%s", err, out)
	}
	out, err = apt.run("apt-get", "install", "--download-only", "-y", "kiln-hello")
	if err != nil {
		t.Fatalf("apt-get install --download-only: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(apt.dir, "cache/archives/kiln-hello_1.1-1_all.deb")); err != nil {
		t.Fatalf("package not downloaded: %v\n%s", err, out)
	}
	out, err = apt.run("apt-get", "download", "kiln-hello-udeb")
	if err != nil {
		t.Fatalf("apt-get download of the udeb: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(apt.dir, "download", "kiln-hello-udeb_1.0-1_all.udeb")); err != nil {
		t.Fatalf("udeb not downloaded: %v\n%s", err, out)
	}
	out, err = apt.run("apt-get", "source", "--download-only", "kiln-hello")
	if err != nil {
		t.Fatalf("apt-get source --download-only: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(apt.dir, "download", "kiln-hello_1.0.dsc")); err != nil {
		t.Fatalf("source not downloaded: %v\n%s", err, out)
	}

	// The udeb is only in the installer index.
	pk, err := os.ReadFile(filepath.Join(dists, "main/binary-all/Packages"))
	must(t, err)
	if bytes.Contains(pk, []byte("kiln-hello-udeb")) || !bytes.Contains(pk, []byte("Package: kiln-hello\n")) {
		t.Errorf("main/binary-all/Packages has the udeb or lacks the deb:\n%s", pk)
	}

	t.Run("apt reads Packages.xz", func(t *testing.T) {
		// A server that records what apt asks for: apt prefers .xz, and
		// checks what it decompresses against the signed Release.
		xzData, err := os.ReadFile(filepath.Join(dists, "main/binary-all/Packages.xz"))
		must(t, err)
		sum256, sum512 := sha256.Sum256(xzData), sha512.Sum512(xzData)
		byHash := []string{"main/binary-all/by-hash/SHA256/" + hex.EncodeToString(sum256[:]), "main/binary-all/by-hash/SHA512/" + hex.EncodeToString(sum512[:])}
		var mu sync.Mutex
		var asked []string
		files := http.FileServer(http.Dir(public))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			asked = append(asked, r.URL.Path)
			mu.Unlock()
			files.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		xzOnly := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s bookworm main\n", key.Keyring, srv.URL))
		if out, ok := xzOnly.update(); !ok {
			t.Fatalf("apt-get update refused our repository:\n%s", out)
		}
		mu.Lock()
		defer mu.Unlock()
		var gotXZ bool
		for _, p := range asked {
			gotXZ = gotXZ || strings.HasSuffix(p, "main/binary-all/Packages.xz") || strings.HasSuffix(p, byHash[0]) || strings.HasSuffix(p, byHash[1])
			if strings.HasSuffix(p, "/Packages") || strings.HasSuffix(p, "/Packages.gz") || (strings.Contains(p, "/by-hash/") && !strings.HasSuffix(p, byHash[0]) && !strings.HasSuffix(p, byHash[1])) {
				t.Errorf("apt fetched %s besides the .xz index", p)
			}
		}
		if !gotXZ {
			t.Fatalf("apt did not fetch main/binary-all/Packages.xz (%s); it asked for:\n%s", strings.Join(byHash, " or "), strings.Join(asked, "\n"))
		}
		out, err := xzOnly.run("apt-cache", "policy", "kiln-hello")
		if err != nil || !strings.Contains(out, "1.1-1") {
			t.Fatalf("apt-cache policy after reading the .xz index: %v\n%s", err, out)
		}
	})

	t.Run("unknown key refused", func(t *testing.T) {
		other := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s bookworm main\n", stranger.Keyring, url))
		out, ok := other.update()
		if ok {
			t.Fatalf("apt accepted a repository signed by a key it does not trust:\n%s", out)
		}
		if !strings.Contains(out, "NO_PUBKEY") && !strings.Contains(out, "not signed") {
			t.Errorf("apt refused, but not for the signature:\n%s", out)
		}
	})
}

func TestAptRefusesTamperedPackages(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	deb := dpkgDeb(t, dir, "kiln-tamper", "1.0", "all", "misc", false)
	publisher(t, append([]string{"include", "--publish", "--repo", "rel", "--format", "deb", "--suite", "stable", deb}, base...)...)
	public := filepath.Join(root, "public", "rel")
	url := serve(t, public)
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s stable main\n", key.Keyring, url))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update refused the untampered repository:\n%s", out)
	}
	// Rewrite every variant of the index in place (by-hash names share
	// the inodes), as an attacker on a mirror would.
	bin := filepath.Join(public, "dists", "stable", "main", "binary-all")
	orig, err := os.ReadFile(filepath.Join(bin, "Packages"))
	must(t, err)
	evil := bytes.Replace(orig, []byte("Version: 1.0"), []byte("Version: 9.9"), 1)
	for _, name := range []string{"Packages", "Packages.gz", "Packages.xz"} {
		p := filepath.Join(bin, name)
		data := evil
		switch {
		case strings.HasSuffix(name, ".gz"):
			data = compressWith(t, "gzip", evil)
		case strings.HasSuffix(name, ".xz"):
			data = compressWith(t, "xz", evil)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		must(t, err)
		_, err = f.Write(data)
		must(t, err)
		must(t, f.Close())
	}
	fresh := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s stable main\n", key.Keyring, url))
	out, ok := fresh.update()
	if ok {
		t.Fatalf("apt accepted a tampered Packages file:\n%s", out)
	}
	if !strings.Contains(out, "Hash Sum mismatch") && !strings.Contains(out, "unexpected size") && !strings.Contains(out, "Hashes of expected file") {
		t.Errorf("apt refused, but not for the hash:\n%s", out)
	}
}

func compressWith(t *testing.T, tool string, data []byte) []byte {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, tool), "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	must(t, err)
	return out
}

// verifyTree checks a published deb tree as a client would: the InRelease
// signature, every file it lists, and every pool file the indexes name.
func verifyTree(t *testing.T, keyring, public, suite string) error {
	t.Helper()
	dists := filepath.Join(public, "dists", suite)
	if out, ok := signtest.Gpgv(t, keyring, filepath.Join(dists, "InRelease")); !ok {
		return fmt.Errorf("gpgv rejects InRelease:\n%s", out)
	}
	rel, err := os.ReadFile(filepath.Join(dists, "Release"))
	if err != nil {
		return err
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(rel))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			in = line == "SHA256:"
			continue
		}
		if !in {
			continue
		}
		f := strings.Fields(line)
		data, err := os.ReadFile(filepath.Join(dists, f[2]))
		if err != nil {
			return fmt.Errorf("listed file %s: %w", f[2], err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != f[0] {
			return fmt.Errorf("listed file %s: sha256 mismatch", f[2])
		}
		if !strings.HasSuffix(f[2], "Release") {
			if _, err := os.Stat(filepath.Join(dists, filepath.Dir(f[2]), "by-hash", "SHA256", f[0])); err != nil {
				return fmt.Errorf("by-hash for %s: %w", f[2], err)
			}
		}
		if strings.HasSuffix(f[2], "/Packages") {
			for _, l := range strings.Split(string(data), "\n") {
				if name, ok := strings.CutPrefix(l, "Filename: "); ok {
					if _, err := os.Stat(filepath.Join(public, name)); err != nil {
						return fmt.Errorf("pool file %s named in %s: %w", name, f[2], err)
					}
				}
			}
		}
	}
	return nil
}

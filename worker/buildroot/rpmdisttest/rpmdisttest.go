// Package rpmdisttest gives integration tests Kiln's stand-in RPM
// distribution: Debian's packages for a small buildroot repacked as RPMs,
// plus native packages only it provides, in a dnf repository whose
// packages and repomd.xml are signed, served over HTTP on loopback.
//
// scripts/rpmdist.sh makes it, once per machine: the result is cached
// under $KILN_TEST_CACHE/rpmdist/ (default /var/cache/kiln-test), keyed by
// the script's sha256, so editing the script makes a new one on the next
// run. Making it needs root, Debian's archive, rpmbuild, rpmsign,
// createrepo_c and gpg; tests skip with the reason without them (and fail
// under KILN_TEST_STRICT=1).
package rpmdisttest

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot"
)

// Dist is the stand-in distribution as a test reaches it.
type Dist struct {
	// Dir holds repo/ (the repository), the key and gnupg/.
	Dir string
	// URL is the repository's baseurl, http://127.0.0.1:port/.
	URL string
	// KeyFile is the host path of the armored public key that signs the
	// repository and its packages.
	KeyFile string
	// GnuPG is the signing key's gpg home (for tests that add packages).
	GnuPG string
}

// Packages of a buildroot made from the stand-in: the release and setup
// packages, a shell and the tools rpmbuild runs.
var Packages = []string{
	"kiln-dist-release", "kiln-dist-setup", "kiln-dist-filesystem",
	"bash", "dash", "coreutils", "mawk", "sed", "grep", "findutils", "diffutils",
	"tar", "gzip", "xz-utils", "bzip2", "cpio", "patch", "make", "file", "passwd", "util-linux",
	"rpm",
}

// Target returns a method dnf target called name that makes its chroot
// from d with the Packages, verifying the repository with d's key.
func (d *Dist) Target(name string) buildroot.Target {
	return buildroot.Target{
		Name: name, Format: "rpm", Method: "dnf", Releasever: "1",
		Repositories: []buildroot.Repository{{Name: "kiln-dist", BaseURL: d.URL, GPGKey: "file://" + d.KeyFile}},
		Packages:     append([]string(nil), Packages...),
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// repoRoot finds the module's root (the directory of go.mod) from the
// test's working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("rpmdisttest: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Get returns the stand-in distribution, made the first time on this
// machine (under a file lock, so parallel test processes make it once),
// and serves its repository on loopback until t ends.
func Get(t testing.TB) *Dist {
	t.Helper()
	testenv.Root(t)
	for _, tool := range []string{"apt-get", "dpkg-deb", "rpmbuild", "rpmsign", "createrepo_c", "gpg"} {
		testenv.Tool(t, tool)
	}
	script := filepath.Join(repoRoot(t), "scripts", "rpmdist.sh")
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatalf("rpmdisttest: %v", err)
	}
	sum := sha256.Sum256(data)
	base := filepath.Join(env("KILN_TEST_CACHE", "/var/cache/kiln-test"), "rpmdist")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatalf("rpmdisttest: %v", err)
	}
	dir := filepath.Join(base, hex.EncodeToString(sum[:8]))
	make1(t, script, dir)
	d := &Dist{Dir: dir, KeyFile: filepath.Join(dir, "RPM-GPG-KEY-kiln-dist"), GnuPG: filepath.Join(dir, "gnupg")}
	d.URL = Serve(t, filepath.Join(dir, "repo"))
	return d
}

// make1 runs the script into dir unless a finished copy is there.
func make1(t testing.TB, script, dir string) {
	t.Helper()
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("rpmdisttest: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("rpmdisttest: lock %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(filepath.Join(dir, "repo", "repodata", "repomd.xml.asc")); err == nil {
		return
	}
	tmp := dir + ".tmp"
	start := time.Now()
	t.Logf("making the stand-in RPM distribution with %s (once per machine; log in %s.log)", script, dir)
	out, err := exec.Command(script, tmp).CombinedOutput()
	os.WriteFile(dir+".log", out, 0o644)
	if err != nil {
		s := string(out)
		if len(s) > 3000 {
			s = s[len(s)-3000:]
		}
		t.Fatalf("rpmdisttest: %s: %v\n%s", script, err, s)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("rpmdisttest: %v", err)
	}
	t.Logf("made the stand-in RPM distribution in %s", time.Since(start).Round(time.Second))
	// Earlier versions are not used again.
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*"))
	for _, o := range old {
		if !strings.HasPrefix(o, dir) {
			os.RemoveAll(o)
		}
	}
}

// Serve serves dir over HTTP on loopback until t ends and returns its URL
// (with a trailing slash).
func Serve(t testing.TB, dir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rpmdisttest: %v", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

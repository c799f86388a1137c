// Package buildroottest gives integration tests a ready Buildroot on a real
// containerd, with small Debian chroots made once per machine and cached on
// disk across runs.
//
// Tests that use it need root, the project's containerd
// (scripts/containerd.sh start) and, the first time on a machine,
// mmdebstrap and Debian's archive; they skip with the reason otherwise (and
// fail under KILN_TEST_STRICT=1).
//
// Environment: KILN_TEST_CACHE (default /var/cache/kiln-test) holds the
// chroot archives; KILN_TEST_DEBIAN_MIRROR (default
// http://deb.debian.org/debian) and KILN_TEST_DEBIAN_SUITE (default
// bookworm) say where they come from.
package buildroottest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot"
)

// Target names of the cached test chroots.
const (
	// DebTarget is Debian (minbase) with build-essential, dpkg-dev,
	// fakeroot and debhelper.
	DebTarget = "kiln-test-deb"
	// RPMTarget is Debian (minbase) with Debian's rpm tools, building rpms.
	RPMTarget = "kiln-test-rpm"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Targets returns the test targets' configuration.
func Targets() []buildroot.Target {
	mirror := env("KILN_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
	suite := env("KILN_TEST_DEBIAN_SUITE", "bookworm")
	return []buildroot.Target{
		{
			Name: DebTarget, Format: "deb", Method: "mmdebstrap",
			Suite: suite, Mirror: mirror, Components: []string{"main"}, Variant: "minbase",
			Packages: []string{"build-essential", "dpkg-dev", "fakeroot", "debhelper"},
		},
		{
			Name: RPMTarget, Format: "rpm", Method: "mmdebstrap",
			Suite: suite, Mirror: mirror, Components: []string{"main"}, Variant: "minbase",
			Packages: []string{"rpm", "fakeroot"},
		},
	}
}

// Config returns a buildroot configuration for test t: the project's
// containerd, a namespace and state dir of t's own, small limits, and the
// test targets.
func Config(t testing.TB) buildroot.Config {
	t.Helper()
	testenv.Root(t)
	addr := testenv.Containerd(t)
	sweepDead(t, addr)
	sum := sha256.Sum256([]byte(t.Name()))
	return buildroot.Config{
		Address:     addr,
		Namespace:   fmt.Sprintf("kiln-test-%d-%s", os.Getpid(), hex.EncodeToString(sum[:6])),
		StateDir:    t.TempDir(),
		TmpfsSize:   "2G",
		Memory:      "2G",
		CPUs:        2,
		Pids:        2048,
		StepTimeout: 15 * time.Minute,
		IdleTimeout: 5 * time.Minute,
		// Each test starts with an empty package cache of its own.
		PackageCache: buildroot.PackageCacheConfig{Dir: filepath.Join(t.TempDir(), "packages"), MaxSize: "4G"},
		// Tests of the build-dependency layer cache turn it on.
		LayerCache: buildroot.LayerCacheConfig{Disabled: true},
		Targets:    Targets(),
	}.WithDefaults()
}

var deadNamespace = regexp.MustCompile(`^kiln-test-([0-9]+)-[0-9a-f]+$`)

// sweepDead purges the namespaces of test processes that died before
// their cleanup ran.
func sweepDead(t testing.TB, addr string) {
	c, err := client.New(addr)
	if err != nil {
		t.Logf("buildroottest: sweep dead test namespaces: %v", err)
		return
	}
	defer c.Close()
	names, err := c.NamespaceService().List(context.Background())
	if err != nil {
		t.Logf("buildroottest: sweep dead test namespaces: %v", err)
		return
	}
	for _, ns := range names {
		m := deadNamespace.FindStringSubmatch(ns)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		cfg := buildroot.Config{Address: addr, Namespace: ns, StateDir: t.TempDir(), Targets: Targets(),
			PackageCache: buildroot.PackageCacheConfig{Disabled: true}}
		b, err := buildroot.New(context.Background(), cfg, hclog.NewNullLogger())
		if err == nil {
			err = b.Purge(context.Background())
			b.Close()
		}
		if err != nil {
			t.Logf("buildroottest: purge namespace %s of dead test process %d: %v", ns, pid, err)
		}
	}
}

// New returns a Buildroot for t with the deb test chroot imported, and the
// target's name. Everything is removed when t ends.
func New(t testing.TB) (*buildroot.Buildroot, string) {
	t.Helper()
	return NewWith(t, Config(t), DebTarget)
}

// NewRPM is New with the rpm-building test chroot.
func NewRPM(t testing.TB) (*buildroot.Buildroot, string) {
	t.Helper()
	return NewWith(t, Config(t), RPMTarget)
}

// NewWith returns a Buildroot for cfg (from Config, perhaps changed) with
// the cached chroot of target imported, made with opts. Everything in
// cfg's namespace is removed when t ends.
func NewWith(t testing.TB, cfg buildroot.Config, target string, opts ...buildroot.Option) (*buildroot.Buildroot, string) {
	t.Helper()
	archive := Archive(t, target)
	ctx := context.Background()
	b, err := buildroot.New(ctx, cfg, Logger(t), opts...)
	if err != nil {
		t.Fatalf("buildroot: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Purge(context.Background()); err != nil {
			t.Errorf("purge test namespace: %v", err)
		}
		_ = b.Close()
	})
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := b.Import(ctx, target, f); err != nil {
		t.Fatalf("import cached chroot %s: %v", archive, err)
	}
	t.Logf("imported chroot %s in %s", target, time.Since(start).Round(time.Millisecond))
	return b, target
}

// Archive returns the path of target's cached chroot archive, making it
// with mmdebstrap the first time on this machine (under a file lock, so
// parallel test processes make it once).
func Archive(t testing.TB, target string) string {
	t.Helper()
	testenv.Root(t)
	var tc buildroot.Target
	for _, c := range Targets() {
		if c.Name == target {
			tc = c
		}
	}
	if tc.Name == "" {
		t.Fatalf("buildroottest: no test target %q; use DebTarget or RPMTarget", target)
	}
	key, _ := json.Marshal(tc)
	sum := sha256.Sum256(key)
	dir := filepath.Join(env("KILN_TEST_CACHE", "/var/cache/kiln-test"), "chroots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("buildroottest: chroot cache: %v", err)
	}
	path := filepath.Join(dir, target+"-"+hex.EncodeToString(sum[:8])+".tar")
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("buildroottest: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("buildroottest: lock %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	testenv.Tool(t, "mmdebstrap")
	logPath := path + ".log"
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("buildroottest: %v", err)
	}
	defer logFile.Close()
	tmp := path + ".tmp"
	start := time.Now()
	t.Logf("making test chroot %s with mmdebstrap (once per machine; log in %s)", target, logPath)
	if err := buildroot.MakeChroot(context.Background(), tc, tmp, logFile); err != nil {
		os.Remove(tmp)
		out, _ := os.ReadFile(logPath)
		tail := string(out)
		if i := strings.LastIndex(tail[:max(0, len(tail)-2000)], "\n"); i > 0 {
			tail = tail[i:]
		}
		t.Fatalf("buildroottest: make chroot %s: %v\n%s", target, err, tail)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("buildroottest: %v", err)
	}
	t.Logf("made test chroot %s in %s", target, time.Since(start).Round(time.Second))
	// Archives of the target's earlier configurations are not used again.
	old, _ := filepath.Glob(filepath.Join(dir, target+"-*.tar"))
	for _, o := range old {
		if o != path {
			os.Remove(o)
			os.Remove(o + ".log")
			os.Remove(o + ".lock")
		}
	}
	return path
}

// Logger returns a debug logger that writes to t's log.
func Logger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Debug,
		Output: logWriter{t},
	})
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

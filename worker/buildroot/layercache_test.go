package buildroot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/executor"
)

// upperDir makes what an overlay's upper dir holds after phase 1: files
// with owners and set-id bits, a hard link, a symlink, a whiteout (a 0/0
// character device), an opaque directory, and what layers leave out.
func upperDir(t *testing.T) string {
	t.Helper()
	testenv.Root(t)
	u := t.TempDir()
	write := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(u, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("usr/bin/gcc-12", "gcc", 0o755)
	write("usr/lib/x.so", "lib", 0o644)
	write("var/lib/dpkg/status", "Package: gcc-12\n", 0o644)
	write("usr/bin/su", "su", 0o755)
	write("var/lib/apt/lists/deb.debian.org_Packages", "lists", 0o644)
	write("etc/apt/sources.list.d/kiln-release.list", "deb x", 0o644)
	write("var/log/dpkg.log", "log", 0o644)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chown(filepath.Join(u, "usr/bin/su"), 0, 0))
	must(unix.Chmod(filepath.Join(u, "usr/bin/su"), 0o4755))
	must(os.Chown(filepath.Join(u, "usr/lib/x.so"), 1000, 1001))
	must(os.Link(filepath.Join(u, "usr/bin/gcc-12"), filepath.Join(u, "usr/bin/cc")))
	must(os.Symlink("gcc-12", filepath.Join(u, "usr/bin/gcc")))
	must(unix.Mknod(filepath.Join(u, "usr/bin/removed"), unix.S_IFCHR, 0))
	must(os.MkdirAll(filepath.Join(u, "usr/share/doc/opaque"), 0o755))
	must(unix.Lsetxattr(filepath.Join(u, "usr/share/doc/opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	return u
}

func TestLayerRoundTrip(t *testing.T) {
	t.Parallel()
	src := upperDir(t)
	var buf bytes.Buffer
	if err := writeLayer(&buf, src); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	// What the step that resolved the build dependencies left is kept.
	if err := os.MkdirAll(filepath.Join(dst, "var/lib/apt/lists"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := readLayer(bytes.NewReader(buf.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"usr/bin/gcc-12", "usr/lib/x.so", "var/lib/dpkg/status"} {
		want, _ := os.ReadFile(filepath.Join(src, rel))
		if got, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %q %v, want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"var/lib/apt/lists/deb.debian.org_Packages", "etc/apt/sources.list.d", "var/log"} {
		if _, err := os.Lstat(filepath.Join(dst, rel)); err == nil {
			t.Errorf("%s is in the layer", rel)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "usr/bin/su"), &st); err != nil || st.Mode&0o7777 != 0o4755 {
		t.Errorf("usr/bin/su mode %o %v, want setuid 4755", st.Mode&0o7777, err)
	}
	if err := unix.Lstat(filepath.Join(dst, "usr/lib/x.so"), &st); err != nil || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("usr/lib/x.so owned by %d:%d %v, want 1000:1001", st.Uid, st.Gid, err)
	}
	var a, b unix.Stat_t
	if unix.Lstat(filepath.Join(dst, "usr/bin/gcc-12"), &a) != nil || unix.Lstat(filepath.Join(dst, "usr/bin/cc"), &b) != nil || a.Ino != b.Ino {
		t.Errorf("usr/bin/cc is not a hard link of gcc-12")
	}
	if l, err := os.Readlink(filepath.Join(dst, "usr/bin/gcc")); err != nil || l != "gcc-12" {
		t.Errorf("usr/bin/gcc links to %q %v", l, err)
	}
	if err := unix.Lstat(filepath.Join(dst, "usr/bin/removed"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout usr/bin/removed: mode %o rdev %d %v, want a 0/0 character device", st.Mode, st.Rdev, err)
	}
	val := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(dst, "usr/share/doc/opaque"), "trusted.overlay.opaque", val); err != nil || string(val[:n]) != "y" {
		t.Errorf("opaque directory lost its mark: %q %v", val[:n], err)
	}
	fi, _ := os.Stat(filepath.Join(dst, "usr/bin/gcc-12"))
	si, _ := os.Stat(filepath.Join(src, "usr/bin/gcc-12"))
	if !fi.ModTime().Equal(si.ModTime()) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), si.ModTime())
	}

	// A layer naming a path outside the upper dir is refused.
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	if err := tw.WriteHeader(&tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
	bad := evil.Bytes()
	if err := readLayer(bytes.NewReader(bad), t.TempDir()); err == nil || !strings.Contains(err.Error(), "not inside the buildroot") {
		t.Errorf("layer with ../x: %v", err)
	}
}

func TestLayerCacheStoreVerifyEvict(t *testing.T) {
	t.Parallel()
	src := upperDir(t)
	dir := t.TempDir()
	lc, err := openLayerCache(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []executor.PackageFile{{Name: "gcc-12_12.2.0-14_amd64.deb", SHA256: strings.Repeat("a", 64), Size: 3}}
	a := layerID("sha256:chroot", "Inst gcc-12 (12.2.0-14 Debian:12 [amd64])")
	if a == layerID("sha256:other", "Inst gcc-12 (12.2.0-14 Debian:12 [amd64])") || a == layerID("sha256:chroot", "Inst gcc-12 (12.2.0-15 Debian:12 [amd64])") {
		t.Fatal("layer ids do not depend on the chroot and the resolution")
	}
	size, err := lc.store(a, src, layerManifest{Chroot: "sha256:chroot", Packages: pkgs})
	if err != nil {
		t.Fatal(err)
	}
	// After a restart.
	lc, err = openLayerCache(dir, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := lc.lookup(a)
	if !ok || m.Size != size || len(m.Packages) != 1 || m.Packages[0] != pkgs[0] {
		t.Fatalf("lookup after a restart: %+v %v", m, ok)
	}
	if err := lc.verify(a, m); err != nil {
		t.Fatal(err)
	}
	// Corrupt on disk, same size.
	p := lc.path(a, ".tar")
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lc.verify(a, m); err == nil || !strings.Contains(err.Error(), "manifest says "+m.SHA256) {
		t.Errorf("corrupt layer: %v", err)
	}

	// Bounded: room for one layer; storing a second evicts the first.
	metrics := newLayerMetrics(nil)
	small, err := openLayerCache(t.TempDir(), size+size/2, metrics)
	if err != nil {
		t.Fatal(err)
	}
	b := layerID("sha256:chroot", "b")
	if _, err := small.store(a, src, layerManifest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := small.store(b, src, layerManifest{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := small.lookup(a); ok {
		t.Errorf("the least recently used layer was kept beyond the bound")
	}
	if _, ok := small.lookup(b); !ok {
		t.Errorf("the new layer was evicted")
	}
	var evicted dto.Metric
	if err := metrics.evictions.Write(&evicted); err != nil || evicted.GetCounter().GetValue() != 1 {
		t.Errorf("evictions counted: %v (%v), want 1", evicted.GetCounter().GetValue(), err)
	}
	tiny, _ := openLayerCache(t.TempDir(), 100, nil)
	if _, err := tiny.store(a, src, layerManifest{}); err == nil || !strings.Contains(err.Error(), "more than buildroot.layer_cache.max_size allows") {
		t.Errorf("a layer larger than the bound: %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(tiny.dir, "tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The lists' fingerprint changes when apt replaces or adds a list, and not when it only works in lists/partial/.
func TestListsStateSeesReplacedLists(t *testing.T) {
	upper := t.TempDir()
	lists := filepath.Join(upper, "var/lib/apt/lists")
	if err := os.MkdirAll(filepath.Join(lists, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(rel, data string) {
		t.Helper()
		tmp := filepath.Join(lists, "partial", filepath.Base(rel))
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(upper, rel)); err != nil {
			t.Fatal(err)
		}
	}
	write("var/lib/apt/lists/deb_InRelease", "Date: 1\n")
	write("var/lib/apt/lists/deb_main_Packages", "Package: a\n")
	state := func() string {
		t.Helper()
		s, err := listsState(upper)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := state()

	// apt-get update finding nothing new: a file comes and goes in partial/.
	if err := os.WriteFile(filepath.Join(lists, "partial", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(lists, "partial", "x")); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != before {
		t.Fatal("fingerprint changed though no list did")
	}

	// The same bytes fetched again and renamed into place.
	write("var/lib/apt/lists/deb_InRelease", "Date: 1\n")
	after := state()
	if after == before {
		t.Fatal("fingerprint unchanged after a list was replaced")
	}
	write("var/lib/apt/lists/deb_contrib_Packages", "Package: b\n")
	if got := state(); got == after {
		t.Fatal("fingerprint unchanged after a list was added")
	}
}

package itest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// kilnPackages are the packages scripts/deb.sh makes, one per role.
var kilnPackages = []string{"kiln-coordinator", "kiln-worker", "kiln-publisher", "kiln-mirror"}

// Kiln's own packages, made twice by `make deb`'s script (byte-identical),
// judged by lintian, published by Kiln's publisher into a repository
// signed with an operator key, served by Kiln's mirror, installed by real
// apt into a Debian 12 root made by mmdebstrap that trusts that key alone,
// purged, and installed again and configured by the Puppet module with
// puppet apply (twice: the second run changes nothing), then upgraded by
// apt, which keeps Puppet's configs. There is no systemd in the root: the
// module runs with manage_service => false.
func TestDebianPackagesInstalledByAptAndPuppet(t *testing.T) {
	testenv.Root(t)
	for _, tool := range []string{"dpkg-deb", "lintian", "mmdebstrap", "puppet", "puppet-lint", "unshare", "chroot", "git"} {
		testenv.Tool(t, tool)
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	// Two builds of the same tree give the same bytes.
	debs := buildDebs(t, top, t.TempDir())
	again := buildDebs(t, top, t.TempDir())
	for i, d := range debs {
		a, _ := os.ReadFile(d)
		b, _ := os.ReadFile(again[i])
		if filepath.Base(d) != filepath.Base(again[i]) || !bytes.Equal(a, b) {
			t.Fatalf("two builds differ: %s (%d bytes) and %s (%d bytes)", d, len(a), again[i], len(b))
		}
	}

	// lintian: no error and no warning (the packages' overrides say why
	// they override what they do).
	out, err := exec.Command("lintian", append([]string{"--fail-on", "error,warning"}, debs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}

	// The module passes puppet's parser and puppet-lint.
	module := filepath.Join(top, "dist", "puppet", "kiln")
	pps, _ := filepath.Glob(filepath.Join(module, "*", "*.pp"))
	command(t, top, nil, "puppet", append([]string{"parser", "validate"}, pps...)...)
	epps, _ := filepath.Glob(filepath.Join(module, "templates", "*.epp"))
	command(t, top, nil, "puppet", append([]string{"epp", "validate"}, epps...)...)
	if out := command(t, top, nil, "puppet-lint", "--fail-on-warnings", module); strings.TrimSpace(out) != "" {
		t.Fatalf("puppet-lint:\n%s", out)
	}

	// Kiln publishes itself: a signed repository served by Kiln's mirror.
	key := signtest.Generate(t, "ed25519", "")
	pubRoot := t.TempDir()
	command(t, top, nil, bin("publisher"), append([]string{"include", "--root", pubRoot, "--key", key.KeyFile,
		"--format", "deb", "--suite", "bookworm", "--repo", "kiln"}, debs...)...)
	command(t, top, nil, bin("publisher"), "publish", "--root", pubRoot, "--key", key.KeyFile, "--repo", "kiln")
	mirrorAddr := freeAddr(t)
	start(t, "mirror", "mirror", "serve", "--root", filepath.Join(pubRoot, "public"), "--listen", mirrorAddr)
	(&cluster{t: t}).waitListening(mirrorAddr)

	root := packagingRoot(t, debs)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// apt in the root knows only the operator's repository and key.
	must(os.MkdirAll(filepath.Join(root, "etc/apt/keyrings"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/apt/keyrings/kiln.gpg"), mustRead(t, key.Keyring), 0o644))
	os.Remove(filepath.Join(root, "etc/apt/sources.list"))
	sources := filepath.Join(root, "etc/apt/sources.list.d/kiln.list")
	line := func(keyring string) []byte {
		return fmt.Appendf(nil, "deb [signed-by=%s] http://%s/kiln bookworm main\n", keyring, mirrorAddr)
	}
	// A key other than the one that signed is refused.
	other := signtest.Generate(t, "ed25519", "")
	must(os.WriteFile(filepath.Join(root, "etc/apt/keyrings/other.gpg"), mustRead(t, other.Keyring), 0o644))
	must(os.WriteFile(sources, line("/etc/apt/keyrings/other.gpg"), 0o644))
	if out, code := inRoot(t, root, "apt-get", "update"); code == 0 || !strings.Contains(out, "NO_PUBKEY") {
		t.Fatalf("apt-get update trusted a repository signed with a key it was not given:\n%s", out)
	}
	must(os.WriteFile(sources, line("/etc/apt/keyrings/kiln.gpg"), 0o644))
	mustInRoot(t, root, "apt-get", "update", "--error-on=any")
	mustInRoot(t, root, append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, kilnPackages...)...)
	checkInstalled(t, root)

	// Purged, everything goes, conffiles included.
	mustInRoot(t, root, append([]string{"apt-get", "purge", "-y"}, kilnPackages...)...)
	for _, p := range []string{"usr/bin/worker", "etc/kiln/worker.yaml", "etc/kiln/coordinator.yaml", "lib/systemd/system/kiln-worker.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("/%s after purge: %v", p, err)
		}
	}

	// Puppet installs and configures every role; a second run changes nothing.
	must(os.MkdirAll(filepath.Join(root, "etc/puppet/code/modules"), 0o755))
	command(t, top, nil, "cp", "-a", module, filepath.Join(root, "etc/puppet/code/modules/kiln"))
	must(os.WriteFile(filepath.Join(root, "root/site.pp"), []byte(sitePP), 0o644))
	must(os.WriteFile(filepath.Join(root, "root/signing-key.asc"), mustRead(t, key.KeyFile), 0o600))
	applied, code := inRoot(t, root, "puppet", "apply", "--color=false", "--detailed-exitcodes", "/root/site.pp")
	if code != 2 {
		t.Fatalf("first puppet apply: exit %d, want 2 (changes, no failure)\n%s", code, applied)
	}
	for _, want := range []string{"Package[kiln-worker]/ensure: created", "File[/etc/kiln/worker.yaml]/content", "File[/etc/kiln/publisher/signing-key.asc]/ensure"} {
		if !strings.Contains(applied, want) {
			t.Errorf("first puppet apply does not say %q:\n%s", want, applied)
		}
	}
	checkInstalled(t, root)
	for file, wants := range map[string][]string{
		"worker.yaml":      {"coordinator: 'coord.example.org:7420'\n", "name: 'w1'\n", "slots: 3\n", "  arch: 'amd64'\n", "executor: 'containerd'\n", "  namespace: 'kiln-w1'\n"},
		"coordinator.yaml": {"listen: '0.0.0.0:7420'\n", "  w1: 'token-w1'\n", "  'mos-9.0':\n    deb_suffix: '~mos9.0+{revision}'\n", "queue_timeout: '12h'\n"},
		"publisher.yaml":   {"  key_file: '/etc/kiln/publisher/signing-key.asc'\n", "  - name: 'mos-9.0-bookworm'\n    format: 'deb'\n    suite: 'bookworm'\n"},
		"mirror.yaml":      {"root: '/srv/kiln/mirror'\n", "listen: '0.0.0.0:8080'\n"},
	} {
		data := string(mustRead(t, filepath.Join(root, "etc/kiln", file)))
		for _, w := range wants {
			if !strings.Contains(data, w) {
				t.Errorf("/etc/kiln/%s has no %q:\n%s", file, w, data)
			}
		}
		// The secret stays on the publisher's config only.
		if file != "publisher.yaml" && strings.Contains(data, "signing") {
			t.Errorf("/etc/kiln/%s names the signing key:\n%s", file, data)
		}
	}
	// The binaries read what Puppet wrote (Puppet ran the same check before
	// writing each file).
	for _, c := range [][]string{{"coordinator", "serve"}, {"worker", "run"}, {"publisher", "serve"}, {"mirror", "serve"}} {
		out := mustInRoot(t, root, c[0], c[1], "--check-config", "--config", "/etc/kiln/"+c[0]+".yaml")
		if out != "configuration ok: /etc/kiln/"+c[0]+".yaml\n" {
			t.Errorf("%s %s --check-config: %q", c[0], c[1], out)
		}
	}
	for path, want := range map[string]string{
		"/etc/kiln/publisher/signing-key.asc": "root:kiln-publisher 640",
		"/etc/kiln/publisher.yaml":            "root:kiln-publisher 640",
		"/etc/kiln/coordinator.yaml":          "root:kiln 640",
		"/etc/kiln/worker.yaml":               "root:root 644",
	} {
		if got := strings.TrimSpace(mustInRoot(t, root, "stat", "-c", "%U:%G %a", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if got := mustRead(t, filepath.Join(root, "etc/kiln/publisher/signing-key.asc")); !bytes.Equal(got, mustRead(t, key.KeyFile)) {
		t.Errorf("the signing key Puppet wrote differs from the one given")
	}
	// A config the binary refuses is not written: Puppet fails and keeps
	// the file it had.
	before := mustRead(t, filepath.Join(root, "etc/kiln/worker.yaml"))
	must(os.WriteFile(filepath.Join(root, "root/bad.pp"), []byte("class { 'kiln::worker': coordinator => 'c:1', slots => 3, executor => 'shell', manage_service => false, settings => { 'slots' => 0 } }\n"), 0o644))
	if out, code := inRoot(t, root, "puppet", "apply", "--color=false", "--detailed-exitcodes", "/root/bad.pp"); code != 4 && code != 6 || !strings.Contains(out, "slots 0") {
		t.Errorf("puppet apply of a config the worker refuses: exit %d, want 4 or 6 naming slots 0\n%s", code, out)
	}
	if !bytes.Equal(before, mustRead(t, filepath.Join(root, "etc/kiln/worker.yaml"))) {
		t.Errorf("a refused config was written")
	}
	if out, code := inRoot(t, root, "puppet", "apply", "--color=false", "--detailed-exitcodes", "/root/site.pp"); code != 0 {
		t.Fatalf("second puppet apply: exit %d, want 0 (nothing to change)\n%s", code, out)
	}

	// An upgrade keeps the configs Puppet wrote, and Puppet then has
	// nothing to change.
	version := strings.Split(filepath.Base(debs[0]), "_")[1]
	upgrade := buildDebs(t, top, t.TempDir(), "VERSION="+version+".1")
	command(t, top, nil, bin("publisher"), append([]string{"include", "--root", pubRoot, "--key", key.KeyFile, "--repo", "kiln"}, upgrade...)...)
	command(t, top, nil, bin("publisher"), "publish", "--root", pubRoot, "--key", key.KeyFile, "--repo", "kiln")
	configs := map[string][]byte{}
	for _, b := range []string{"coordinator", "worker", "publisher", "mirror"} {
		configs[b] = mustRead(t, filepath.Join(root, "etc/kiln", b+".yaml"))
	}
	mustInRoot(t, root, "apt-get", "update", "--error-on=any")
	mustInRoot(t, root, "apt-get", "upgrade", "-y", "-o", "Dpkg::Options::=--force-confold")
	for _, b := range []string{"coordinator", "worker", "publisher", "mirror"} {
		if got := mustInRoot(t, root, "dpkg-query", "-W", "-f=${Version}", "kiln-"+b); got != version+".1" {
			t.Errorf("kiln-%s %s after the upgrade, want %s.1", b, got, version)
		}
		if !bytes.Equal(configs[b], mustRead(t, filepath.Join(root, "etc/kiln", b+".yaml"))) {
			t.Errorf("the upgrade changed /etc/kiln/%s.yaml", b)
		}
	}
	applied, code = inRoot(t, root, "puppet", "apply", "--color=false", "--detailed-exitcodes", "/root/site.pp")
	if code != 0 {
		t.Fatalf("puppet apply after the upgrade: exit %d, want 0 (nothing to change)\n%s", code, applied)
	}

	// With manage_service => true the catalog names each role's units
	// (a dry run: there is no systemd to start them).
	must(os.WriteFile(filepath.Join(root, "root/services.pp"), []byte(strings.ReplaceAll(sitePP, "manage_service => false", "manage_service => true")), 0o644))
	applied, code = inRoot(t, root, "puppet", "apply", "--noop", "--color=false", "--detailed-exitcodes", "/root/services.pp")
	if code != 0 {
		t.Fatalf("puppet apply --noop with the services managed: exit %d\n%s", code, applied)
	}
	for _, unit := range []string{"kiln-coordinator", "kiln-worker", "kiln-containerd", "kiln-publisher", "kiln-mirror"} {
		if !strings.Contains(applied, "Service["+unit+"]/ensure: current_value 'stopped', should be 'running' (noop)") {
			t.Errorf("puppet apply --noop with the services managed would not run %s:\n%s", unit, applied)
		}
	}
}

// sitePP configures the four roles in one root, services unmanaged (no
// systemd there).
const sitePP = `
class { 'kiln::worker':
  coordinator    => 'coord.example.org:7420',
  worker_name    => 'w1',
  token_file     => '/etc/kiln/w1.token',
  tls            => { 'cert' => '/etc/kiln/pki/w1.pem', 'key' => '/etc/kiln/pki/w1-key.pem', 'ca' => '/etc/kiln/pki/ca.pem' },
  labels         => { 'arch' => 'amd64' },
  slots          => 3,
  buildroot      => {
    'address'   => '/run/kiln-containerd/containerd.sock',
    'namespace' => 'kiln-w1',
    'targets'   => [{ 'name' => 'bookworm-amd64', 'format' => 'deb', 'method' => 'mmdebstrap', 'suite' => 'bookworm',
                      'mirror' => 'http://deb.debian.org/debian', 'packages' => ['build-essential'] }],
  },
  manage_service => false,
}
class { 'kiln::coordinator':
  public_url     => 'https://kiln.example.org',
  tls            => { 'cert' => '/etc/kiln/pki/coordinator.pem', 'key' => '/etc/kiln/pki/coordinator-key.pem', 'ca' => '/etc/kiln/pki/ca.pem' },
  worker_tokens  => { 'w1' => 'token-w1' },
  releases       => { 'mos-9.0' => { 'deb_suffix' => '~mos9.0+{revision}', 'targets' => { 'bookworm-amd64' => 'deb' } } },
  queue_timeout  => '12h',
  manage_service => false,
}
class { 'kiln::publisher':
  signing_key    => Sensitive(file('/root/signing-key.asc')),
  repositories   => [{ 'name' => 'mos-9.0-bookworm', 'format' => 'deb', 'suite' => 'bookworm', 'architectures' => ['amd64'] }],
  serve          => { 'listen' => '0.0.0.0:9443', 'tls' => { 'cert' => '/etc/kiln/pki/publisher.pem', 'key' => '/etc/kiln/pki/publisher-key.pem', 'ca' => '/etc/kiln/pki/ca.pem' },
                      'client_cert_sha256' => ['0000000000000000000000000000000000000000000000000000000000000000'] },
  manage_service => false,
}
class { 'kiln::mirror':
  manage_service => false,
}
`

// buildDebs runs scripts/deb.sh into dir, with env added, and returns the
// packages in kilnPackages' order.
func buildDebs(t *testing.T, top, dir string, env ...string) []string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("sh", "scripts/deb.sh", dir)
	cmd.Dir = top
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/deb.sh: %v\n%s", err, tail(stderr.String(), 3000))
	}
	out := string(stdout)
	debs := strings.Fields(out)
	if len(debs) != len(kilnPackages) {
		t.Fatalf("scripts/deb.sh made %d packages, want %d:\n%s", len(debs), len(kilnPackages), out)
	}
	for i, d := range debs {
		if !strings.HasPrefix(filepath.Base(d), kilnPackages[i]+"_") {
			t.Fatalf("scripts/deb.sh made %s, want %s first", d, kilnPackages[i])
		}
	}
	t.Logf("scripts/deb.sh: %s in %s", strings.Join(debs, " "), time.Since(start).Round(time.Second))
	return debs
}

// checkInstalled checks what the packages put into root.
func checkInstalled(t *testing.T, root string) {
	t.Helper()
	for _, b := range []string{"coordinator", "worker", "publisher", "mirror"} {
		if out := mustInRoot(t, root, b, "--help"); !strings.Contains(out, "Usage: "+b) {
			t.Errorf("%s --help in the root:\n%s", b, out)
		}
		if _, err := os.Stat(filepath.Join(root, "usr/share/man/man1", b+".1.gz")); err != nil {
			t.Errorf("man page: %v", err)
		}
		conf := "/etc/kiln/" + b + ".yaml"
		if out := mustInRoot(t, root, "dpkg-query", "-W", "-f=${Conffiles}", "kiln-"+b); !strings.Contains(out, conf+" ") {
			t.Errorf("kiln-%s's conffiles: %q, want %s", b, out, conf)
		}
		unit := string(mustRead(t, filepath.Join(root, "lib/systemd/system/kiln-"+b+".service")))
		if !strings.Contains(unit, "\nExecStart=/usr/bin/"+b+" ") {
			t.Errorf("kiln-%s.service does not start /usr/bin/%s:\n%s", b, b, unit)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "lib/systemd/system/kiln-containerd.service")); err != nil {
		t.Errorf("kiln-containerd.service: %v", err)
	}
	for _, u := range []string{"kiln", "kiln-publisher"} {
		if out := mustInRoot(t, root, "getent", "passwd", u); !strings.Contains(out, "/usr/sbin/nologin") {
			t.Errorf("user %s: %q, want a system user without a shell", u, out)
		}
	}
	if got := strings.TrimSpace(mustInRoot(t, root, "stat", "-c", "%U:%G %a", "/etc/kiln/publisher")); got != "root:kiln-publisher 750" {
		t.Errorf("/etc/kiln/publisher: %s, want root:kiln-publisher 750", got)
	}
}

// packagingRoot extracts a Debian 12 minbase root with puppet and the
// Depends of debs into a new directory and returns it. Its archive is
// made once by mmdebstrap and cached in $KILN_TEST_CACHE/chroots.
func packagingRoot(t *testing.T, debs []string) string {
	t.Helper()
	include := []string{"puppet", "ca-certificates"}
	for _, d := range debs {
		out := command(t, "/", nil, "dpkg-deb", "-f", d, "Depends")
		for _, dep := range strings.Split(out, ",") {
			// The first alternative, without its version.
			name := strings.Fields(strings.Split(dep, "|")[0])
			if len(name) > 0 && !slices.Contains(include, name[0]) {
				include = append(include, name[0])
			}
		}
	}
	slices.Sort(include)
	mirror, suite := debianMirror(), "bookworm"
	args := []string{"--mode=root", "--variant=minbase", "--format=tar", "--include=" + strings.Join(include, ","), suite}
	sum := sha256.Sum256([]byte(strings.Join(append(args, mirror), " ")))
	cacheRoot := os.Getenv("KILN_TEST_CACHE")
	if cacheRoot == "" {
		cacheRoot = "/var/cache/kiln-test"
	}
	dir := filepath.Join(cacheRoot, "chroots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "kiln-packaging-"+hex.EncodeToString(sum[:8])+".tar")
	lock, err := os.OpenFile(archive+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(archive); err != nil {
		start := time.Now()
		t.Logf("making the packaging test's root with mmdebstrap (once per machine): %s", strings.Join(include, " "))
		command(t, "/", nil, "mmdebstrap", append(args, archive+".tmp", mirror)...)
		if err := os.Rename(archive+".tmp", archive); err != nil {
			t.Fatal(err)
		}
		t.Logf("made %s in %s", archive, time.Since(start).Round(time.Second))
		old, _ := filepath.Glob(filepath.Join(dir, "kiln-packaging-*.tar"))
		for _, o := range old {
			if o != archive {
				os.Remove(o)
				os.Remove(o + ".lock")
			}
		}
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	root := t.TempDir()
	command(t, "/", nil, "tar", "--numeric-owner", "-xf", archive, "-C", root)
	return root
}

// inRoot runs a command chrooted into root, with /proc mounted in a mount
// namespace of its own (gone when the command ends), and returns its
// output and exit code.
func inRoot(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	const script = `mount -t proc proc "$0/proc" && exec chroot "$0" "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script, root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8", "HOME=/root"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		}
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

func mustInRoot(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, code := inRoot(t, root, args...)
	if code != 0 {
		t.Fatalf("in the root: %s: exit %d\n%s", strings.Join(args, " "), code, tail(out, 4000))
	}
	return out
}

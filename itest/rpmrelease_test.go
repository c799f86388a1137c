package itest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/rpmdisttest"
)

// TestRPMReleaseRebuildsFromItselfAlone is the promise of self-contained
// releases for an RPM target, with real processes, containerd, dnf and the
// publisher: a package whose BuildRequires only the stand-in RPM
// distribution provides is built in release rel; every package its
// buildroot was made from or installed (the chroot's, and what the worker
// host's dnf installed into it) lands in rel's base, a second build takes
// its BuildRequires from the worker's package cache, dnf accepts the base
// with gpgcheck and repo_gpgcheck against the operator's key alone; then
// rel is sealed, the worker's stand-in repository points where nothing
// listens, its chroots are removed, and `release verify` rebuilds the
// package from rel alone (a dnf chroot made from the base), identical.
func TestRPMReleaseRebuildsFromItselfAlone(t *testing.T) {
	d := rpmdisttest.Get(t)
	testenv.Tool(t, "dnf")
	p := newPipelineWith(t, nil, d)
	c, g, dir, target, repo := p.c, p.g, p.dir, p.target, p.repoName
	mirror := "http://" + p.mirrorAddr
	pub := filepath.Join(dir, "pub.asc")
	repos := fmt.Sprintf(`  repositories:
    - release: rel
      baseurl: "%s/%s/"
      key_file: %s
      base_baseurl: "%s/%s-base/"
`, mirror, repo, pub, mirror, repo)
	// rel exists, empty, before its first build draws on it.
	if out, errOut, code := run(t, bin("publisher"), "publish", "--config", p.pubCfg, "--repo", repo); code != 0 {
		t.Fatalf("publisher publish: %d %s %s", code, out, errOut)
	}
	p.worker.stop(t)
	p.worker = p.startWorker(t, workerOptions{build: repos})

	// 1. The build: kiln-dist-devel (not in the chroot) comes through the
	// worker's package source proxy and into the base.
	url, _ := g.repo(t, "python-kiln-widget", "../worker/pkgbuild/testdata/kiln-widget-rpm")
	out, errOut, code := c.cliTimeout(15*time.Minute, "build", "--release", "rel", "--target", target, "--package", "python-kiln-widget", "--source", url+"@master", "--publish", "--wait")
	if code != 0 || !strings.Contains(errOut, "publish: published") {
		t.Fatalf("build: %d\n%s\n%s", code, tail(out, 4000), errOut)
	}
	for _, want := range []string{"bootstrap: dnf reaches the package sources", "package cache miss kiln-dist-devel-1.1-1.noarch.rpm"} {
		if !strings.Contains(out, want) {
			t.Errorf("build log lacks %q:\n%s", want, tail(out, 4000))
		}
	}
	if !regexp.MustCompile(`kiln: base: [1-9][0-9]+ package files`).MatchString(out) {
		t.Errorf("the build captured no base:\n%s", tail(out, 3000))
	}

	// A second build needing the same BuildRequires (a verified rebuild)
	// takes them from the worker's package cache.
	first := jobID(t, errOut)
	out, errOut, code = c.cliTimeout(15*time.Minute, "rebuild", "--verify", first)
	if code != 0 || !strings.Contains(errOut, "byte-identical to job "+first) {
		t.Fatalf("rebuild --verify %s: %d\n%s\n%s", first, code, tail(out, 4000), errOut)
	}
	if !strings.Contains(out, "package cache hit kiln-dist-devel-1.1-1.noarch.rpm") {
		t.Errorf("the second build did not take kiln-dist-devel from the package cache:\n%s", tail(out, 4000))
	}

	// 2. The base is a signed repository dnf accepts with the operator's
	// key alone (repomd.xml and packages), holding the chroot's packages
	// and the BuildRequires.
	names := dnfBaseNames(t, dir, mirror+"/"+repo+"-base/", pub)
	for _, want := range []string{"kiln-dist-devel", "kiln-dist-release", "rpm", "bash", "make"} {
		if !names[want] {
			t.Errorf("%s-base lacks %s (%d packages)", repo, want, len(names))
		}
	}
	if names["python-kiln-widget"] {
		t.Errorf("%s-base holds the release's own package", repo)
	}

	// 3. Seal; no stand-in repository, no chroot on the worker.
	admin := tlsconfig.Files{Cert: filepath.Join(dir, "pki", "admin.pem"), Key: filepath.Join(dir, "pki", "admin-key.pem"), CA: filepath.Join(dir, "pki", "ca.pem")}
	if out, errOut, code := runEnv(t, []string{"KILN_SERVER=" + c.addr, "KILN_TLS_CERT=" + admin.Cert, "KILN_TLS_KEY=" + admin.Key, "KILN_TLS_CA=" + admin.CA},
		bin("coordinator"), "release", "seal", "rel"); code != 0 {
		t.Fatalf("seal: %d %s %s", code, out, errOut)
	}
	p.worker.stop(t)
	if out, errOut, code := run(t, bin("worker"), "chroot", "remove", target, "--config", p.workerCfg); code != 0 {
		t.Fatalf("chroot remove: %d %s %s", code, out, errOut)
	}
	dead := "http://" + freeAddr(t) + "/kiln-dist/"
	p.worker = p.startWorker(t, workerOptions{mirror: dead, build: repos})
	if cfg, err := os.ReadFile(p.workerCfg); err != nil || strings.Contains(string(cfg), d.URL) || !strings.Contains(string(cfg), dead) {
		t.Fatalf("the worker's config still names the stand-in repository %s: %v\n%s", d.URL, err, cfg)
	}

	// 4. rel rebuilt from rel alone, identical.
	out, errOut, code = c.cliTimeout(20*time.Minute, "release", "verify", "rel", "--wait")
	jobs := regexp.MustCompile(`rebuild job ([0-9]+)`).FindAllStringSubmatch(out, -1)
	if code != 0 {
		for _, m := range jobs {
			l, _, _ := c.cli("jobs", "logs", m[1])
			t.Logf("--- rebuild job %s ---\n%s", m[1], tail(l, 8000))
		}
		t.Fatalf("release verify: %d\n%s\n%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^python-kiln-widget 2\.3\.1-1\.kd1\.rel1 identical`).MatchString(out) {
		t.Errorf("verify output:\n%s\n%s", out, errOut)
	}
	if len(jobs) != 1 {
		t.Fatalf("rebuild jobs %v in:\n%s", jobs, out)
	}
	l, _, _ := c.cli("jobs", "logs", jobs[0][1])
	if testing.Verbose() {
		t.Logf("rebuild job %s:\n%s", jobs[0][1], l)
	}
	// The sealed chroot and the build dependencies came from rel's
	// mirror alone, checked with the operator's key.
	for _, want := range []string{"release rel is sealed", "making chroot " + buildroot.SealedTarget(target, "rel"), "Kiln Test Repository <repo@kiln.invalid>",
		"bootstrap: dnf reaches the package sources (http://" + p.mirrorAddr + ") only", "kiln-dist-devel-1.1-1.noarch"} {
		if !strings.Contains(l, want) {
			t.Errorf("rebuild job %s log lacks %q:\n%s", jobs[0][1], want, tail(l, 4000))
		}
	}
	if strings.Contains(l, strings.TrimPrefix(strings.TrimSuffix(dead, "/kiln-dist/"), "http://")) {
		t.Errorf("rebuild job %s reached for the stand-in repository:\n%s", jobs[0][1], tail(l, 4000))
	}

	// 5. A forced build of the sealed release is published, with its base:
	// the files it offers for the base are the base's own signed rpms.
	out, errOut, code = c.cliTimeout(15*time.Minute, "rebuild", first, "--wait")
	if code != 0 || !strings.Contains(errOut, "publish: published") || !strings.Contains(out, "python-kiln-widget-2.3.1-1.kd1.rel2.noarch.rpm") {
		t.Fatalf("forced build of sealed rel: %d\n%s\n%s", code, tail(out, 4000), errOut)
	}
}

// dnfBaseNames installs kiln-dist-devel from the repository at url alone
// into a scratch root with the host's dnf, gpgcheck=1 and repo_gpgcheck=1
// against keyFile (so repomd.xml and the package must carry the key's
// signatures), and returns the names of every package the repository
// offers.
func dnfBaseNames(t *testing.T, dir, url, keyFile string) map[string]bool {
	t.Helper()
	base := filepath.Join(dir, "dnf-base")
	repos := filepath.Join(base, "repos")
	if err := os.MkdirAll(repos, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(repos, "base.repo"), []byte(fmt.Sprintf("[base]\nname=base\nbaseurl=%s\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://%s\nskip_if_unavailable=False\n", url, keyFile)), 0o644)
	env, err := buildroot.BootstrapEnv(base)
	if err != nil {
		t.Fatal(err)
	}
	dnf := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("dnf", append([]string{"-y", "--installroot=" + filepath.Join(base, "root"), "--releasever=1", "--setopt=reposdir=" + repos,
			"--setopt=cachedir=" + filepath.Join(base, "cache"), "--setopt=gpgcheck=1", "--setopt=repo_gpgcheck=1"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dnf %s from %s: %v\n%s", strings.Join(args, " "), url, err, tail(string(out), 3000))
		}
		return string(out)
	}
	if out := dnf("install", "kiln-dist-devel"); !strings.Contains(out, "Importing GPG key") || !strings.Contains(out, "Kiln Test Repository") {
		t.Errorf("dnf did not check the base with the operator's key:\n%s", tail(out, 3000))
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(dnf("repoquery", "--quiet", "--qf", "%{name}")) {
		names[n] = true
	}
	return names
}

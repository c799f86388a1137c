package itest

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// TestReleaseRebuildsFromItselfAlone is the promise of self-contained
// releases, with real processes, containerd, apt and the publisher: two
// packages are built in release rel, one build-depending on the other at
// a version only rel has; every package their buildroots used lands in
// rel's signed base; the second build takes its shared build dependencies
// from the worker's package cache; then the worker's upstream mirror
// points where nothing listens, its chroots are removed, rel is sealed
// (a build queued before the seal runs sealed), and `release verify`
// rebuilds both from rel alone, byte-identical.
func TestReleaseRebuildsFromItselfAlone(t *testing.T) {
	p := newPipeline(t, nil)
	c, g, dir, target, repo := p.c, p.g, p.dir, p.target, p.repoName
	mirror := "http://" + p.mirrorAddr
	pub := filepath.Join(dir, "pub.asc")
	metrics := freeAddr(t)
	repos := fmt.Sprintf(`  repositories:
    - release: rel
      apt: "deb [signed-by=%s] %s/%s bookworm main"
      base_apt: "deb %s/%s-base bookworm main"
`, pub, mirror, repo, mirror, repo)
	p.worker.stop(t)
	// The chroot is made as an operator makes it, so that the package
	// files it was made from are kept for the base.
	if out, errOut, code := runTimeout(t, 20*time.Minute, bin("worker"), "chroot", "refresh", target, "--config", p.workerCfg); code != 0 || !strings.Contains(out+errOut, "package files of the chroot kept") {
		t.Fatalf("chroot refresh: %d\n%s\n%s", code, tail(out, 3000), tail(errOut, 3000))
	}
	p.worker = p.startWorker(t, workerOptions{build: repos, extra: "metrics_listen: " + metrics + "\n"})
	// The release exists, empty, before its first build draws on it (its
	// base is made by the first build's base files).
	if out, errOut, code := run(t, bin("publisher"), "publish", "--config", p.pubCfg, "--repo", repo); code != 0 {
		t.Fatalf("publisher publish: %d %s %s", code, out, errOut)
	}
	build := func(pkg, url string) string {
		t.Helper()
		out, errOut, code := c.cliTimeout(15*time.Minute, "build", "--release", "rel", "--target", target, "--package", pkg, "--source", url+"@master", "--publish", "--wait")
		if code != 0 || !strings.Contains(errOut, "publish: published") {
			t.Fatalf("build %s: %d\n%s\n%s", pkg, code, tail(out, 4000), errOut)
		}
		return out
	}

	// 1. The build dependency, then the package that needs it.
	depURL, _ := g.repo(t, "kiln-test-dep", "testdata/kiln-test-dep")
	out := build("kiln-test-dep", depURL)
	if !regexp.MustCompile(`kiln: base: [1-9][0-9]+ package files`).MatchString(out) {
		t.Errorf("the first build captured no base:\n%s", tail(out, 3000))
	}
	withURL, _ := g.repo(t, "hello-withdep", "testdata/hello-withdep")
	out = build("hello-withdep", withURL)
	if !strings.Contains(out, "building hello-withdep against: kiln-test-dep 1.0 from the release repository") {
		t.Errorf("hello-withdep was not built against rel's kiln-test-dep:\n%s", tail(out, 3000))
	}
	// 2. Its shared build dependency (tree, not in the chroot) came from
	// the worker's package cache: said in the log and counted.
	if !strings.Contains(out, "kiln: package cache hit ") {
		t.Errorf("the second build took nothing from the package cache:\n%s", tail(out, 3000))
	}
	if hits := metricValue(t, "http://"+metrics+"/metrics", "kiln_worker_package_cache_hits_total"); hits < 1 {
		t.Errorf("kiln_worker_package_cache_hits_total = %v", hits)
	}
	// 3. The base is a signed repository apt accepts with the operator's
	// key alone, holding the chroot's packages.
	names := aptNames(t, dir, fmt.Sprintf("deb [signed-by=%s] %s/%s-base bookworm main", pub, mirror, repo))
	for _, want := range []string{"dpkg-dev", "make", "passwd", "libc6"} {
		if !names[want] {
			t.Errorf("%s-base lacks %s (%d packages)", repo, want, len(names))
		}
	}

	// 4. No upstream mirror, no chroot on the worker; seal. A build queued
	// before the seal (no worker runs meanwhile) is re-marked by it.
	p.worker.stop(t)
	if out, errOut, code := run(t, bin("worker"), "chroot", "remove", target, "--config", p.workerCfg); code != 0 {
		t.Fatalf("chroot remove: %d %s %s", code, out, errOut)
	}
	out, errOut, code := c.cli("build", "--release", "rel", "--target", target, "--package", "kiln-test-dep", "--source", depURL+"@master", "--force")
	queued := strings.TrimSpace(out)
	if code != 0 || queued == "" {
		t.Fatalf("build queued before the seal: %d %q %s", code, out, errOut)
	}
	// Sealing is for admins: the pipeline's CLI is Jenkins, a client.
	admin := tlsconfig.Files{Cert: filepath.Join(p.dir, "pki", "admin.pem"), Key: filepath.Join(p.dir, "pki", "admin-key.pem"), CA: filepath.Join(p.dir, "pki", "ca.pem")}
	out, errOut, code = runEnv(t, []string{"KILN_SERVER=" + c.addr, "KILN_TLS_CERT=" + admin.Cert, "KILN_TLS_KEY=" + admin.Key, "KILN_TLS_CA=" + admin.CA},
		bin("coordinator"), "release", "seal", "rel")
	if code != 0 || !strings.Contains(out, "queued builds re-marked to build sealed, from the release alone: 1 (job "+queued+")") {
		t.Fatalf("seal: %d, want job %s re-marked:\n%s\n%s", code, queued, out, errOut)
	}
	dead := "http://" + freeAddr(t) + "/debian"
	// The worker has no chroot of the target, so no target label: it
	// takes rel's sealed builds because its build.repositories name rel's
	// base (labels sealed-target and sealed-release).
	p.worker = p.startWorker(t, workerOptions{mirror: dead, build: repos})

	// 5. Every package of rel rebuilt from rel alone, identical.
	out, errOut, code = c.cliTimeout(25*time.Minute, "release", "verify", "rel", "--wait")
	if code != 0 {
		for _, m := range regexp.MustCompile(`rebuild job ([0-9]+)`).FindAllStringSubmatch(out, -1) {
			l, _, _ := c.cli("jobs", "logs", m[1])
			t.Logf("--- rebuild job %s ---\n%s", m[1], tail(l, 6000))
		}
		t.Fatalf("release verify: %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{`(?m)^kiln-test-dep 1\.0\+rel1 identical`, `(?m)^hello-withdep 1\.0\+rel1 identical`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("verify output lacks %s:\n%s\n%s", want, out, errOut)
		}
	}
	jobs := regexp.MustCompile(`rebuild job ([0-9]+)`).FindAllStringSubmatch(out, -1)
	if len(jobs) != 2 {
		t.Fatalf("rebuild jobs %v in:\n%s", jobs, out)
	}
	for _, m := range jobs {
		l, _, _ := c.cli("jobs", "logs", m[1])
		if !strings.Contains(l, "release rel is sealed") || strings.Contains(l, strings.TrimPrefix(dead, "http://")+" ") {
			t.Errorf("rebuild job %s did not build sealed:\n%s", m[1], tail(l, 3000))
		}
	}
	// The build queued before the seal ran sealed too.
	if j := c.waitJobs([]string{queued}, 15*time.Minute)[queued]; j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED || !j.GetSpec().GetPackageBuild().GetSealed() {
		t.Errorf("build %s queued before the seal: %s, sealed %v", queued, j.GetState(), j.GetSpec().GetPackageBuild().GetSealed())
	}
	if l, _, _ := c.cli("jobs", "logs", queued); !strings.Contains(l, "release rel was sealed by ") || !strings.Contains(l, "release rel is sealed") ||
		strings.Contains(l, strings.TrimPrefix(dead, "http://")+" ") {
		t.Errorf("build %s queued before the seal did not build sealed:\n%s", queued, tail(l, 3000))
	}
	show, _, _ := c.cli("release", "show", "rel")
	if !strings.Contains(show, "sealed") {
		t.Errorf("release show:\n%s", show)
	}
}

// cliTimeout is cli with a longer limit, for waits on whole builds.
func (c *cluster) cliTimeout(d time.Duration, args ...string) (string, string, int) {
	c.t.Helper()
	env := []string{"KILN_SERVER=" + c.addr}
	if c.clientTLS != nil {
		env = append(env, "KILN_TLS_CERT="+c.clientTLS.Cert, "KILN_TLS_KEY="+c.clientTLS.Key, "KILN_TLS_CA="+c.clientTLS.CA)
	}
	return runEnvTimeout(c.t, d, env, bin("coordinator"), args...)
}

// runTimeout is run with a longer limit.
func runTimeout(t *testing.T, d time.Duration, name string, args ...string) (string, string, int) {
	t.Helper()
	return runEnvTimeout(t, d, nil, name, args...)
}

// metricValue reads one unlabelled sample from a Prometheus text page.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("%s not in %s", name, url)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// aptNames runs apt-get update on one source in an isolated apt
// configuration (no warnings allowed) and returns the package names it
// offers.
func aptNames(t *testing.T, dir, source string) map[string]bool {
	t.Helper()
	opts := isolatedApt(filepath.Join(dir, "apt-names"), source)
	if out, err := exec.Command("apt-get", append(opts, "update")...).CombinedOutput(); err != nil || strings.Contains(string(out), "W: ") {
		t.Fatalf("apt-get update %s: %v\n%s", source, err, out)
	}
	out, err := exec.Command("apt-cache", append(opts, "pkgnames")...).Output()
	if err != nil {
		t.Fatalf("apt-cache pkgnames: %v", err)
	}
	names := map[string]bool{}
	for _, n := range strings.Fields(string(out)) {
		names[n] = true
	}
	return names
}

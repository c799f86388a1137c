package itest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/buildroot/rpmdisttest"
	"github.com/kiln-build/kiln/worker/executor"
)

// dnfTarget is the name of the method dnf target made from the stand-in
// RPM distribution.
const dnfTarget = "kiln-dist1-x86_64"

// dnfTargetYAML is a worker config's target entry for t.
func dnfTargetYAML(t buildroot.Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n    - name: %s\n      format: rpm\n      method: dnf\n      releasever: %q\n      packages: [%s]\n      repositories:\n",
		t.Name, t.Releasever, strings.Join(t.Packages, ", "))
	for _, r := range t.Repositories {
		fmt.Fprintf(&b, "        - {name: %s, baseurl: %q, gpgkey: %q}\n", r.Name, r.BaseURL, r.GPGKey)
	}
	return b.String()
}

// TestDNFChrootFromStandIn makes a method dnf chroot the way an operator
// does, with `worker chroot create`, from the stand-in RPM distribution:
// the host's dnf installs it with --installroot, gpgcheck and
// repo_gpgcheck on with the repository's key. The chroot holds the
// distribution's rpm, with its database where the target's rpm reads it.
func TestDNFChrootFromStandIn(t *testing.T) {
	d := rpmdisttest.Get(t)
	brCfg := buildroottest.Config(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`coordinator: 127.0.0.1:1
name: chroot-maker
work_dir: %s
buildroot:
  address: %s
  namespace: %s
  state_dir: %s
  package_cache: {dir: %s}
  targets: %s`, filepath.Join(dir, "work"), brCfg.Address, brCfg.Namespace, brCfg.StateDir, brCfg.PackageCache.Dir,
		dnfTargetYAML(d.Target(dnfTarget)))), 0o644)
	out, errOut, code := runTimeout(t, 10*time.Minute, bin("worker"), "chroot", "create", dnfTarget, "--config", cfg)
	if code != 0 {
		t.Fatalf("chroot create: %d\n%s\n%s", code, tail(out, 3000), tail(errOut, 5000))
	}
	// dnf checked the repository's signature and the packages' with the
	// key given in the target.
	for _, want := range []string{"Importing GPG key", "Kiln stand-in RPM distribution <dist@kiln.invalid>", "package files of the chroot kept"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("chroot create output lacks %q:\n%s", want, tail(errOut, 3000))
		}
	}
	list, _, code := run(t, bin("worker"), "chroot", "list", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(list, `"name": "rpm-4.18`) || !strings.Contains(list, `"name": "kiln-dist-release-1-1.noarch.rpm"`) {
		t.Errorf("chroot list: %d\n%s", code, tail(list, 3000))
	}
	// The chroot's own rpm, in a sandbox on it, finds the packages dnf
	// installed and the distribution's macros.
	brCfg.Targets = []buildroot.Target{d.Target(dnfTarget)}
	b, err := buildroot.New(t.Context(), brCfg, buildroottest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Purge(context.Background()); b.Close() })
	work := t.TempDir()
	sb, err := b.OpenSandbox(t.Context(), dnfTarget, work)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close(context.Background())
	var q bytes.Buffer
	r, err := sb.Exec(t.Context(), executor.Step{Argv: []string{"sh", "-c", "rpm -q kiln-dist-release rpm bash && rpm --eval 'dist=%{?dist}' && id kiln"}}, &q)
	if err != nil || r.Failed() || !strings.Contains(q.String(), "kiln-dist-release-1-1.noarch") || !strings.Contains(q.String(), "dist=.kd1") {
		t.Errorf("rpm in the chroot: %v %+v\n%s", err, r, q.String())
	}
}

// TestRPMPipeline runs an RPM package through the whole installation: a
// spec whose BuildRequires only the stand-in distribution provides is built
// in a method dnf buildroot made from it, published to a signed rpm
// repository, served by the mirror, and installed from there by dnf with
// gpgcheck=1 and repo_gpgcheck=1 against the operator's key. A verified
// rebuild installs the recorded versions and is byte-identical.
func TestRPMPipeline(t *testing.T) {
	d := rpmdisttest.Get(t)
	testenv.Tool(t, "dnf")
	p := newPipelineWith(t, nil, d)
	c, g := p.c, p.g
	url, _ := g.repo(t, "python-kiln-widget", "../worker/pkgbuild/testdata/kiln-widget-rpm")
	out, errOut, code := c.cli("build", "--release", "rel", "--target", p.target, "--package", "python-kiln-widget", "--source", url+"@master", "--publish", "--wait")
	if code != 0 || !strings.Contains(errOut, "publish: published") {
		t.Fatalf("build: %d\n%s\n%s", code, tail(out, 4000), errOut)
	}
	for _, want := range []string{"bootstrap: dnf --installroot", "python-kiln-widget-2.3.1-1.kd1.rel1.noarch.rpm"} {
		if !strings.Contains(out, want) {
			t.Errorf("build log lacks %q:\n%s", want, tail(out, 3000))
		}
	}
	first := jobID(t, errOut)
	show, _, _ := c.cli("jobs", "show", first, "--json")
	for _, want := range []string{`"version": "2.3.1-1.kd1.rel1"`, `"name": "kiln-dist-devel"`, `"version": "1.1-1"`, `"architecture": "noarch"`} {
		if !strings.Contains(show, want) {
			t.Errorf("job %s lacks %s:\n%s", first, want, tail(show, 3000))
		}
	}

	// dnf installs it from the mirror, checking repomd.xml's signature and
	// the package's with the operator's key.
	root := filepath.Join(p.dir, "dnf-root")
	repos := filepath.Join(p.dir, "dnf-repos")
	os.MkdirAll(repos, 0o755)
	os.WriteFile(filepath.Join(repos, "rel.repo"), []byte(fmt.Sprintf("[rel]\nname=rel\nbaseurl=http://%s/%s/\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://%s\n",
		p.mirrorAddr, p.repoName, filepath.Join(p.dir, "pub.asc"))), 0o644)
	env, err := buildroot.BootstrapEnv(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	dnf := exec.Command("dnf", "-y", "--installroot="+root, "--releasever=1", "--setopt=reposdir="+repos, "--setopt=cachedir="+filepath.Join(p.dir, "dnf-cache"),
		"install", "python-kiln-widget")
	dnf.Env = env
	if o, err := dnf.CombinedOutput(); err != nil || !strings.Contains(string(o), "Importing GPG key") {
		t.Fatalf("dnf install from the published repository: %v\n%s", err, o)
	}
	q := exec.Command("rpm", "--root", root, "--dbpath", buildroot.RPMDBPath, "-q", "python-kiln-widget")
	if o, err := q.CombinedOutput(); err != nil || strings.TrimSpace(string(o)) != "python-kiln-widget-2.3.1-1.kd1.rel1.noarch" {
		t.Errorf("rpm -q: %v %s", err, o)
	}
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/kiln-widget/widget.txt")); err != nil || !strings.Contains(string(b), "built with kiln-dist-devel 1.1") {
		t.Errorf("installed widget.txt: %v %q", err, b)
	}

	// A verified rebuild from the record.
	_, errOut, code = c.cli("rebuild", "--verify", first)
	if code != 0 || !strings.Contains(errOut, "byte-identical to job "+first) {
		t.Errorf("verify: %d %s", code, errOut)
	}
}

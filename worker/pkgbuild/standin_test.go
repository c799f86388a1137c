package pkgbuild

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/buildroot/rpmdisttest"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestIntegrationRPMStandIn builds an RDO-style spec the way mock does, in
// a method dnf buildroot made from the stand-in RPM distribution: the
// buildroot's rpm evaluates the spec, the worker host's dnf installs the
// BuildRequires that only that distribution provides into the buildroot
// (which has neither dnf nor yum) with gpgcheck on, and a pinned rebuild
// installs the recorded versions while a newer one is in the repository.
func TestIntegrationRPMStandIn(t *testing.T) {
	d := rpmdisttest.Get(t)
	cfg := buildroottest.Config(t)
	const target = "kiln-dist1-x86_64"
	cfg.Targets = []buildroot.Target{d.Target(target)}
	// The release repository also over https, its certificate trusted by
	// the package source proxy through buildroot.source_ca_file.
	backend := gadgetBackendRepoDir(t, d)
	front := httptest.NewTLSServer(http.FileServer(http.Dir(backend)))
	defer front.Close()
	cfg.SourceCAFile = filepath.Join(t.TempDir(), "sources-ca.pem")
	if err := os.WriteFile(cfg.SourceCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	br, err := buildroot.New(ctx, cfg, buildroottest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Purge(context.Background()); br.Close() })
	var mk strings.Builder
	if _, err := br.Create(ctx, target, &mk); err != nil {
		t.Fatalf("chroot create: %v\n%s", err, mk.String())
	}
	srv := newGitServer(t)
	bcfg := testConfig(t)
	// Release mos-9.1 has a repository of its own, which alone provides
	// kiln-gadget-backend.
	bcfg.Repositories = []Repository{{Release: "mos-9.1", BaseURL: rpmdisttest.Serve(t, backend), KeyFile: d.KeyFile}}
	b := New(bcfg, br, buildroottest.Logger(t))
	// repoOf makes a code+packaging repository called name from testdata
	// dir from, with edit applied to its spec.
	repoOf := func(name, from, spec string, edit func(spec string) string) []executor.Source {
		c := srv.repo(t, "packages/"+name, from, func(dir string) {
			if edit == nil {
				return
			}
			p := filepath.Join(dir, spec)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(edit(string(data))), 0o644)
		})
		return []executor.Source{{URL: srv.url("packages/" + name), Commit: c}}
	}
	repo := func(name string, edit func(spec string) string) []executor.Source {
		return repoOf(name, "kiln-widget-rpm", "python-kiln-widget.spec", edit)
	}
	pb := executor.PackageBuild{Package: "python-kiln-widget", Target: target, Release: "mos-9.0", Revision: 2, VersionSuffix: ".mos9.0.2",
		Sources: repo("kiln-widget", nil)}
	res, log, workDir := runBuild(t, b, pb)
	if res.Failed() {
		t.Fatalf("build failed: %s\n%s", res.Reason, log)
	}
	// %{?dist} is the distribution's (.kd1) with the revision after it.
	want := []string{"python-kiln-widget-2.3.1-1.kd1.mos9.0.2.noarch.rpm", "python-kiln-widget-2.3.1-1.kd1.mos9.0.2.src.rpm"}
	if got := outFiles(t, workDir); !slices.Equal(got, want) {
		t.Errorf("artifacts = %q, want %q\n%s", got, want, log)
	}
	if res.Record.Version != "2.3.1-1.kd1.mos9.0.2" {
		t.Errorf("version = %q", res.Record.Version)
	}
	if !slices.ContainsFunc(res.Record.Commands, func(c string) bool { return strings.HasPrefix(c, "dnf --installroot=<buildroot> install") }) {
		t.Errorf("record commands lack the bootstrap dnf: %q", res.Record.Commands)
	}
	for _, w := range []string{"bootstrap: dnf --installroot", "kiln: BuildRequires: kiln-dist-devel >= 1.0"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	widget := func(dir string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", "rpm2cpio "+filepath.Join(dir, outDir, want[0])+" | cpio -i --quiet --to-stdout ./usr/share/kiln-widget/widget.txt")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("read widget.txt: %v", err)
		}
		return string(out)
	}
	if w := widget(workDir); w != "hello, patched world\nbuilt with kiln-dist-devel 1.1\n" {
		t.Errorf("widget.txt = %q: the patch or the newest kiln-dist-devel was not used", w)
	}
	installed := func(r executor.Result, name string) string {
		for _, p := range r.Record.Installed {
			if p.Name == name {
				return p.Version + " " + p.Architecture
			}
		}
		return ""
	}
	if v := installed(res, "kiln-dist-devel"); v != "1.1-1 noarch" {
		t.Errorf("record has kiln-dist-devel %q, want 1.1-1 noarch; record: %v", v, res.Record.Installed)
	}
	if v := installed(res, "rpm"); !strings.HasPrefix(v, "4.18") {
		t.Errorf("record has rpm %q", v)
	}
	// The BuildRequires were installed into a buildroot that has no
	// package manager of its own beside rpm.
	for _, pm := range []string{"dnf", "yum", "microdnf", "python3-dnf", "libdnf"} {
		if v := installed(res, pm); v != "" {
			t.Errorf("the buildroot has %s %s: the test no longer shows a buildroot without dnf or yum", pm, v)
		}
	}

	t.Run("pinned", func(t *testing.T) {
		// A record made when 1.0 was the newest: the rebuild installs 1.0
		// although 1.1 is in the repository.
		pinned := slices.Clone(res.Record.Installed)
		for i := range pinned {
			if pinned[i].Name == "kiln-dist-devel" {
				pinned[i].Version = "1.0-1"
			}
		}
		p := pb
		p.Pinned = pinned
		again, log2, dir2 := runBuild(t, b, p)
		if again.Failed() {
			t.Fatalf("pinned rebuild failed: %s\n%s", again.Reason, log2)
		}
		if v := installed(again, "kiln-dist-devel"); v != "1.0-1 noarch" {
			t.Errorf("pinned rebuild installed kiln-dist-devel %q, want 1.0-1\n%s", v, log2)
		}
		if w := widget(dir2); !strings.Contains(w, "built with kiln-dist-devel 1.0\n") {
			t.Errorf("widget.txt of the pinned rebuild = %q", w)
		}
	})
	t.Run("nothing provides", func(t *testing.T) {
		p := pb
		p.Sources = repo("kiln-widget-docs", func(s string) string {
			return strings.Replace(s, "%{!?with_docs: %global with_docs 0}", "%global with_docs 1", 1)
		})
		r, log, _ := runBuild(t, b, p)
		if r.ExitCode != 1 || !strings.Contains(r.Reason, "kiln-docs-tool-nobody-has") {
			t.Errorf("exit %d, reason %q; want 1 naming kiln-docs-tool-nobody-has\n%s", r.ExitCode, r.Reason, log)
		}
	})
	t.Run("generated BuildRequires", func(t *testing.T) {
		// A Fedora-style spec whose %generate_buildrequires asks for what
		// only the stand-in provides; the next pass asks for the API the
		// installed package's macros name (installed already) and
		// for the backend only the release's repository has; the third
		// finds nothing missing.
		p := pb
		p.Package, p.Release, p.VersionSuffix = "python-kiln-gadget", "mos-9.1", ".mos9.1.1"
		p.Sources = repoOf("kiln-gadget", "kiln-gadget-rpm", "python-kiln-gadget.spec", nil)
		r, log, dir := runBuild(t, b, p)
		if r.Failed() {
			t.Fatalf("build failed: %s\n%s", r.Reason, log)
		}
		want := []string{"python-kiln-gadget-0.4.0-1.kd1.mos9.1.1.noarch.rpm", "python-kiln-gadget-0.4.0-1.kd1.mos9.1.1.src.rpm"}
		if got := outFiles(t, dir); !slices.Equal(got, want) {
			t.Errorf("artifacts = %q, want %q\n%s", got, want, log)
		}
		for _, w := range []string{
			"kiln: the spec generates more BuildRequires (%generate_buildrequires)",
			"kiln: %generate_buildrequires, pass 1: rpmbuild -br",
			"kiln: %generate_buildrequires asks for kiln-dist-devel >= 1.1\n",
			"kiln: %generate_buildrequires, pass 2: rpmbuild -br",
			"kiln: rpmbuild -br requires: kiln-dist-devel(api) = 1\n",
			"kiln: %generate_buildrequires asks for kiln-dist-devel(api) = 1, kiln-gadget-backend\n",
			"kiln: %generate_buildrequires, pass 3: rpmbuild -br",
			"kiln: %generate_buildrequires: every build dependency is installed",
		} {
			if !strings.Contains(log, w) {
				t.Errorf("log lacks %q:\n%s", w, log)
			}
		}
		if strings.Contains(log, "pass 4") {
			t.Errorf("rpmbuild -br ran a fourth time:\n%s", log)
		}
		if !slices.Contains(r.Record.Commands, "dnf --installroot=<buildroot> install 'kiln-dist-devel >= 1.1' # the worker host's dnf") {
			t.Errorf("record commands lack the generated install: %q", r.Record.Commands)
		}
		if v := installed(r, "kiln-dist-devel"); v != "1.1-1 noarch" {
			t.Errorf("record has kiln-dist-devel %q, want 1.1-1 noarch", v)
		}
		if v := installed(r, "kiln-gadget-backend"); v != "1.0-1 noarch" {
			t.Errorf("record has kiln-gadget-backend %q, want 1.0-1 noarch", v)
		}
		// The source package is rpmbuild -bs's: what the spec says, not
		// what the generator found in this buildroot.
		if out, err := exec.Command("rpm", "-qp", "--requires", filepath.Join(dir, outDir, want[1])).Output(); err != nil || !strings.Contains(string(out), "rpmlib(DynamicBuildRequires)") || strings.Contains(string(out), "kiln-dist-devel") {
			t.Errorf("source package requires %q (%v), want rpmlib(DynamicBuildRequires) and no generated ones", out, err)
		}
		cmd := exec.Command("sh", "-c", "rpm2cpio "+filepath.Join(dir, outDir, want[0])+" | cpio -i --quiet --to-stdout ./usr/share/kiln-gadget/gadget.txt")
		if out, err := cmd.Output(); err != nil || string(out) != "hello, gadget\nbuilt with kiln-dist-devel 1.1 and kiln-gadget-backend 1.0\n" {
			t.Errorf("gadget.txt = %q (%v): the generated BuildRequires were not installed", out, err)
		}
	})
	t.Run("generated BuildRequires nothing provides", func(t *testing.T) {
		p := pb
		p.Package = "python-kiln-gadget"
		p.Sources = repoOf("kiln-gadget-missing", "kiln-gadget-rpm", "python-kiln-gadget.spec", func(s string) string {
			return strings.Replace(s, "%bcond_with missing_generator_dep", "%bcond_without missing_generator_dep", 1)
		})
		r, log, _ := runBuild(t, b, p)
		if r.ExitCode != 1 || !strings.Contains(r.Reason, "kiln-generated-tool-nobody-has") || !strings.Contains(r.Reason, "%generate_buildrequires") {
			t.Errorf("exit %d, reason %q; want 1 naming kiln-generated-tool-nobody-has from %%generate_buildrequires\n%s", r.ExitCode, r.Reason, log)
		}
	})
	t.Run("generator fails", func(t *testing.T) {
		p := pb
		p.Package = "python-kiln-gadget"
		p.Sources = repoOf("kiln-gadget-broken", "kiln-gadget-rpm", "python-kiln-gadget.spec", func(s string) string {
			return strings.Replace(s, "%generate_buildrequires\n", "%generate_buildrequires\nexit 3\n", 1)
		})
		r, log, _ := runBuild(t, b, p)
		if r.ExitCode != 1 || !strings.Contains(r.Reason, "%generate_buildrequires failed: error: Bad exit status") {
			t.Errorf("exit %d, reason %q; want 1 with rpm's message\n%s", r.ExitCode, r.Reason, log)
		}
	})
	t.Run("spec does not parse", func(t *testing.T) {
		p := pb
		p.Sources = repo("kiln-widget-bad", func(s string) string {
			return strings.Replace(s, "%endif\n\nName:", "\nName:", 1)
		})
		r, log, _ := runBuild(t, b, p)
		if r.ExitCode != 1 || !strings.Contains(r.Reason, "the target's rpm cannot evaluate the spec: error:") || !strings.Contains(r.Reason, "%if") {
			t.Errorf("exit %d, reason %q; want 1 with rpm's own message about the unclosed %%if\n%s", r.ExitCode, r.Reason, log)
		}
	})
	// The bootstrap dnf reaches an https repository through the proxy in
	// the open: the package is captured with its https URL, no tunnel.
	t.Run("https release repository", func(t *testing.T) {
		sb, err := br.OpenSandbox(ctx, target, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close(ctx)
		var log strings.Builder
		res, err := sb.BootstrapInstall(ctx, executor.BootstrapInstall{Packages: []string{"kiln-gadget-backend"},
			Repos: []executor.RPMRepo{{Name: "kiln-release-https", BaseURL: front.URL + "/", KeyFile: d.KeyFile}}}, &log)
		if err != nil || res.Failed() {
			t.Fatalf("bootstrap install from %s: %+v %v\n%s", front.URL, res, err, log.String())
		}
		plain := "http://" + strings.TrimPrefix(front.URL, "https://") + "/"
		if !strings.Contains(log.String(), "is fetched through the proxy as "+plain) || strings.Contains(log.String(), "as tunnels") {
			t.Errorf("the https repository was not fetched in the open:\n%s", log.String())
		}
		if !slices.ContainsFunc(res.Packages, func(f executor.PackageFile) bool {
			return f.Name == "kiln-gadget-backend-1.0-1.noarch.rpm" && strings.HasPrefix(f.URL, front.URL+"/")
		}) {
			t.Errorf("kiln-gadget-backend not captured from %s: %+v\n%s", front.URL, res.Packages, log.String())
		}
	})
}

// gadgetBackendRepoDir makes a release repository holding
// kiln-gadget-backend 1.0, which nothing else provides, its package and
// repomd.xml signed with d's key, and returns its directory.
func gadgetBackendRepoDir(t *testing.T, d *rpmdisttest.Dist) string {
	t.Helper()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	spec := filepath.Join(dir, "kiln-gadget-backend.spec")
	err := os.WriteFile(spec, []byte(`Name: kiln-gadget-backend
Version: 1.0
Release: 1
Summary: The backend of kiln-gadget, only in a release repository
License: MIT
BuildArch: noarch
%description
The backend of kiln-gadget.
%install
mkdir -p %{buildroot}/usr/share/kiln-gadget-backend
echo 'kiln-gadget-backend 1.0' > %{buildroot}/usr/share/kiln-gadget-backend/name
%files
/usr/share/kiln-gadget-backend
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, out)
		}
	}
	run("rpmbuild", "-bb", "--quiet", "--define", "_topdir "+filepath.Join(dir, "top"), "--define", "_rpmdir "+repo,
		"--define", "_rpmfilename %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm", spec)
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Fatal(err)
	}
	run("rpmsign", "--addsign", "--define", "__gpg "+gpg, "--define", "_gpg_name dist@kiln.invalid", "--define", "_gpg_path "+d.GnuPG,
		filepath.Join(repo, "kiln-gadget-backend-1.0-1.noarch.rpm"))
	run("createrepo_c", "--quiet", repo)
	run(gpg, "--batch", "--quiet", "--homedir", d.GnuPG, "--armor", "--detach-sign", filepath.Join(repo, "repodata", "repomd.xml"))
	return repo
}

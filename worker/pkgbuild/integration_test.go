package pkgbuild

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// The integration tests build the testdata packages in real containerd
// buildroots (worker/buildroot), from git served on loopback. They need
// root and the project's containerd, and skip with the reason otherwise.

// runBuild runs one build and returns the result, the log and the
// artifacts' names.
func runBuild(t *testing.T, b *Builder, pb executor.PackageBuild) (executor.Result, string, string) {
	t.Helper()
	job := newJob(t, pb)
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	if testing.Verbose() {
		t.Logf("build log:\n%s", log.String())
	}
	return res, log.String(), job.WorkDir
}

func TestIntegrationDeb(t *testing.T) {
	br, target := buildroottest.New(t)
	srv := newGitServer(t)
	b := New(testConfig(t), br, buildroottest.Logger(t))
	src := func(name string) []executor.Source {
		c := srv.repo(t, "packages/"+name, name, nil)
		return []executor.Source{{URL: srv.url("packages/" + name), Commit: c, Role: "combined"}}
	}
	codeC := srv.repo(t, "openstack/hello-split", "hello-split-code", nil)
	pkgC := srv.repo(t, "openstack-build/hello-split", "hello-split-packaging", nil)

	applied := func(name string, withPC bool) []executor.Source {
		c := srv.repo(t, "packages/"+name, "hello-quilt", func(dir string) { applyPatches(t, dir, withPC) })
		return []executor.Source{{URL: srv.url("packages/" + name), Commit: c}}
	}
	quiltWant := []string{"hello-quilt_2.0-1~mos9.0+1.debian.tar.xz", "hello-quilt_2.0-1~mos9.0+1.dsc", "hello-quilt_2.0-1~mos9.0+1_all.deb", "hello-quilt_2.0-1~mos9.0+1_amd64.buildinfo", "hello-quilt_2.0-1~mos9.0+1_amd64.changes", "hello-quilt_2.0.orig.tar.gz"}

	tests := []struct {
		name    string
		pkg     string
		sources []executor.Source
		suffix  string
		want    []string
		// inLog must appear in the build log.
		inLog []string
	}{
		{"native", "hello-native", src("hello-native"), "~mos9.0+1",
			[]string{"hello-native_1.2~mos9.0+1.dsc", "hello-native_1.2~mos9.0+1.tar.xz", "hello-native_1.2~mos9.0+1_all.deb", "hello-native_1.2~mos9.0+1_amd64.buildinfo", "hello-native_1.2~mos9.0+1_amd64.changes"},
			[]string{"build dependencies already satisfied", "layout: one repository, format 3.0 (native)"}},
		{"quilt", "hello-quilt", src("hello-quilt"), "~mos9.0+1",
			[]string{"hello-quilt_2.0-1~mos9.0+1.debian.tar.xz", "hello-quilt_2.0-1~mos9.0+1.dsc", "hello-quilt_2.0-1~mos9.0+1_all.deb", "hello-quilt_2.0-1~mos9.0+1_amd64.buildinfo", "hello-quilt_2.0-1~mos9.0+1_amd64.changes", "hello-quilt_2.0.orig.tar.gz"},
			[]string{"applying greeting.patch", "layout: one repository, format 3.0 (quilt), patches: unapplied", "kiln: the source package unpacks"}},
		{"quilt, patches applied with .pc", "hello-quilt", applied("hello-quilt-pc", true), "~mos9.0+1", quiltWant,
			[]string{"patches: applied with .pc/ (1 reverted for the upstream tarball)", "kiln: the source package unpacks"}},
		{"quilt, patches applied without .pc", "hello-quilt", applied("hello-quilt-dgit", false), "~mos9.0+1", quiltWant,
			[]string{"patches: applied without .pc/ (1 reverted for the upstream tarball)", "kiln: the source package unpacks"}},
		{"python3:any build dependency", "hello-python", src("hello-python"), "",
			[]string{"hello-python_1.0.dsc", "hello-python_1.0.tar.xz", "hello-python_1.0_all.deb", "hello-python_1.0_amd64.buildinfo", "hello-python_1.0_amd64.changes"},
			[]string{"apt-get build-dep", "python3"}},
		{"udeb", "hello-udeb", src("hello-udeb"), "",
			[]string{"hello-udeb-installer_1.0_all.udeb", "hello-udeb_1.0.dsc", "hello-udeb_1.0.tar.xz", "hello-udeb_1.0_all.deb", "hello-udeb_1.0_amd64.buildinfo", "hello-udeb_1.0_amd64.changes"},
			nil},
		{"two repositories", "hello-split", []executor.Source{
			{URL: srv.url("openstack/hello-split"), Commit: codeC, Role: "code"},
			{URL: srv.url("openstack-build/hello-split"), Commit: pkgC, Role: "packaging"}}, "~mos9.0+2",
			[]string{"hello-split_3.0-1~mos9.0+2.debian.tar.xz", "hello-split_3.0-1~mos9.0+2.dsc", "hello-split_3.0-1~mos9.0+2_all.deb", "hello-split_3.0-1~mos9.0+2_amd64.buildinfo", "hello-split_3.0-1~mos9.0+2_amd64.changes", "hello-split_3.0.orig.tar.gz"},
			[]string{"layout: two repositories (code + packaging), format 3.0 (quilt), patches: none", "kiln: the source package unpacks"}},
		// The roles, as the #packaging and #code suffixes give them, not
		// the order, say which is which.
		{"two repositories, packaging first", "hello-split", []executor.Source{
			{URL: srv.url("openstack-build/hello-split"), Commit: pkgC, Role: "packaging"},
			{URL: srv.url("openstack/hello-split"), Commit: codeC, Role: "code"}}, "~mos9.0+2",
			[]string{"hello-split_3.0-1~mos9.0+2.debian.tar.xz", "hello-split_3.0-1~mos9.0+2.dsc", "hello-split_3.0-1~mos9.0+2_all.deb", "hello-split_3.0-1~mos9.0+2_amd64.buildinfo", "hello-split_3.0-1~mos9.0+2_amd64.changes", "hello-split_3.0.orig.tar.gz"},
			[]string{"layout: two repositories (code + packaging)", "kiln: the source package unpacks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, log, workDir := runBuild(t, b, executor.PackageBuild{Package: tt.pkg, Target: target, Release: "mos-9.0", Revision: 1, Sources: tt.sources, VersionSuffix: tt.suffix})
			if res.Failed() {
				t.Fatalf("build failed: %s\n%s", res.Reason, log)
			}
			if got := outFiles(t, workDir); !slices.Equal(got, tt.want) {
				t.Errorf("artifacts = %q, want %q\n%s", got, tt.want, log)
			}
			for _, s := range tt.inLog {
				if !strings.Contains(log, s) {
					t.Errorf("log lacks %q:\n%s", s, log)
				}
			}
			rec := res.Record
			if !strings.HasPrefix(rec.ChrootDigest, "sha256:") {
				t.Errorf("chroot digest = %q", rec.ChrootDigest)
			}
			if !slices.ContainsFunc(rec.Installed, func(p executor.Package) bool { return p.Name == "dpkg-dev" && p.Version != "" }) {
				t.Errorf("installed packages lack dpkg-dev: %d listed", len(rec.Installed))
			}
			if tt.pkg == "hello-python" && !slices.ContainsFunc(rec.Installed, func(p executor.Package) bool { return p.Name == "python3" }) {
				t.Errorf("python3 not recorded as installed")
			}
			// The build ran as the build user, not root.
			if strings.Contains(log, "dpkg-buildpackage: warning: using a gain-root-command while being root") {
				t.Errorf("package built as root:\n%s", log)
			}
		})
	}

	t.Run("fails in the middle", func(t *testing.T) {
		res, log, _ := runBuild(t, b, executor.PackageBuild{Package: "hello-fail", Target: target, Sources: src("hello-fail")})
		if res.ExitCode == 0 || !strings.Contains(res.Reason, "build failed") {
			t.Errorf("result = %+v, want a failed build", res)
		}
		for _, s := range []string{"halfway through the build", "compile error", "exit 3"} {
			if !strings.Contains(log, s) {
				t.Errorf("log lacks %q:\n%s", s, log)
			}
		}
	})

	t.Run("silent build stopped by the idle limit", func(t *testing.T) {
		c := srv.repo(t, "packages/hello-silent", "hello-native", func(dir string) {
			rules := filepath.Join(dir, "debian/rules")
			data, _ := os.ReadFile(rules)
			os.WriteFile(rules, []byte(strings.Replace(string(data), "binary binary-indep: build\n", "binary binary-indep: build\n\tsleep 120\n", 1)), 0o755)
		})
		cfg := testConfig(t)
		cfg.IdleLimit = 8 * time.Second
		ib := New(cfg, br, buildroottest.Logger(t))
		start := time.Now()
		res, log, _ := runBuild(t, ib, executor.PackageBuild{Package: "hello-native", Target: target,
			Sources: []executor.Source{{URL: srv.url("packages/hello-silent"), Commit: c}}})
		if !res.Failed() || !strings.Contains(res.Reason, "no output for 8s") {
			t.Errorf("result = %+v\n%s", res, log)
		}
		if d := time.Since(start); d > 90*time.Second {
			t.Errorf("stopped after %s", d)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		outside := t.TempDir()
		noPkg := srv.repo(t, "packages/no-packaging", "hello-split-code", nil)
		escape := srv.repo(t, "packages/escape", "hello-native", func(dir string) {
			os.Symlink("../../../../"+outside, filepath.Join(dir, "escape"))
		})
		missing := strings.Repeat("0f", 20)
		tests := []struct {
			name string
			src  executor.Source
			want string
		}{
			{"missing commit", executor.Source{URL: srv.url("packages/hello-native"), Commit: missing}, "commit " + missing + " not found"},
			{"no debian nor spec", executor.Source{URL: srv.url("packages/no-packaging"), Commit: noPkg}, "no packaging found"},
			{"symlink escaping", executor.Source{URL: srv.url("packages/escape"), Commit: escape}, `symlink "escape" points outside the source tree`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, log, _ := runBuild(t, b, executor.PackageBuild{Target: target, Sources: []executor.Source{tt.src}})
				if !res.Failed() || !strings.Contains(res.Reason, tt.want) {
					t.Errorf("result = %+v, want a failure naming %q\n%s", res, tt.want, log)
				}
				if strings.Contains(log, "open buildroot") {
					t.Errorf("a buildroot was opened for bad input:\n%s", log)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 0 {
					t.Errorf("written outside the work dir: %v", entries)
				}
			})
		}
	})

	t.Run("build dependency from the release repository", func(t *testing.T) {
		repo := localAptRepo(t, "kiln-test-dep")
		cfg := testConfig(t)
		cfg.Repositories = []Repository{{Release: "mos-9.0", Apt: "deb [trusted=yes] file://" + repo + " ./"}}
		rb := New(cfg, br, buildroottest.Logger(t))
		res, log, workDir := runBuild(t, rb, executor.PackageBuild{Package: "hello-withdep", Target: target, Release: "mos-9.0", Sources: src("hello-withdep")})
		if res.Failed() {
			t.Fatalf("build failed: %s\n%s", res.Reason, log)
		}
		if !strings.Contains(log, "building hello-withdep against: kiln-test-dep 1.0 from the release repository") {
			t.Errorf("the dependency from the release repository was not used:\n%s", log)
		}
		if !slices.Contains(res.Record.Installed, executor.Package{Name: "kiln-test-dep", Version: "1.0", Architecture: "all"}) {
			t.Errorf("kiln-test-dep 1.0 not recorded as installed")
		}
		if _, err := os.Stat(filepath.Join(workDir, outDir, "hello-withdep_1.0_all.deb")); err != nil {
			t.Error(err)
		}
		// Another release does not see that repository.
		res, log, _ = runBuild(t, rb, executor.PackageBuild{Package: "hello-withdep", Target: target, Release: "other-1.0", Sources: src("hello-withdep")})
		if !res.Failed() || !strings.Contains(res.Reason, "build dependencies failed") {
			t.Errorf("build for another release: %+v\n%s", res, log)
		}
	})

	t.Run("reproducible", func(t *testing.T) {
		sources := src("hello-native")
		pb := executor.PackageBuild{Package: "hello-native", Target: target, Release: "mos-9.0", Revision: 4, VersionSuffix: "~mos9.0+4", Sources: sources}
		first, log1, dir1 := runBuild(t, b, pb)
		if first.Failed() {
			t.Fatalf("first build: %s\n%s", first.Reason, log1)
		}
		// The rebuild installs exactly what the first build's record lists.
		pb.Pinned = first.Record.Installed
		second, log2, dir2 := runBuild(t, b, pb)
		if second.Failed() {
			t.Fatalf("rebuild from the record: %s\n%s", second.Reason, log2)
		}
		if !strings.Contains(log2, "installing pinned build dependencies") {
			t.Errorf("rebuild did not install the pinned versions:\n%s", log2)
		}
		if !slices.Equal(first.Record.Installed, second.Record.Installed) {
			t.Errorf("rebuild installed other versions")
		}
		for _, name := range []string{"hello-native_1.2~mos9.0+4_all.deb", "hello-native_1.2~mos9.0+4.dsc", "hello-native_1.2~mos9.0+4.tar.xz"} {
			if !sameFile(t, filepath.Join(dir1, outDir, name), filepath.Join(dir2, outDir, name)) {
				t.Errorf("%s differs between two builds of the same source", name)
			}
		}
	})

	t.Run("unreproducible differs", func(t *testing.T) {
		pb := executor.PackageBuild{Package: "hello-unrepro", Target: target, Sources: src("hello-unrepro")}
		first, log1, dir1 := runBuild(t, b, pb)
		second, log2, dir2 := runBuild(t, b, pb)
		if first.Failed() || second.Failed() {
			t.Fatalf("builds failed: %s / %s\n%s\n%s", first.Reason, second.Reason, log1, log2)
		}
		name := "hello-unrepro_1.0_all.deb"
		if sameFile(t, filepath.Join(dir1, outDir, name), filepath.Join(dir2, outDir, name)) {
			t.Errorf("%s is identical in two builds although it embeds the build time", name)
		}
	})
}

func TestIntegrationRPM(t *testing.T) {
	br, target := buildroottest.NewRPM(t)
	srv := newGitServer(t)
	b := New(testConfig(t), br, buildroottest.Logger(t))
	c := srv.repo(t, "packages/centos7/hello-rpm", "hello-rpm", nil)
	pb := executor.PackageBuild{Package: "hello-rpm", Target: target, Release: "mos-9.0", Revision: 2, VersionSuffix: ".mos9.0.2",
		Sources: []executor.Source{{URL: srv.url("packages/centos7/hello-rpm"), Commit: c}}}
	res, log, workDir := runBuild(t, b, pb)
	if res.Failed() {
		t.Fatalf("build failed: %s\n%s", res.Reason, log)
	}
	want := []string{"hello-rpm-1.0-1.mos9.0.2.noarch.rpm", "hello-rpm-1.0-1.mos9.0.2.src.rpm"}
	if got := outFiles(t, workDir); !slices.Equal(got, want) {
		t.Errorf("artifacts = %q, want %q\n%s", got, want, log)
	}
	if res.Record.Version != "1.0-1.mos9.0.2" {
		t.Errorf("version = %q", res.Record.Version)
	}
	if !strings.Contains(log, "no dnf: BuildRequires are not installed") {
		t.Errorf("log does not say the BuildRequires were not installed:\n%s", log)
	}
	if len(res.Record.Installed) == 0 {
		t.Error("no installed packages recorded")
	}
	// Rebuilt from the record, the rpms are the same bytes.
	pb.Pinned = res.Record.Installed
	again, log2, workDir2 := runBuild(t, b, pb)
	if again.Failed() {
		t.Fatalf("rebuild from the record failed: %s\n%s", again.Reason, log2)
	}
	if !strings.Contains(log2, "installing pinned packages with apt") {
		t.Errorf("rebuild did not install the pinned versions:\n%s", log2)
	}
	for _, name := range want {
		if !sameFile(t, filepath.Join(workDir, outDir, name), filepath.Join(workDir2, outDir, name)) {
			t.Errorf("%s differs between two builds of the same source", name)
		}
	}
	if rpmTool, err := exec.LookPath("rpm"); err == nil {
		out, err := exec.Command(rpmTool, "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\n", filepath.Join(workDir, outDir, want[0])).Output()
		if err != nil || strings.TrimSpace(string(out)) != "hello-rpm 1.0-1.mos9.0.2" {
			t.Errorf("rpm -qp: %q, %v", out, err)
		}
	}
}

// localAptRepo makes a flat apt repository holding testdata/<pkg> built
// with dpkg-deb, as a release repository on a single machine.
func localAptRepo(t *testing.T, pkg string) string {
	t.Helper()
	dir := t.TempDir()
	for _, argv := range [][]string{
		{"dpkg-deb", "--root-owner-group", "--build", filepath.Join("testdata", pkg), filepath.Join(dir, pkg+"_1.0_all.deb")},
		{"sh", "-c", "cd " + dir + " && dpkg-scanpackages --multiversion . > Packages"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	return dir
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(da, db)
}

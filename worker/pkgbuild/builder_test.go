package pkgbuild

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/executor"
)

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.CacheDir = filepath.Join(t.TempDir(), "git")
	cfg.GitTimeout = time.Minute
	return cfg
}

func newJob(t testing.TB, pb executor.PackageBuild) executor.Job {
	if pb.Target == "" {
		pb.Target = "bookworm/amd64"
	}
	if pb.Release == "" {
		pb.Release = "mos-9.0"
	}
	return executor.Job{ID: "job-" + strings.ReplaceAll(t.Name(), "/", "-"), WorkDir: t.TempDir(), Build: &pb}
}

func outFiles(t *testing.T, workDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(workDir, outDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestBuildDebOnHost runs the whole pipeline with the source package and
// the build on the host (phase 1 faked), for every source layout.
func TestBuildDebOnHost(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	srv := newGitServer(t)
	nativeC := srv.repo(t, "packages/bookworm/hello-native", "hello-native", nil)
	quiltC := srv.repo(t, "packages/bookworm/hello-quilt", "hello-quilt", nil)
	udebC := srv.repo(t, "packages/bookworm/hello-udeb", "hello-udeb", nil)
	codeC := srv.repo(t, "openstack/hello-split", "hello-split-code", nil)
	pkgC := srv.repo(t, "openstack-build/hello-split", "hello-split-packaging", nil)
	// Packaging under the distribution's directory, as some packaging
	// repositories keep it.
	distC := srv.repo(t, "openstack-build/hello-split-dist", "", func(dir string) {
		copyDir(t, "testdata/hello-split-packaging", filepath.Join(dir, "bookworm"))
	})

	tests := []struct {
		name    string
		pkg     string
		target  string
		sources []executor.Source
		suffix  string
		version string
		want    []string
	}{
		{"native", "hello-native", "", []executor.Source{{URL: srv.url("packages/bookworm/hello-native"), Commit: nativeC, Role: "combined"}}, "~mos9.0+1", "1.2~mos9.0+1",
			[]string{"hello-native_1.2~mos9.0+1.dsc", "hello-native_1.2~mos9.0+1.tar.xz", "hello-native_1.2~mos9.0+1_all.deb", "hello-native_1.2~mos9.0+1_amd64.buildinfo", "hello-native_1.2~mos9.0+1_amd64.changes"}},
		{"quilt", "hello-quilt", "", []executor.Source{{URL: srv.url("packages/bookworm/hello-quilt"), Commit: quiltC}}, "~mos9.0+3", "2.0-1~mos9.0+3",
			[]string{"hello-quilt_2.0-1~mos9.0+3.debian.tar.xz", "hello-quilt_2.0-1~mos9.0+3.dsc", "hello-quilt_2.0-1~mos9.0+3_all.deb", "hello-quilt_2.0-1~mos9.0+3_amd64.buildinfo", "hello-quilt_2.0-1~mos9.0+3_amd64.changes", "hello-quilt_2.0.orig.tar.gz"}},
		{"udeb", "hello-udeb", "", []executor.Source{{URL: srv.url("packages/bookworm/hello-udeb"), Commit: udebC, Role: "combined"}}, "", "1.0",
			[]string{"hello-udeb-installer_1.0_all.udeb", "hello-udeb_1.0.dsc", "hello-udeb_1.0.tar.xz", "hello-udeb_1.0_all.deb", "hello-udeb_1.0_amd64.buildinfo", "hello-udeb_1.0_amd64.changes"}},
		{"two repositories", "hello-split", "", []executor.Source{
			{URL: srv.url("openstack/hello-split"), Commit: codeC, Role: "code"},
			{URL: srv.url("openstack-build/hello-split"), Commit: pkgC, Role: "packaging"}}, "~mos9.0+1", "3.0-1~mos9.0+1",
			[]string{"hello-split_3.0-1~mos9.0+1.debian.tar.xz", "hello-split_3.0-1~mos9.0+1.dsc", "hello-split_3.0-1~mos9.0+1_all.deb", "hello-split_3.0-1~mos9.0+1_amd64.buildinfo", "hello-split_3.0-1~mos9.0+1_amd64.changes", "hello-split_3.0.orig.tar.gz"}},
		{"packaging under the distribution", "hello-split", "bookworm-amd64", []executor.Source{
			{URL: srv.url("openstack/hello-split"), Commit: codeC, Role: "code"},
			{URL: srv.url("openstack-build/hello-split-dist"), Commit: distC, Role: "packaging"}}, "", "3.0-1",
			[]string{"hello-split_3.0-1.debian.tar.xz", "hello-split_3.0-1.dsc", "hello-split_3.0-1_all.deb", "hello-split_3.0-1_amd64.buildinfo", "hello-split_3.0-1_amd64.changes", "hello-split_3.0.orig.tar.gz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opener := &fakeOpener{handle: skipRootSteps}
			b := New(testConfig(t), opener, hclog.NewNullLogger())
			job := newJob(t, executor.PackageBuild{Package: tt.pkg, Target: tt.target, Sources: tt.sources, VersionSuffix: tt.suffix, Revision: 1})
			var log bytes.Buffer
			res, err := b.Run(context.Background(), job, &log)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, log.String())
			}
			if res.Failed() {
				t.Fatalf("build failed: %s\n%s", res.Reason, log.String())
			}
			if got := outFiles(t, job.WorkDir); !slices.Equal(got, tt.want) {
				t.Errorf("artifacts = %q, want %q\n%s", got, tt.want, log.String())
			}
			rec := res.Record
			if rec.Version != tt.version {
				t.Errorf("version = %q, want %q", rec.Version, tt.version)
			}
			if rec.ChrootDigest != "sha256:fakechroot" {
				t.Errorf("chroot digest = %q", rec.ChrootDigest)
			}
			if want := []executor.Package{{Name: "libc6", Version: "2.36-9", Architecture: "amd64"}, {Name: "make", Version: "4.3-4.1", Architecture: "amd64"}}; !slices.Equal(rec.Installed, want) {
				t.Errorf("installed = %v, want %v", rec.Installed, want)
			}
			if !slices.Equal(rec.Sources, tt.sources) {
				t.Errorf("sources = %v, want %v", rec.Sources, tt.sources)
			}
			if len(rec.Commands) != 4 || !strings.HasPrefix(rec.Commands[0], "dpkg-source -b") || !strings.Contains(rec.Commands[1], "dpkg-query -W") || !strings.Contains(rec.Commands[2], "exec dpkg-buildpackage -us -uc") || !strings.Contains(rec.Commands[3], "dpkg-source -x") {
				t.Errorf("commands = %q", rec.Commands)
			}
			for _, phase := range []string{"=== fetch sources", "=== source package", "=== phase 1: build dependencies", "=== phase 2: build", "=== check source package", "kiln: the source package unpacks", "=== collect artifacts"} {
				if !strings.Contains(log.String(), phase) {
					t.Errorf("log lacks %q", phase)
				}
			}
			sb := opener.opened[0]
			if !sb.closed {
				t.Error("sandbox not closed")
			}
			if len(sb.steps) != 4 || !sb.steps[1].Root || !sb.steps[1].Network || sb.steps[2].Root || sb.steps[2].Network || sb.steps[0].Root || sb.steps[0].Network || sb.steps[3].Root || sb.steps[3].Network {
				t.Errorf("steps run with the wrong privileges: %+v", sb.steps)
			}
		})
	}
}

func TestDependencyStepAllowsReleaseRepositories(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	srv := newGitServer(t)
	c := srv.repo(t, "packages/bookworm/hello-native", "hello-native", nil)
	cfg := testConfig(t)
	cfg.Repositories = []Repository{
		{Release: "mos-9.0", Apt: "deb [trusted=yes] http://127.0.0.1:8080/mos-9.0 bookworm main"},
		{Release: "mos-9.0", Apt: "deb [trusted=yes] file://" + t.TempDir() + " ./"},
		{Release: "other", Apt: "deb [trusted=yes] http://other.example.org/other bookworm main"},
	}
	opener := &fakeOpener{handle: skipRootSteps}
	b := New(cfg, opener, hclog.NewNullLogger())
	job := newJob(t, executor.PackageBuild{Package: "hello-native", Sources: []executor.Source{{URL: srv.url("packages/bookworm/hello-native"), Commit: c, Role: "combined"}}})
	var log bytes.Buffer
	if res, err := b.Run(context.Background(), job, &log); err != nil || res.Failed() {
		t.Fatalf("Run: %+v, %v\n%s", res, err, log.String())
	}
	steps := opener.opened[0].steps
	if len(steps) != 4 || !slices.Equal(steps[1].AllowHosts, []string{"http://127.0.0.1:8080"}) || steps[0].AllowHosts != nil || steps[2].AllowHosts != nil || steps[3].AllowHosts != nil {
		t.Errorf("allowed hosts of the steps: %q, %q, %q; want only phase 1 to reach 127.0.0.1:8080", steps[0].AllowHosts, steps[1].AllowHosts, steps[2].AllowHosts)
	}
}

func TestQuiltPatchAppliedAndChangelogEntry(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	srv := newGitServer(t)
	c := srv.repo(t, "hello-quilt", "hello-quilt", nil)
	b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-quilt", Release: "mos-9.0", Revision: 7, VersionSuffix: "~mos9.0+7",
		Sources: []executor.Source{{URL: srv.url("hello-quilt"), Commit: c}}})
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil || res.Failed() {
		t.Fatalf("Run: %v %+v\n%s", err, res, log.String())
	}
	tree := filepath.Join(job.WorkDir, srcDir, "hello-quilt-2.0")
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", filepath.Join(job.WorkDir, outDir, "hello-quilt_2.0-1~mos9.0+7_all.deb"), x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	hello, _ := os.ReadFile(filepath.Join(x, "usr/bin/hello-quilt"))
	if !strings.Contains(string(hello), "patched package") {
		t.Errorf("quilt patch not applied in the .deb: %s", hello)
	}
	cl, _ := os.ReadFile(filepath.Join(tree, "debian/changelog"))
	want := "hello-quilt (2.0-1~mos9.0+7) unstable; urgency=medium\n\n  * Kiln build for release mos-9.0, revision 7.\n\n -- Kiln Build Farm <kiln@localhost>  Mon, 02 Nov 2026 10:00:00 +0000\n\nhello-quilt (2.0-1) unstable"
	if !strings.HasPrefix(string(cl), want) {
		t.Errorf("changelog starts\n%s\nwant\n%s", cl, want)
	}
}

// applyPatches commits a quilt tree the way apt-get source and dgit leave
// it: debian/patches applied to the tree, with quilt's .pc/ or without.
func applyPatches(t *testing.T, dir string, withPC bool) {
	t.Helper()
	series, err := os.ReadFile(filepath.Join(dir, "debian/patches/series"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(series)) {
		cmd := exec.Command("patch", "-p1", "-i", filepath.Join("debian/patches", p))
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("patch %s: %v\n%s", p, err, out)
		}
		if withPC {
			os.MkdirAll(filepath.Join(dir, ".pc", p), 0o755)
			os.WriteFile(filepath.Join(dir, ".pc", "applied-patches"), []byte(p+"\n"), 0o644)
		}
	}
	if withPC {
		os.WriteFile(filepath.Join(dir, ".pc", ".quilt_patches"), []byte("debian/patches\n"), 0o644)
		os.WriteFile(filepath.Join(dir, ".pc", ".quilt_series"), []byte("series\n"), 0o644)
		os.WriteFile(filepath.Join(dir, ".pc", ".version"), []byte("2\n"), 0o644)
	}
}

// TestQuiltLayouts builds hello-quilt committed the ways Debian's tools
// leave a tree: the source package must unpack, its orig tarball must be
// the unpatched upstream, and the log must name the layout.
func TestQuiltLayouts(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	testenv.Tool(t, "patch")
	srv := newGitServer(t)
	tests := []struct {
		name, layout string
		edit         func(dir string)
	}{
		{"patches unapplied", "patches: unapplied", nil},
		{"patches applied with .pc", "patches: applied with .pc/ (1 reverted for the upstream tarball)", func(dir string) { applyPatches(t, dir, true) }},
		{"patches applied without .pc", "patches: applied without .pc/ (1 reverted for the upstream tarball)", func(dir string) { applyPatches(t, dir, false) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.ReplaceAll(tt.name, " ", "-")
			c := srv.repo(t, name, "hello-quilt", tt.edit)
			b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
			job := newJob(t, executor.PackageBuild{Package: "hello-quilt", Sources: []executor.Source{{URL: srv.url(name), Commit: c}}})
			var log bytes.Buffer
			res, err := b.Run(context.Background(), job, &log)
			if err != nil || res.Failed() {
				t.Fatalf("Run: %v %+v\n%s", err, res, log.String())
			}
			for _, want := range []string{"kiln: layout: one repository, format 3.0 (quilt), " + tt.layout, "kiln: the source package unpacks"} {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
			out, err := exec.Command("tar", "-xzOf", filepath.Join(job.WorkDir, outDir, "hello-quilt_2.0.orig.tar.gz"), "hello-quilt-2.0/hello").Output()
			if err != nil || !strings.Contains(string(out), "hello from upstream") {
				t.Errorf("orig tarball's hello is not upstream's: %v\n%s", err, out)
			}
			list, _ := exec.Command("tar", "-tzf", filepath.Join(job.WorkDir, outDir, "hello-quilt_2.0.orig.tar.gz")).Output()
			if strings.Contains(string(list), ".pc") || strings.Contains(string(list), "debian") {
				t.Errorf("orig tarball holds .pc or debian:\n%s", list)
			}
		})
	}
	t.Run("some patches applied, others not", func(t *testing.T) {
		c := srv.repo(t, "mixed", "hello-quilt", func(dir string) {
			applyPatches(t, dir, false)
			os.WriteFile(filepath.Join(dir, "debian/patches/series"), []byte("greeting.patch\nextra.patch\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "debian/patches/extra.patch"), []byte("--- a/README\n+++ b/README\n@@ -0,0 +1 @@\n+extra\n"), 0o644)
		})
		b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
		job := newJob(t, executor.PackageBuild{Package: "hello-quilt", Sources: []executor.Source{{URL: srv.url("mixed"), Commit: c}}})
		var log bytes.Buffer
		res, err := b.Run(context.Background(), job, &log)
		if err != nil {
			t.Fatal(err)
		}
		// extra.patch, the last, is not applied, greeting.patch, the
		// first, is: bad input naming both, before any build.
		want := "the tree holds some of debian/patches applied and others not: the first, greeting.patch, is applied, the last, extra.patch, is not"
		if !res.Failed() || !strings.Contains(res.Reason, want) || !strings.Contains(res.Reason, srv.url("mixed")) {
			t.Errorf("a tree with half its patches applied: reason %q, want %q\n%s", res.Reason, want, log.String())
		}
	})
}

// TestBrokenSourcePackageFailsTheBuild: a build whose source package does
// not unpack fails, with the tool's error as the reason. Here the build
// truncates its .src.rpm after rpmbuild -bs made it. (For deb, a tree
// committed with its patches applied once gave such a .dsc; TestQuiltLayouts
// checks that those unpack now.)
func TestBrokenSourcePackageFailsTheBuild(t *testing.T) {
	testenv.Tool(t, "rpmbuild")
	srv := newGitServer(t)
	c := srv.repo(t, "hello-rpm-damaged", "hello-rpm", func(dir string) {
		spec := filepath.Join(dir, "hello-rpm.spec")
		data, _ := os.ReadFile(spec)
		os.WriteFile(spec, []byte(strings.Replace(string(data), "%build\n", "%build\ntruncate -s 200 %{_topdir}/SRPMS/*.src.rpm\n", 1)), 0o644)
	})
	b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-rpm", Target: "centos7/x86_64", Sources: []executor.Source{{URL: srv.url("hello-rpm-damaged"), Commit: c}}})
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil {
		t.Fatalf("a broken source package must not be an infrastructure error: %v\n%s", err, log.String())
	}
	want := "the source package does not unpack: error: "
	if res.ExitCode != 1 || !strings.HasPrefix(res.Reason, want) || !strings.Contains(res.Reason, "hello-rpm-1.0-1.src.rpm") {
		t.Errorf("result = %+v, want exit 1 and reason %q...\n%s", res, want, log.String())
	}
	if !strings.Contains(log.String(), "=== check source package") || strings.Contains(log.String(), "=== collect artifacts") {
		t.Errorf("log:\n%s", log.String())
	}
}

// TestBuildProfiles: --profiles nocheck reaches the package (its test
// suite is skipped), options are passed as DEB_BUILD_OPTIONS with a
// default parallel=, and bad names are refused.
func TestBuildProfiles(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	srv := newGitServer(t)
	c := srv.repo(t, "hello-check", "hello-check", nil)
	run := func(t *testing.T, profiles, options []string) (executor.Result, string) {
		b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
		job := newJob(t, executor.PackageBuild{Package: "hello-check", Profiles: profiles, Options: options, Sources: []executor.Source{{URL: srv.url("hello-check"), Commit: c}}})
		var log bytes.Buffer
		res, err := b.Run(context.Background(), job, &log)
		if err != nil {
			t.Fatal(err)
		}
		return res, log.String()
	}
	t.Run("default", func(t *testing.T) {
		res, log := run(t, nil, nil)
		if res.Failed() || !strings.Contains(log, "kiln-test: running the test suite of hello-check") || !regexp.MustCompile(`kiln: DEB_BUILD_OPTIONS=parallel=[1-9][0-9]* DEB_BUILD_PROFILES=\n`).MatchString(log) {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("nocheck", func(t *testing.T) {
		res, log := run(t, []string{"nocheck"}, []string{"parallel=3", "nostrip"})
		if res.Failed() || strings.Contains(log, "running the test suite") || !strings.Contains(log, "kiln-test: test suite skipped (nocheck)") ||
			!strings.Contains(log, "kiln: DEB_BUILD_OPTIONS=parallel=3 nostrip nocheck DEB_BUILD_PROFILES=nocheck\n") {
			t.Errorf("result %+v, log:\n%s", res, log)
		}
	})
	t.Run("bad profile", func(t *testing.T) {
		res, _ := run(t, []string{"no check"}, nil)
		if !res.Failed() || !strings.Contains(res.Reason, `build profile "no check"`) {
			t.Errorf("result %+v", res)
		}
	})
}

func TestBuildFailureKeepsLog(t *testing.T) {
	testenv.Tool(t, "dpkg-buildpackage")
	srv := newGitServer(t)
	c := srv.repo(t, "hello-fail", "hello-fail", nil)
	b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-fail", Sources: []executor.Source{{URL: srv.url("hello-fail"), Commit: c}}})
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil {
		t.Fatalf("a package build failure must not be an infrastructure error: %v", err)
	}
	if res.ExitCode == 0 || !strings.Contains(res.Reason, "build failed") {
		t.Errorf("result = %+v, want a failed build", res)
	}
	for _, want := range []string{"halfway through the build", "compile error", "=== phase 2: build"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if res.Record == nil || len(res.Record.Installed) == 0 {
		t.Errorf("record of a failed build lost: %+v", res.Record)
	}
}

func TestBuildRPMOnHost(t *testing.T) {
	testenv.Tool(t, "rpmbuild")
	srv := newGitServer(t)
	c := srv.repo(t, "hello-rpm", "hello-rpm", nil)
	b := New(testConfig(t), &fakeOpener{handle: skipRootSteps}, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-rpm", Target: "centos7/x86_64", VersionSuffix: ".mos9.0.2",
		Sources: []executor.Source{{URL: srv.url("hello-rpm"), Commit: c}}})
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil || res.Failed() {
		t.Fatalf("Run: %v %+v\n%s", err, res, log.String())
	}
	want := []string{"hello-rpm-1.0-1.mos9.0.2.noarch.rpm", "hello-rpm-1.0-1.mos9.0.2.src.rpm"}
	if got := outFiles(t, job.WorkDir); !slices.Equal(got, want) {
		t.Errorf("artifacts = %q, want %q\n%s", got, want, log.String())
	}
	if res.Record.Version != "1.0-1.mos9.0.2" {
		t.Errorf("version = %q", res.Record.Version)
	}
}

// TestBadInput: each bad source is a failed Result naming the problem, the
// sandbox is never opened and nothing is written outside the work dir.
func TestBadInput(t *testing.T) {
	srv := newGitServer(t)
	outside := t.TempDir()
	good := srv.repo(t, "good", "hello-native", nil)
	noPackaging := srv.repo(t, "nopackaging", "hello-split-code", nil)
	absLink := srv.repo(t, "abslink", "hello-native", func(dir string) {
		os.Symlink("/etc/passwd", filepath.Join(dir, "passwd"))
	})
	relLink := srv.repo(t, "rellink", "hello-native", func(dir string) {
		os.Symlink("../../../../../"+outside, filepath.Join(dir, "escape"))
	})
	// A code repository whose debian is a symlink out of the tree: the
	// packaging's debian/ must not be written through it.
	debLink := srv.repo(t, "deblink", "hello-split-code", func(dir string) {
		os.Symlink(outside, filepath.Join(dir, "debian"))
	})
	pkgC := srv.repo(t, "packaging", "hello-split-packaging", nil)
	missing := strings.Repeat("ab", 20)

	tests := []struct {
		name    string
		sources []executor.Source
		pkg     string
		suffix  string
		want    string
	}{
		{"missing commit", []executor.Source{{URL: srv.url("good"), Commit: missing}}, "hello-native", "", "commit " + missing + " not found"},
		{"missing commit on a ref", []executor.Source{{URL: srv.url("good"), Commit: missing, Ref: "refs/heads/main"}}, "hello-native", "", "not found (fetched ref refs/heads/main)"},
		{"missing ref", []executor.Source{{URL: srv.url("good"), Commit: missing, Ref: "refs/heads/nope"}}, "hello-native", "", `ref "refs/heads/nope" does not exist`},
		{"short commit", []executor.Source{{URL: srv.url("good"), Commit: good[:12]}}, "hello-native", "", "not a full hexadecimal commit id"},
		{"option as ref", []executor.Source{{URL: srv.url("good"), Commit: good, Ref: "--upload-pack=touch /tmp/x"}}, "hello-native", "", "not a valid git ref name"},
		{"no debian nor spec", []executor.Source{{URL: srv.url("nopackaging"), Commit: noPackaging}}, "hello-split", "", "no packaging found"},
		{"absolute symlink", []executor.Source{{URL: srv.url("abslink"), Commit: absLink}}, "hello-native", "", `symlink "passwd" points outside the source tree`},
		{"relative symlink escaping", []executor.Source{{URL: srv.url("rellink"), Commit: relLink}}, "hello-native", "", `symlink "escape" points outside the source tree`},
		{"debian symlink in code", []executor.Source{{URL: srv.url("deblink"), Commit: debLink, Role: "code"}, {URL: srv.url("packaging"), Commit: pkgC, Role: "packaging"}}, "hello-split", "", `symlink "debian" points outside`},
		{"repositories the wrong way round", []executor.Source{{URL: srv.url("packaging"), Commit: pkgC, Role: "code"}, {URL: srv.url("nopackaging"), Commit: noPackaging, Role: "packaging"}}, "hello-split", "",
			"the repositories are the wrong way round: the packaging source " + srv.url("nopackaging") + "@" + noPackaging[:12] + " has no packaging (it holds README, hello), and the code source " + srv.url("packaging") + "@" + pkgC[:12] + " has debian/. " +
				"Give the code repository first and the packaging repository second, or mark them: --source " + srv.url("packaging") + "@" + pkgC[:12] + "#packaging --source " + srv.url("nopackaging") + "@" + noPackaging[:12] + "#code"},
		{"packaging in neither repository", []executor.Source{{URL: srv.url("nopackaging"), Commit: noPackaging, Role: "code"}, {URL: srv.url("nopackaging"), Commit: noPackaging, Role: "packaging"}}, "hello-split", "",
			"no packaging found: expected debian/ or a .spec file at the top or under bookworm/; add the packaging or check the source (it holds README, hello); the code source " + srv.url("nopackaging") + "@" + noPackaging[:12] + " holds README, hello"},
		{"wrong package", []executor.Source{{URL: srv.url("good"), Commit: good}}, "other", "", `names source package "hello-native", the build asked for "other"`},
		{"bad suffix", []executor.Source{{URL: srv.url("good"), Commit: good}}, "hello-native", "~mos 9", `version suffix "~mos 9"`},
		{"two code sources", []executor.Source{{URL: srv.url("good"), Commit: good, Role: "code"}, {URL: srv.url("good"), Commit: good, Role: "code"}}, "hello-native", "", "give one combined source or one code and one packaging source"},
		{"unknown role", []executor.Source{{URL: srv.url("good"), Commit: good, Role: "docs"}}, "hello-native", "", `role "docs"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opener := &fakeOpener{handle: skipRootSteps}
			b := New(testConfig(t), opener, nil)
			job := newJob(t, executor.PackageBuild{Package: tt.pkg, Sources: tt.sources, VersionSuffix: tt.suffix})
			var log bytes.Buffer
			res, err := b.Run(context.Background(), job, &log)
			if err != nil {
				t.Fatalf("bad input must be a failed result, not an error: %v", err)
			}
			if !res.Failed() || !strings.Contains(res.Reason, tt.want) {
				t.Errorf("reason = %q, want it to contain %q", res.Reason, tt.want)
			}
			if !strings.Contains(log.String(), "bad input: ") {
				t.Errorf("log does not tell the problem:\n%s", log.String())
			}
			if len(opener.opened) != 0 {
				t.Error("a sandbox was opened for bad input")
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("something was written outside the work dir: %v", entries)
			}
		})
	}
}

func TestInfrastructureErrors(t *testing.T) {
	srv := newGitServer(t)
	c := srv.repo(t, "good", "hello-native", nil)
	down := newGitServer(t)
	downURL := down.url("good")
	tests := []struct {
		name   string
		url    string
		opener *fakeOpener
		want   string
	}{
		{"remote unreachable", "git://127.0.0.1:1/good", &fakeOpener{}, "fetch git://127.0.0.1:1/good"},
		{"repository not served", downURL, &fakeOpener{}, "fetch " + downURL},
		{"sandbox fails to open", srv.url("good"), &fakeOpener{err: errors.New("containerd: connection refused")}, "open buildroot bookworm/amd64: containerd: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(testConfig(t), tt.opener, nil)
			job := newJob(t, executor.PackageBuild{Package: "hello-native", Sources: []executor.Source{{URL: tt.url, Commit: c}}})
			_, err := b.Run(context.Background(), job, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestGitProtocolsAreRestricted(t *testing.T) {
	srv := newGitServer(t)
	c := srv.repo(t, "good", "hello-native", nil)
	cfg := testConfig(t)
	cfg.GitProtocols = []string{"https"}
	b := New(cfg, &fakeOpener{}, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-native", Sources: []executor.Source{{URL: srv.url("good"), Commit: c}}})
	res, err := b.Run(context.Background(), job, io.Discard)
	if err != nil || !strings.Contains(res.Reason, "uses the git transport, which this worker does not allow") {
		t.Errorf("result %+v, error %v: want the git transport refused", res, err)
	}
	// git itself refuses it too.
	g := newGitCache(cfg.CacheDir, time.Minute, []string{"https"})
	err = g.git(context.Background(), t.TempDir(), nil, io.Discard, "ls-remote", srv.url("good"))
	if err == nil || !strings.Contains(err.Error(), "transport 'git' not allowed") {
		t.Errorf("git ls-remote error = %v, want the transport refused", err)
	}
}

func TestRunWithoutBuildIsUnsupported(t *testing.T) {
	b := New(testConfig(t), &fakeOpener{}, nil)
	_, err := b.Run(context.Background(), executor.Job{WorkDir: t.TempDir(), Command: []string{"true"}}, io.Discard)
	if !errors.Is(err, executor.ErrUnsupported) {
		t.Errorf("error = %v, want ErrUnsupported", err)
	}
}

func TestJobTimeoutIsAFailedResult(t *testing.T) {
	srv := newGitServer(t)
	c := srv.repo(t, "good", "hello-native", nil)
	opener := &fakeOpener{handle: skipRootSteps, hang: "dpkg-buildpackage"}
	b := New(testConfig(t), opener, nil)
	job := newJob(t, executor.PackageBuild{Package: "hello-native", Sources: []executor.Source{{URL: srv.url("good"), Commit: c}}})
	job.Timeout = 3 * time.Second
	var log bytes.Buffer
	res, err := b.Run(context.Background(), job, &log)
	if err != nil {
		t.Fatalf("a job over its time limit must be a failed result, not an error: %v", err)
	}
	if res.ExitCode == 0 || res.Reason != "time limit 3s reached" {
		t.Errorf("result = %+v, want time limit 3s reached", res)
	}
	if !strings.Contains(log.String(), "kiln: time limit 3s reached") {
		t.Errorf("log does not say why:\n%s", log.String())
	}
	if !opener.opened[0].closed {
		t.Error("sandbox left open")
	}

	// A worker shutting down (its context cancelled) is not the job's fault.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	job = newJob(t, executor.PackageBuild{Package: "hello-native", Sources: []executor.Source{{URL: srv.url("good"), Commit: c}}})
	if _, err := b.Run(ctx, job, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want the context's", err)
	}
}

func TestFetchUsesCache(t *testing.T) {
	srv := newGitServer(t)
	c := srv.repo(t, "repo", "hello-native", nil)
	cfg := testConfig(t)
	g := newGitCache(cfg.CacheDir, time.Minute, cfg.GitProtocols)
	ctx := context.Background()
	src := executor.Source{URL: srv.url("repo"), Commit: c, Ref: "refs/heads/main"}
	var log bytes.Buffer
	dir, err := g.Fetch(ctx, src, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !g.hasCommit(ctx, dir, c) {
		t.Fatal("commit not in cache after fetch")
	}
	// A second commit on the same repository goes into the same cache.
	c2 := srv.repo(t, "repo", "", func(dir string) { os.WriteFile(filepath.Join(dir, "NEWS"), []byte("news\n"), 0o644) })
	dir2, err := g.Fetch(ctx, executor.Source{URL: srv.url("repo"), Commit: c2}, &log)
	if err != nil || dir2 != dir {
		t.Fatalf("second fetch: %v (dir %s, first %s)", err, dir2, dir)
	}
	// Builds running at once share the cache safely.
	c3 := srv.repo(t, "repo", "", func(dir string) { os.WriteFile(filepath.Join(dir, "NEWS"), []byte("more news\n"), 0o644) })
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := g.Fetch(ctx, executor.Source{URL: srv.url("repo"), Commit: c3}, io.Discard)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent fetch: %v", err)
		}
	}
	log.Reset()
	if _, err := g.Fetch(ctx, src, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "already in the worker's cache") {
		t.Errorf("cached commit fetched again: %s", log.String())
	}
}

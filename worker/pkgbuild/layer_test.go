package pkgbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// The second build of a package on the same chroot starts phase 1 from
// the first one's build-dependency layer, and its record and base are
// those of the first, which installed everything itself.
func TestIntegrationLayerCacheKeepsRecord(t *testing.T) {
	cfg := buildroottest.Config(t)
	cfg.LayerCache = buildroot.LayerCacheConfig{Dir: filepath.Join(t.TempDir(), "layers"), MaxSize: "4G"}
	br, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	srv := newGitServer(t)
	commit := srv.repo(t, "packages/hello-python", "hello-python", nil)
	b := New(testConfig(t), br, buildroottest.Logger(t))
	build := func() (*executor.Record, string, []string) {
		t.Helper()
		res, log, workDir := runBuild(t, b, executor.PackageBuild{Package: "hello-python", Target: target, Release: "mos-9.0",
			Sources: []executor.Source{{URL: srv.url("packages/hello-python"), Commit: commit, Role: "combined"}}})
		if res.Failed() || res.Record == nil {
			t.Fatalf("build failed: %s\n%s", res.Reason, log)
		}
		entries, err := os.ReadDir(filepath.Join(workDir, baseDir))
		if err != nil {
			t.Fatal(err)
		}
		var base []string
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(workDir, baseDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			base = append(base, e.Name()+" "+hex.EncodeToString(sum[:]))
		}
		return res.Record, log, base
	}
	rec1, log1, base1 := build()
	if !strings.Contains(log1, "kiln: build-dependency layer ") || !strings.Contains(log1, " stored (") {
		t.Fatalf("first build stored no layer:\n%s", log1)
	}
	rec2, log2, base2 := build()
	if !strings.Contains(log2, "kiln: build-dependency layer cache hit ") {
		t.Fatalf("second build did not start from the layer:\n%s", log2)
	}
	if !slices.Equal(rec1.Installed, rec2.Installed) || !slices.Equal(rec1.Commands, rec2.Commands) || rec1.ChrootDigest != rec2.ChrootDigest {
		t.Errorf("records differ:\nfirst  %+v\nsecond %+v", rec1, rec2)
	}
	if !slices.ContainsFunc(rec2.Installed, func(p executor.Package) bool { return p.Name == "python3" }) {
		t.Errorf("python3 not installed from the layer: %+v", rec2.Installed)
	}
	if !slices.Equal(base1, base2) || len(base1) == 0 {
		t.Errorf("base differs:\nfirst  %v\nsecond %v", base1, base2)
	}
	for _, c := range rec2.Commands {
		if strings.Contains(c, "kiln-resolve") {
			t.Errorf("the record names the resolving step: %q", c)
		}
	}
}

func TestResolveScript(t *testing.T) {
	t.Parallel()
	out := "Reading package lists...\nThe following NEW packages will be installed:\n  gcc-12-multilib gcc-multilib \n" +
		"kiln: package cache: 3 repository indexes from the cache, 0 fetched and stored\n" +
		"The following packages will be REMOVED:\n  bar\n1 upgraded, 2 newly installed, 1 to remove and 0 not upgraded.\n" +
		"'http://deb.debian.org/debian/pool/main/z/zlib/zlib1g-dev_1.2.13.dfsg-1_amd64.deb' zlib1g-dev_1%3a1.2.13.dfsg-1_amd64.deb 916272 SHA256:ab\n"
	want := "  bar\n  gcc-12-multilib gcc-multilib\n" +
		"'http://deb.debian.org/debian/pool/main/z/zlib/zlib1g-dev_1.2.13.dfsg-1_amd64.deb' zlib1g-dev_1%3a1.2.13.dfsg-1_amd64.deb 916272 SHA256:ab\n" +
		"1 upgraded, 2 newly installed, 1 to remove and 0 not upgraded.\n" +
		"The following NEW packages will be installed:\nThe following packages will be REMOVED:"
	if got := aptResolution(out); got != want {
		t.Errorf("resolution:\n%s\nwant:\n%s", got, want)
	}
	s := debResolveScript(nil, nil, "h_1.0.dsc", []string{"nocheck"})
	for _, w := range []string{"if dpkg-checkbuilddeps -P nocheck >/dev/null 2>&1; then exit 0; fi",
		"apt-get build-dep --print-uris -q -o Acquire::ForceHash=SHA256 $apt_opts -P nocheck ../h_1.0.dsc",
		"} > " + resolvedPath} {
		if !strings.Contains(s, w) {
			t.Errorf("resolve script lacks %q:\n%s", w, s)
		}
	}
	s = debResolveScript([]Repository{{Apt: "deb [trusted=yes] http://r/ x main"}}, []executor.Package{{Name: "make", Version: "4.3-4.1", Architecture: "amd64"}}, "h_1.0.dsc", nil)
	for _, w := range []string{"apt-get install --print-uris -q -o Acquire::ForceHash=SHA256 $apt_opts --allow-downgrades make:amd64=4.3-4.1", "kiln-release.list\n" + httpsViaProxy(aptSources...) + "apt-get update",
		"rm -f /etc/apt/sources.list.d/kiln-release.list\n"} {
		if !strings.Contains(s, w) {
			t.Errorf("resolve script lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, "then exit 0") {
		t.Errorf("with pins the resolution is never skipped:\n%s", s)
	}
}

// Through the proxy, apt's https sources are named so that the proxy sees
// their requests (http://host:443/...); without it (the host's network)
// they stay as they are.
func TestHTTPSViaProxy(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	etc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"sources.list": "deb https://deb.debian.org/debian bookworm main\n" +
			"deb [signed-by=/etc/apt/keyrings/k.asc] https://mirror.example.org:8443/debian bookworm main\n" +
			"deb https://[2001:db8::1]/debian bookworm main\ndeb http://plain.example.org/debian bookworm main\n",
		"sources.list.d/kiln-release.list": "deb [signed-by=/k.asc] https://repo.example.org/mos/ mos-9.0 main\n",
		"sources.list.d/debian.sources":    "Types: deb\nURIs: https://deb.debian.org/debian/\nSuites: bookworm\n",
		"yum.repos.d/kiln-release-0.repo":  "[kiln-release-0]\nbaseurl=https://repo.example.org/mos/el9/\ngpgcheck=1\n",
	}
	if err := os.MkdirAll(filepath.Join(etc, "yum.repos.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(sh, "-ec", httpsViaProxy(etc+"/sources.list", etc+"/sources.list.d/*.list", etc+"/sources.list.d/*.sources", etc+"/yum.repos.d/*.repo"))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); out != "" {
		t.Errorf("without a proxy: %q", out)
	}
	if data, _ := os.ReadFile(filepath.Join(etc, "sources.list")); string(data) != files["sources.list"] {
		t.Errorf("without a proxy the sources changed:\n%s", data)
	}
	out := run("http_proxy=http://127.0.0.1:3128")
	if strings.Count(out, "fetched through the package source proxy") != 4 {
		t.Errorf("output: %q", out)
	}
	for name, want := range map[string]string{
		"sources.list": "deb http://deb.debian.org:443/debian bookworm main\n" +
			"deb [signed-by=/etc/apt/keyrings/k.asc] http://mirror.example.org:8443/debian bookworm main\n" +
			"deb http://[2001:db8::1]:443/debian bookworm main\ndeb http://plain.example.org/debian bookworm main\n",
		"sources.list.d/kiln-release.list": "deb [signed-by=/k.asc] http://repo.example.org:443/mos/ mos-9.0 main\n",
		"sources.list.d/debian.sources":    "Types: deb\nURIs: http://deb.debian.org:443/debian/\nSuites: bookworm\n",
		"yum.repos.d/kiln-release-0.repo":  "[kiln-release-0]\nbaseurl=http://repo.example.org:443/mos/el9/\ngpgcheck=1\n",
	} {
		if data, _ := os.ReadFile(filepath.Join(etc, name)); string(data) != want {
			t.Errorf("%s:\n%s\nwant:\n%s", name, data, want)
		}
	}
	// Again: nothing left to change, nothing said.
	if out := run("http_proxy=http://127.0.0.1:3128"); out != "" {
		t.Errorf("second run: %q", out)
	}
}

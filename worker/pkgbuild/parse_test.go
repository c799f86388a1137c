package pkgbuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/kiln-build/kiln/worker/executor"
)

func TestParseChangelogHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     changelogHead
		err      string
	}{
		{"plain", "hello (1.0-1) unstable; urgency=medium\n\n  * x\n", changelogHead{"hello", "1.0-1", "unstable"}, ""},
		{"epoch and leading blank line", "\nnova (2:13.0.0-1~u14.04+mos1) mos9.0; urgency=low\n", changelogHead{"nova", "2:13.0.0-1~u14.04+mos1", "mos9.0"}, ""},
		{"garbage", "this is not a changelog\n", changelogHead{}, "is not \"source (version)"},
		{"bad version", "hello (1.0 $(rm)) unstable; urgency=low\n", changelogHead{}, "is not \"source (version)"},
		{"version not starting with a digit", "hello (abc) unstable; urgency=low\n", changelogHead{}, `version "abc" is not a valid Debian version`},
		{"empty", "\n\n", changelogHead{}, "debian/changelog is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChangelogHead([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, upstream, noEpoch string
		format                sourceFormat
		orig                  bool
	}{
		{"1.0", "1.0", "1.0", formatNative, false},
		{"1.0-1", "1.0", "1.0-1", formatQuilt, true},
		{"2:13.0.0-1~u14.04+mos1", "13.0.0", "13.0.0-1~u14.04+mos1", formatQuilt, true},
		{"1.0-2-3", "1.0-2", "1.0-2-3", format10, true},
		{"3.1", "3.1", "3.1", format10, false},
	}
	for _, tt := range tests {
		if got := upstreamVersion(tt.in); got != tt.upstream {
			t.Errorf("upstreamVersion(%q) = %q, want %q", tt.in, got, tt.upstream)
		}
		if got := withoutEpoch(tt.in); got != tt.noEpoch {
			t.Errorf("withoutEpoch(%q) = %q, want %q", tt.in, got, tt.noEpoch)
		}
		if got := needsOrig(tt.format, tt.in); got != tt.orig {
			t.Errorf("needsOrig(%q, %q) = %v, want %v", tt.format, tt.in, got, tt.orig)
		}
	}
}

func TestParseSourceFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		data   string
		exists bool
		want   sourceFormat
		err    bool
	}{
		{"", false, format10, false},
		{"3.0 (quilt)\n", true, formatQuilt, false},
		{"3.0 (native)", true, formatNative, false},
		{"3.0 (git)\n", true, "", true},
	}
	for _, tt := range tests {
		got, err := parseSourceFormat([]byte(tt.data), tt.exists)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseSourceFormat(%q) = %q, %v", tt.data, got, err)
		}
	}
}

func TestChangelogEntry(t *testing.T) {
	t.Parallel()
	got := changelogEntry(changelogHead{"nova", "2:13.0.0-1", "mos9.0"}, "2:13.0.0-1~mos9.0+3", "mos-9.0", 3,
		"Kiln <kiln@example.org>", time.Date(2026, 11, 2, 10, 0, 0, 0, time.FixedZone("CET", 3600)))
	want := "nova (2:13.0.0-1~mos9.0+3) mos9.0; urgency=medium\n\n  * Kiln build for release mos-9.0, revision 3.\n\n -- Kiln <kiln@example.org>  Mon, 02 Nov 2026 09:00:00 +0000\n\n"
	if got != want {
		t.Errorf("entry:\n%q\nwant\n%q", got, want)
	}
	if _, err := parseChangelogHead([]byte(got)); err != nil {
		t.Errorf("entry does not parse back: %v", err)
	}
}

func TestParseEvaluated(t *testing.T) {
	t.Parallel()
	// What rpmspec -P prints for a spec with %autosetup -n and URL sources.
	parsed := `
Name: python-kiln-widget
Version: 2.3.1
Release: 1.kd1.r1
Source0: https://files.example.invalid/kiln-widget/kiln-widget-2.3.1.tar.gz
Source1: %{name}.service
Patch0: fix.patch

%description
Source9: not-this
%prep

cd '/build/rpm/BUILD'
rm -rf 'kiln-widget-2.3.1'
/usr/lib/rpm/rpmuncompress -x /build/rpm/SOURCES/kiln-widget-2.3.1.tar.gz
%build
rm -rf 'not-this-either'
`
	got, err := parseEvaluated([]byte("python-kiln-widget\n(none)\n2.3.1\n1.kd1.r1\n"), []byte(parsed))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "python-kiln-widget" || got.Epoch != "" || got.version() != "2.3.1-1.kd1.r1" || got.Source0 != "kiln-widget-2.3.1.tar.gz" || got.SetupDir != "kiln-widget-2.3.1" {
		t.Errorf("parsed %+v", got)
	}
	if want := []string{"kiln-widget-2.3.1.tar.gz", "%{name}.service", "fix.patch"}; !slices.Equal(got.Sources, want) {
		t.Errorf("sources = %q, want %q", got.Sources, want)
	}
	if e, _ := parseEvaluated([]byte("a\n2\n1.0\n3\n"), nil); e.version() != "2:1.0-3" {
		t.Errorf("epoch: %q", e.version())
	}
	if _, err := parseEvaluated([]byte("../x\n(none)\n1\n1\n"), nil); err == nil {
		t.Error("a name with a slash was accepted")
	}

	spec := "Name: a\nRelease:  1%{?rel_extra}\n%description\nRelease: not-this\n"
	out, ok := appendRelease([]byte(spec), ".mos9.0.2")
	if !ok || string(out) != "Name: a\nRelease:  1%{?rel_extra}.mos9.0.2\n%description\nRelease: not-this\n" {
		t.Errorf("release not set once (%v):\n%s", ok, out)
	}
}

// tarOf builds a tar stream from entries.
type entry struct {
	name, link, body string
	typ              byte
}

func tarOf(t *testing.T, entries []entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []entry
		err     string
	}{
		{"dotdot member", []entry{{name: "../evil", body: "x", typ: tar.TypeReg}}, `member "../evil" escapes`},
		{"dotdot inside", []entry{{name: "a/../../evil", body: "x", typ: tar.TypeReg}}, "escapes the source tree (.. path)"},
		{"absolute member", []entry{{name: "/etc/evil", body: "x", typ: tar.TypeReg}}, "absolute or empty path"},
		{"absolute symlink", []entry{{name: "l", link: "/etc", typ: tar.TypeSymlink}}, `symlink "l" points outside`},
		{"escaping symlink", []entry{{name: "a/l", link: "../../x", typ: tar.TypeSymlink}}, `symlink "a/l" points outside`},
		{"escaping symlink left out", []entry{{name: "skipped/l", link: "/etc", typ: tar.TypeSymlink}}, `symlink "skipped/l" points outside`},
		{"hard link", []entry{{name: "h", link: "x", typ: tar.TypeLink}}, "unsupported type"},
		{"device", []entry{{name: "d", typ: tar.TypeChar}}, "unsupported type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			dir := filepath.Join(base, "tree")
			os.Mkdir(dir, 0o755)
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			err = extractTar("test", tarOf(t, tt.entries), root, "", func(n string) bool { return !strings.HasPrefix(n, "skipped") })
			if _, ok := isBadSource(err); !ok || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error = %v, want a bad source error with %q", err, tt.err)
			}
			if entries, _ := os.ReadDir(base); len(entries) != 1 {
				t.Errorf("written beside the tree: %v", entries)
			}
		})
	}
}

func TestExtractTarKeepsInsideLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root, _ := os.OpenRoot(dir)
	defer root.Close()
	err := extractTar("test", tarOf(t, []entry{
		{name: "pkg/", typ: tar.TypeDir},
		{name: "pkg/a/b", body: "hello", typ: tar.TypeReg},
		{name: "pkg/a/l", link: "b", typ: tar.TypeSymlink},
		{name: "pkg/up", link: "a/../a/b", typ: tar.TypeSymlink},
		{name: "other/x", body: "x", typ: tar.TypeReg},
	}), root, "pkg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a/l")); string(b) != "hello" {
		t.Errorf("a/l reads %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("member outside the stripped prefix extracted")
	}
}

func TestWriteTarballIsDeterministic(t *testing.T) {
	t.Parallel()
	entries := []entry{{name: "hello", body: "hi", typ: tar.TypeReg}, {name: "debian/control", body: "x", typ: tar.TypeReg}}
	var a, b bytes.Buffer
	skipDebian := func(n string) bool { return strings.HasPrefix(n, "debian") }
	if err := writeTarball("t", tarOf(t, entries), &a, "pkg-1.0", skipDebian); err != nil {
		t.Fatal(err)
	}
	if err := writeTarball("t", tarOf(t, entries), &b, "pkg-1.0", skipDebian); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same input gave different tarballs")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "t.tar.gz"), a.Bytes(), 0o644)
	out, err := runTar(dir, "t.tar.gz")
	if err != nil {
		t.Skipf("tar: %v", err)
	}
	if out != "pkg-1.0/\npkg-1.0/hello\n" {
		t.Errorf("tarball lists\n%s", out)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := DefaultConfig()
	ok.Repositories = []Repository{{Release: "mos-9.0", Apt: "deb [trusted=yes] http://127.0.0.1:8080/mos-9.0 bookworm main"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("default config with a repository: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"relative cache", func(c *Config) { c.CacheDir = "cache" }, `build.cache_dir "cache"`},
		{"negative timeout", func(c *Config) { c.BuildTimeout = -time.Second }, "build.build_timeout -1s"},
		{"bad maintainer", func(c *Config) { c.Maintainer = "nobody" }, `build.maintainer "nobody"`},
		{"repository without release", func(c *Config) { c.Repositories = []Repository{{Apt: "deb http://x/ a main"}} }, "release is empty"},
		{"repository with both", func(c *Config) {
			c.Repositories = []Repository{{Release: "r", Apt: "deb http://x/ a main", BaseURL: "http://x/"}}
		}, "exactly one of apt"},
		{"apt not a source line", func(c *Config) { c.Repositories = []Repository{{Release: "r", Apt: "http://x/"}} }, `must be a one-line source starting with "deb "`},
		{"relative key file", func(c *Config) {
			c.Repositories = []Repository{{Release: "r", Apt: "deb http://x/ a main", KeyFile: "mos.asc"}}
		}, `key_file "mos.asc" must be an absolute path`},
		{"key twice", func(c *Config) {
			c.Repositories = []Repository{{Release: "r", Apt: "deb [signed-by=/etc/kiln/a.asc] http://x/ a main", KeyFile: "/etc/kiln/b.asc"}}
		}, "give the key once"},
		{"no suite", func(c *Config) { c.Repositories = []Repository{{Release: "r", Apt: "deb [trusted=yes] http://x/"}} }, "expected a URI and a suite"},
		{"no git protocols", func(c *Config) { c.GitProtocols = nil }, "build.git_protocols is empty"},
		{"ext protocol", func(c *Config) { c.GitProtocols = []string{"git", "ext"} }, `"ext" is not one of`},
		{"newline", func(c *Config) {
			c.Repositories = []Repository{{Release: "r", Apt: "deb http://x/ a main\ndeb http://evil/ a main"}}
		}, "single line"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestDepsScripts(t *testing.T) {
	t.Parallel()
	repos := []Repository{{Release: "mos-9.0", Apt: "deb [trusted=yes] http://127.0.0.1:8080/mos 'x' main"}}
	pinned := []executor.Package{{Name: "python3", Version: "3.11.2-1+b1", Architecture: "amd64"}, {Name: "debhelper", Version: "13.11.4", Architecture: "all"}}
	s := debDepsScript(repos, pinned, "hello_1.0.dsc", nil)
	for _, want := range []string{
		`echo 'deb [trusted=yes] http://127.0.0.1:8080/mos '\''x'\'' main' >> /etc/apt/sources.list.d/kiln-release.list`,
		"python3:amd64=3.11.2-1+b1 debhelper=13.11.4",
		"apt-get build-dep $apt_opts ../hello_1.0.dsc",
		"--allow-downgrades",
		"dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\n' > /build/.kiln/installed",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("deb script lacks %q:\n%s", want, s)
		}
	}
	if s := debDepsScript(nil, nil, "h.dsc", []string{"nocheck", "nodoc"}); !strings.Contains(s, "if dpkg-checkbuilddeps -P nocheck,nodoc; then") || !strings.Contains(s, "apt-get build-dep $apt_opts -P nocheck,nodoc ../h.dsc") {
		t.Errorf("deb script does not pass the profiles:\n%s", s)
	}
	if s := debDepsScript(nil, nil, "h.dsc", nil); strings.Contains(s, "installing pinned") || strings.Contains(s, "kiln-release.list") {
		t.Errorf("script without repositories or pins:\n%s", s)
	}
	r := rpmDepsScript([]Repository{{Release: "mos-9.0", BaseURL: "http://127.0.0.1:8080/mos/"}}, []executor.Package{{Name: "make", Version: "4.3-1.el9"}})
	if !strings.Contains(r, "apt-get install -y --no-install-recommends --allow-downgrades -o Dpkg::Use-Pty=0 make=4.3-1.el9") {
		t.Errorf("rpm script does not pin with apt in a Debian-based buildroot:\n%s", r)
	}
	for _, want := range []string{"baseurl=http://127.0.0.1:8080/mos/\ngpgcheck=0\n", "is not verified: no key_file", "dnf install -y --allowerasing make-4.3-1.el9", "dnf builddep -y SRPMS/*.src.rpm", noDepsMarker, "rpm -qa", "> /build/.kiln/installed"} {
		if !strings.Contains(r, want) {
			t.Errorf("rpm script lacks %q:\n%s", want, r)
		}
	}
}

func TestDepsScriptsVerifyReleaseRepositories(t *testing.T) {
	t.Parallel()
	deb := debDepsScript([]Repository{
		{Release: "mos-9.0", Apt: "deb [signed-by=/build/.kiln/repos/0-key.asc] http://127.0.0.1:8080/mos bookworm main"},
		{Release: "mos-9.0", Apt: "deb [trusted=yes] http://127.0.0.1:8080/old bookworm main"},
	}, nil, "h.dsc", nil)
	if strings.Contains(deb, "mos is not verified") || !strings.Contains(deb, "kiln: warning: release repository http://127.0.0.1:8080/old is not verified: [trusted=yes]") {
		t.Errorf("deb script warns about the wrong repositories:\n%s", deb)
	}
	rpm := rpmDepsScript([]Repository{{Release: "mos-9.0", BaseURL: "http://127.0.0.1:8080/mos/", KeyFile: "/build/.kiln/repos/0-key.asc"}}, nil)
	want := "printf '%s' '[kiln-release-0]\nname=kiln release repository\nbaseurl=http://127.0.0.1:8080/mos/\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file:///build/.kiln/repos/0-key.asc\nenabled=1\n' > /etc/yum.repos.d/kiln-release-0.repo"
	if !strings.Contains(rpm, want) || strings.Contains(rpm, "gpgcheck=0") || strings.Contains(rpm, "not verified") {
		t.Errorf("rpm script lacks\n%s\ngot\n%s", want, rpm)
	}
}

func TestStageRepositoryKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	entity, err := openpgp.NewEntity("Kiln Test Operator", "", "operator@kiln.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	writeKey := func(name string, private, armored bool) string {
		var buf bytes.Buffer
		w := io.Writer(&buf)
		var aw io.WriteCloser
		if armored {
			typ := openpgp.PublicKeyType
			if private {
				typ = openpgp.PrivateKeyType
			}
			if aw, err = armor.Encode(&buf, typ, nil); err != nil {
				t.Fatal(err)
			}
			w = aw
		}
		if private {
			err = entity.SerializePrivate(w, nil)
		} else {
			err = entity.Serialize(w)
		}
		if err != nil {
			t.Fatal(err)
		}
		if aw != nil {
			aw.Close()
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	asc := writeKey("mos.asc", false, true)
	gpg := writeKey("mos.gpg", false, false)
	secret := writeKey("secret.asc", true, true)
	junk := filepath.Join(dir, "junk.asc")
	os.WriteFile(junk, []byte("not a key\n"), 0o644)

	stage := func(repos ...Repository) ([]Repository, string, error) {
		cfg := DefaultConfig()
		cfg.Repositories = repos
		work := t.TempDir()
		got, err := New(cfg, nil, nil).stageRepositories(executor.Job{WorkDir: work, Build: &executor.PackageBuild{Release: "mos-9.0", Target: "bookworm"}})
		return got, work, err
	}
	got, work, err := stage(
		Repository{Release: "mos-9.0", Apt: "deb [ signed-by=" + asc + " arch=amd64 ] http://127.0.0.1:8080/mos bookworm main"},
		Repository{Release: "mos-9.0", Apt: "deb http://127.0.0.1:8080/mos2 bookworm main", KeyFile: gpg},
		Repository{Release: "mos-9.0", BaseURL: "http://127.0.0.1:8080/mos/el9/", KeyFile: asc},
		Repository{Release: "mos-9.0", Apt: "deb [signed-by=7F438280EF8D349F] http://127.0.0.1:8080/fpr bookworm main"},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []Repository{
		{Release: "mos-9.0", Apt: "deb [arch=amd64 signed-by=/build/.kiln/repos/0-key.asc] http://127.0.0.1:8080/mos bookworm main"},
		{Release: "mos-9.0", Apt: "deb [signed-by=/build/.kiln/repos/1-key.asc] http://127.0.0.1:8080/mos2 bookworm main"},
		{Release: "mos-9.0", BaseURL: "http://127.0.0.1:8080/mos/el9/", KeyFile: "/build/.kiln/repos/2-key.asc"},
		{Release: "mos-9.0", Apt: "deb [signed-by=7F438280EF8D349F] http://127.0.0.1:8080/fpr bookworm main"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("staged repositories\n%q\nwant\n%q", got, want)
	}
	for i := range 3 {
		data, err := os.ReadFile(filepath.Join(work, stateDir, reposDir, fmt.Sprintf("%d-key.asc", i)))
		if err != nil {
			t.Fatal(err)
		}
		ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil || len(ring) != 1 || ring[0].PrimaryKey.Fingerprint == nil || ring[0].PrivateKey != nil ||
			!bytes.Equal(ring[0].PrimaryKey.Fingerprint, entity.PrimaryKey.Fingerprint) {
			t.Errorf("staged key %d is not the operator's public key: %v\n%s", i, err, data)
		}
	}
	for _, tt := range []struct {
		name, key, want string
	}{
		{"private key", secret, "holds a private key; give the public key only"},
		{"not a key", junk, "is not an OpenPGP public key"},
		{"missing", filepath.Join(dir, "missing.asc"), "missing.asc: no such file"},
	} {
		if _, _, err := stage(Repository{Release: "mos-9.0", Apt: "deb [signed-by=" + tt.key + "] http://127.0.0.1:8080/mos bookworm main"}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRepositoryHosts(t *testing.T) {
	t.Parallel()
	repos := []Repository{
		{Apt: "deb [trusted=yes] http://127.0.0.1:8080/mos-9.0 bookworm main"},
		{Apt: "deb [ signed-by=/etc/kiln/mos.asc arch=amd64 ] https://Mirror.Example.org/mos bookworm main"},
		{Apt: "deb http://127.0.0.1:8080/other bookworm main"},
		{Apt: "deb [trusted=yes] file:///build/.kiln/repos/3 ./"},
		{BaseURL: "http://rpm.example.org:8081/mos/"},
		{BaseURL: "file:///build/.kiln/repos/5"},
		{Apt: "deb [unterminated http://x/ a main"},
	}
	want := []string{"http://127.0.0.1:8080", "https://mirror.example.org:443", "http://rpm.example.org:8081"}
	if got := repositoryHosts(repos); !slices.Equal(got, want) {
		t.Errorf("repositoryHosts = %q, want %q", got, want)
	}
}

func TestParseInstalled(t *testing.T) {
	t.Parallel()
	got := parseInstalled([]byte("zlib1g\t1:1.2.13\tamd64\nbroken line\nlibc6\t2.36-9\tamd64\nlibc6\t2.36-9\ti386\n"))
	want := []executor.Package{{Name: "libc6", Version: "2.36-9", Architecture: "amd64"}, {Name: "libc6", Version: "2.36-9", Architecture: "i386"}, {Name: "zlib1g", Version: "1:1.2.13", Architecture: "amd64"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCollectTakesOnlyRegularFiles(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)
	os.MkdirAll(filepath.Join(work, srcDir, "hello-1.0"), 0o755)
	os.WriteFile(filepath.Join(work, srcDir, "hello_1.0_all.deb"), []byte("deb"), 0o644)
	os.WriteFile(filepath.Join(work, srcDir, "notes.txt"), []byte("x"), 0o644)
	os.Symlink(secret, filepath.Join(work, srcDir, "steal_1.0_all.deb"))
	os.Mkdir(filepath.Join(work, srcDir, "dir.deb"), 0o755)
	got, err := collect(work, []collectRule{{dir: srcDir, patterns: []string{"*.deb"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"hello_1.0_all.deb"}) {
		t.Errorf("collected %q", got)
	}
	if _, err := os.Lstat(filepath.Join(work, outDir, "steal_1.0_all.deb")); err == nil {
		t.Error("a symlink was collected")
	}
}

func TestURLProtocol(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"git://127.0.0.1:9418/a":          "git",
		"HTTPS://example.org/a.git":       "https",
		"ssh://gerrit:29418/a":            "ssh",
		"gerrit.example.org:openstack/a":  "ssh",
		"/srv/git/a.git":                  "file",
		"file:///srv/git/a.git":           "file",
		"ext::sh -c touch% /tmp/pwned":    "ext",
		"./relative/path:with-colon-late": "file",
	} {
		if got := urlProtocol(url); got != want {
			t.Errorf("urlProtocol(%q) = %q, want %q", url, got, want)
		}
	}
}

func TestDistDirs(t *testing.T) {
	t.Parallel()
	tests := map[string][]string{
		"trusty/amd64":   {"trusty"},
		"trusty-amd64":   {"trusty-amd64", "trusty"},
		"centos7_x86_64": {"centos7_x86_64", "centos7"},
		"bookworm":       {"bookworm"},
		"../x":           nil,
	}
	for target, want := range tests {
		if got := distDirs(target); !slices.Equal(got, want) {
			t.Errorf("distDirs(%q) = %q, want %q", target, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"dpkg-source": "dpkg-source",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"":            "''",
		"${Package}":  "'${Package}'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseSeries(t *testing.T) {
	t.Parallel()
	got, err := parseSeries([]byte("# comment\nfirst.patch\n\nupstream/second.diff -p0 # why\nthird.patch\n"))
	want := []quiltPatch{{"first.patch", 1}, {"upstream/second.diff", 0}, {"third.patch", 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseSeries = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"../../etc/passwd\n", "/abs.patch\n", "x.patch -R\n"} {
		if _, err := parseSeries([]byte(bad)); err == nil {
			t.Errorf("parseSeries(%q) accepted", bad)
		}
	}
}

// The pin check names every recorded version the buildroot's sources
// lack, not only the first one apt-get would stop at. apt-cache is a stub
// here that holds python3 3.11.2-1+b1 only.
func TestDebPinCheckNamesEveryMissingVersion(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	stub := "#!/bin/sh\n[ \"$1\" = show ] && [ \"$2\" = python3:amd64=3.11.2-1+b1 ]\n"
	if err := os.WriteFile(filepath.Join(bin, "apt-cache"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(pinned []executor.Package) (string, int) {
		cmd := exec.Command("sh", "-ec", debPinCheck(pinned)+"echo checked\n")
		cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	held := executor.Package{Name: "python3", Version: "3.11.2-1+b1", Architecture: "amd64"}
	if out, code := run([]executor.Package{held}); code != 0 || !strings.Contains(out, "checked") {
		t.Fatalf("every pin held: exit %d\n%s", code, out)
	}
	out, code := run([]executor.Package{held, {Name: "debhelper", Version: "13.11.4", Architecture: "all"}, {Name: "libc6", Version: "2.36-9", Architecture: "amd64"}})
	if code != 100 || !strings.Contains(out, "sources hold: debhelper=13.11.4 libc6:amd64=2.36-9\n") || strings.Contains(out, "checked") {
		t.Fatalf("two pins missing: exit %d\n%s", code, out)
	}
}

// The log shows a generated script as its lines, not as one argument full
// of shell quoting; other commands stay as a shell takes them.
func TestReadableStep(t *testing.T) {
	t.Parallel()
	script := debDepsScript([]Repository{{Release: "r", Apt: "deb [signed-by=/k.asc] http://h/r r main"}}, nil, "h.dsc", nil)
	got := readableStep([]string{"sh", "-ec", script, "kiln-deps"})
	if strings.Contains(got, `'\''`) || !strings.HasPrefix(got, "script kiln-deps, run by sh -e:\n    apt_opts=") ||
		!strings.Contains(got, "\n      apt-get build-dep $apt_opts ../h.dsc\n") {
		t.Errorf("readableStep of the deps script:\n%s", got)
	}
	if got := readableStep([]string{"dpkg-source", "-x", "a b.dsc"}); got != "dpkg-source -x 'a b.dsc'" {
		t.Errorf("readableStep of a command: %q", got)
	}
}

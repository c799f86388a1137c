package buildroot

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/config"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{in: "", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512K", want: 512 << 10},
		{in: "512M", want: 512 << 20},
		{in: "8G", want: 8 << 30},
		{in: "1GiB", want: 1 << 30},
		{in: "2gb", want: 2 << 30},
		{in: "1T", want: 1 << 40},
		{in: "8X", wantErr: true},
		{in: "G", wantErr: true},
		{in: "-1G", wantErr: true},
		{in: "1.5G", wantErr: true},
		{in: "99999999999T", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tt.in) {
			t.Errorf("ParseSize(%q) error %q does not name the value", tt.in, err)
		}
	}
}

func validDeb() Target {
	return Target{Name: "bookworm", Suite: "bookworm", Mirror: "http://deb.debian.org/debian", Packages: []string{"dpkg-dev"}}
}

func validDNF() Target {
	return Target{
		Name: "el9", Method: "dnf", Releasever: "9",
		Repositories: []Repository{{Name: "baseos", BaseURL: "https://mirror.example.org/9/BaseOS/x86_64/os/"}},
		Packages:     []string{"rocky-release", "shadow-utils", "rpm-build"},
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "defaults", change: func(*Config) {}},
		{name: "relative socket", change: func(c *Config) { c.Address = "containerd.sock" }, wantErr: `buildroot.address "containerd.sock"`},
		{name: "bad namespace", change: func(c *Config) { c.Namespace = "a b" }, wantErr: `namespace "a b"`},
		{name: "native snapshotter", change: func(c *Config) { c.Snapshotter = "native" }, wantErr: `snapshotter "native"`},
		{name: "bad tmpfs size", change: func(c *Config) { c.TmpfsSize = "lots" }, wantErr: `tmpfs_size "lots"`},
		{name: "bad memory", change: func(c *Config) { c.Memory = "4Q" }, wantErr: `size "4Q"`},
		{name: "negative cpus", change: func(c *Config) { c.CPUs = -1 }, wantErr: "cpus -1"},
		{name: "negative timeout", change: func(c *Config) { c.IdleTimeout = -time.Second }, wantErr: "idle_timeout -1s"},
		{name: "duplicate target", change: func(c *Config) { c.Targets = append(c.Targets, validDeb()) }, wantErr: `target "bookworm" listed twice`},
		{name: "bad target name", change: func(c *Config) { c.Targets[0].Name = "../etc" }, wantErr: `target name "../etc"`},
		{name: "bad format", change: func(c *Config) { c.Targets[0].Format = "apk" }, wantErr: `format "apk"`},
		{name: "bad method", change: func(c *Config) { c.Targets[0].Method = "debootstrap" }, wantErr: `method "debootstrap"`},
		{name: "option as package", change: func(c *Config) { c.Targets[0].Packages = []string{"--foo"} }, wantErr: `package "--foo"`},
		{name: "missing mirror", change: func(c *Config) { c.Targets[0].Mirror = "" }, wantErr: `mirror ""`},
		{name: "bad variant", change: func(c *Config) { c.Targets[0].Variant = "tiny" }, wantErr: `variant "tiny"`},
		{name: "dnf without repositories", change: func(c *Config) { c.Targets[1].Repositories = nil }, wantErr: "at least one repository"},
		{name: "dnf without releasever", change: func(c *Config) { c.Targets[1].Releasever = "" }, wantErr: `releasever ""`},
		{name: "host dependency network", change: func(c *Config) { c.DependencyNetwork = NetworkHost }},
		{name: "bad dependency network", change: func(c *Config) { c.DependencyNetwork = "none" }, wantErr: `buildroot.dependency_network "none"`},
		{name: "relative package cache", change: func(c *Config) { c.PackageCache.Dir = "cache" }, wantErr: `buildroot.package_cache.dir "cache"`},
		{name: "bad package cache size", change: func(c *Config) { c.PackageCache.MaxSize = "big" }, wantErr: `buildroot.package_cache.max_size "big"`},
		{name: "zero package cache size", change: func(c *Config) { c.PackageCache.MaxSize = "0" }, wantErr: `max_size "0"`},
		{name: "package cache off", change: func(c *Config) { c.PackageCache = PackageCacheConfig{Dir: "x", MaxSize: "0", Disabled: true} }},
		{name: "dnf newline in baseurl", change: func(c *Config) { c.Targets[1].Repositories[0].BaseURL = "http://x/\ngpgcheck=0" }, wantErr: "baseurl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Config{Targets: []Target{validDeb(), validDNF()}}
			tt.change(&c)
			err := c.WithDefaults().Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigFromYAML(t *testing.T) {
	t.Parallel()
	yaml := `
address: /run/kiln-containerd/containerd.sock
tmpfs_size: 4G
memory: 2G
cpus: 1.5
pids: 4096
step_timeout: 2h
idle_timeout: 15m
package_cache: {dir: /srv/kiln/packages, max_size: 50G}
targets:
  - name: bookworm-rpm
    format: rpm
    suite: bookworm
    mirror: http://deb.debian.org/debian
    packages: [rpm]
`
	var c Config
	if err := config.Decode("worker.yaml", []byte(yaml), &c); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tg, ok := c.Target("bookworm-rpm")
	if !ok || tg.Method != "mmdebstrap" || tg.Format != "rpm" || !slices.Equal(tg.Components, []string{"main"}) {
		t.Errorf("target %+v", tg)
	}
	if c.IdleTimeout != 15*time.Minute || c.StepTimeout != 2*time.Hour || c.CPUs != 1.5 || c.Namespace != DefaultNamespace || c.DependencyNetwork != NetworkSources {
		t.Errorf("config %+v", c)
	}
	if c.PackageCache.Dir != "/srv/kiln/packages" || c.PackageCache.MaxSize != "50G" || c.PackageCache.Disabled {
		t.Errorf("package cache %+v", c.PackageCache)
	}
	if d := (Config{}).WithDefaults().PackageCache; d.Dir != DefaultPackageCacheDir || d.MaxSize != DefaultPackageCacheSize {
		t.Errorf("package cache defaults %+v", d)
	}
	err := config.Decode("worker.yaml", []byte("tmpfs: 4G\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "tmpfs") {
		t.Errorf("unknown key: err = %v", err)
	}
}

func TestChrootCommands(t *testing.T) {
	t.Parallel()
	deb := validDeb()
	deb.Variant = "minbase"
	deb.Components = []string{"main", "contrib"}
	deb.Architecture = "amd64"
	got := mmdebstrapArgs(deb, "/tmp/out.tar", "")
	wantPrefix := []string{"--mode=root", "--format=tar", "--variant=minbase", "--architectures=amd64",
		"--components=main,contrib", "--include=passwd,dpkg-dev"}
	if !slices.Equal(got[:len(wantPrefix)], wantPrefix) {
		t.Errorf("mmdebstrap args %q, want prefix %q", got, wantPrefix)
	}
	if tail := got[len(got)-3:]; !slices.Equal(tail, []string{"bookworm", "/tmp/out.tar", "http://deb.debian.org/debian"}) {
		t.Errorf("mmdebstrap args end %q", tail)
	}
	if !strings.Contains(strings.Join(got, " "), "useradd -u 1000 -g 1000") {
		t.Errorf("mmdebstrap args do not make the build user: %q", got)
	}

	// Capturing: the essential packages' files are kept until a hook
	// copies all of them out, before they are removed.
	captured := mmdebstrapArgs(deb, "/tmp/out.tar", "/state/it's")
	hook := slices.IndexFunc(captured, func(a string) bool {
		return strings.HasPrefix(a, "--customize-hook=find ") && strings.HasSuffix(a, `-exec cp -t '/state/it'\''s' {} +`)
	})
	rm := slices.IndexFunc(captured, func(a string) bool { return strings.HasPrefix(a, "--customize-hook=rm -rf") })
	if !slices.Contains(captured, "--skip=essential/unlink") || hook < 0 || hook > rm {
		t.Errorf("mmdebstrap args do not capture the packages before removing them: %q", captured)
	}
	if slices.Contains(got, "--skip=essential/unlink") {
		t.Errorf("mmdebstrap args keep the packages without capture: %q", got)
	}

	dnf := validDNF()
	dnf.Repositories = append(dnf.Repositories, Repository{Name: "appstream", BaseURL: "https://mirror.example.org/9/AppStream/x86_64/os/", GPGKey: "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-9"})
	args := dnfArgs(dnf, "/r", "/repos")
	want := []string{"--assumeyes", "--installroot=/r", "--releasever=9", "--setopt=reposdir=/repos",
		"--setopt=install_weak_deps=False", "--setopt=tsflags=nodocs", "--setopt=cachedir=/repos/cache", "--setopt=keepcache=1",
		"install", "rocky-release", "shadow-utils", "rpm-build"}
	if !slices.Equal(args, want) {
		t.Errorf("dnf args\n got %q\nwant %q", args, want)
	}
	repo := dnfRepoFile(dnf)
	for _, line := range []string{"[baseos]", "baseurl=https://mirror.example.org/9/BaseOS/x86_64/os/", "gpgcheck=0",
		"[appstream]", "gpgcheck=1", "repo_gpgcheck=1", "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-9"} {
		if !strings.Contains(repo, line+"\n") {
			t.Errorf("repo file lacks %q:\n%s", line, repo)
		}
	}
}

func TestTargetSourceHosts(t *testing.T) {
	t.Parallel()
	dnf := validDNF()
	dnf.Repositories = append(dnf.Repositories,
		Repository{Name: "appstream", BaseURL: "https://mirror.example.org/9/AppStream/", GPGKey: "http://keys.example.org:8080/key"},
		Repository{Name: "local", BaseURL: "file:///srv/repo", GPGKey: "file:///etc/pki/key"})
	fileDeb := validDeb()
	fileDeb.Mirror = "file:///srv/debian"
	tests := []struct {
		name   string
		target Target
		want   []string
	}{
		{name: "deb mirror", target: validDeb(), want: []string{"http://deb.debian.org:80"}},
		{name: "local deb mirror", target: fileDeb, want: nil},
		{name: "dnf repositories and keys", target: dnf, want: []string{"https://mirror.example.org:443", "http://keys.example.org:8080"}},
	}
	for _, tt := range tests {
		if got := tt.target.SourceHosts(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: SourceHosts() = %q, want %q", tt.name, got, tt.want)
		}
	}
}

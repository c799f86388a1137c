package buildroot

import (
	"github.com/kiln-build/kiln/worker/executor"
	"slices"
	"strings"
	"testing"
)

func TestSealedTargetDrawsOnlyFromTheBase(t *testing.T) {
	t.Parallel()
	deb := Target{Name: "bookworm-amd64", Format: "deb", Method: "mmdebstrap", Suite: "bookworm",
		Mirror: "http://deb.debian.org/debian", Components: []string{"main"}, Variant: "minbase", Packages: []string{"build-essential"}}
	rpm := Target{Name: "alma9", Format: "rpm", Method: "dnf", Releasever: "9",
		Repositories: []Repository{{Name: "baseos", BaseURL: "http://mirror.example/alma/9/BaseOS"}}, Packages: []string{"rpm-build"}}
	b := &Buildroot{cfg: Config{Targets: []Target{deb, rpm}}}
	src := executor.BaseSource{Release: "mos-9.0", URL: "http://mirror.kiln/mos-9.0-bookworm-base", SignedBy: "/etc/kiln/mos.asc"}

	got, err := b.sealedTarget("bookworm-amd64", src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got.Packages, "apt") || slices.Contains(b.cfg.Targets[0].Packages, "apt") {
		t.Errorf("sealed deb target installs %v, want apt added (and the configured target unchanged)", got.Packages)
	}
	if got.Name != "bookworm-amd64@mos-9.0" || got.Mirror != src.URL || got.SignedBy != src.SignedBy {
		t.Errorf("sealed deb target %+v", got)
	}
	if hosts := got.SourceHosts(); !slices.Equal(hosts, []string{"http://mirror.kiln:80"}) {
		t.Errorf("sealed target reaches %v, want only the base's host", hosts)
	}
	args := mmdebstrapArgs(got, "/tmp/out.tar", "")
	if last := args[len(args)-1]; last != "deb [signed-by=/etc/kiln/mos.asc] http://mirror.kiln/mos-9.0-bookworm-base bookworm main" {
		t.Errorf("mirror argument %q", last)
	}
	if !slices.ContainsFunc(args, func(a string) bool {
		return strings.Contains(a, "cp '/etc/kiln/mos.asc' \"$1\"'/etc/apt/keyrings/kiln-mos.asc'") && strings.Contains(a, "s|signed-by=/etc/kiln/mos.asc|signed-by=/etc/apt/keyrings/kiln-mos.asc|")
	}) {
		t.Errorf("the key is not copied into the chroot: %q", args)
	}
	for _, a := range args {
		if strings.Contains(a, "deb.debian.org") {
			t.Errorf("sealed chroot still names the upstream mirror: %q", a)
		}
	}

	got, err = b.sealedTarget("alma9", executor.BaseSource{Release: "mos-9.0", URL: "http://mirror.kiln/mos-9.0-alma9-base", SignedBy: "/etc/kiln/mos.asc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Repositories) != 1 || got.Repositories[0].BaseURL != "http://mirror.kiln/mos-9.0-alma9-base" || got.Repositories[0].GPGKey != "file:///etc/kiln/mos.asc" {
		t.Errorf("sealed rpm target repositories %+v", got.Repositories)
	}
	if f := dnfRepoFile(got); !strings.Contains(f, "\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file:///etc/kiln/mos.asc\n") || strings.Contains(f, "gpgcheck=0") || strings.Contains(f, "alma/9/BaseOS") {
		t.Errorf("sealed rpm repository is not checked:\n%s", dnfRepoFile(got))
	}

	for _, bad := range []executor.BaseSource{
		{Release: "mos-9.0", SignedBy: "/k.asc"},
		{Release: "mos-9.0", URL: "http://x/base"},
		{Release: "mos-9.0", URL: "http://x/base", SignedBy: "relative.asc"},
	} {
		if _, err := b.sealedTarget("bookworm-amd64", bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := b.sealedTarget("absent", src); err == nil || !strings.Contains(err.Error(), `"absent"`) {
		t.Errorf("unknown target: %v", err)
	}
}

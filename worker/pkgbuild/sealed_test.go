package pkgbuild

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/worker/executor"
)

func TestBaseSourceOfASealedRelease(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Repositories = []Repository{
		{Release: "mos-9.0", Apt: "deb http://m/mos-9.0-bookworm bookworm main", KeyFile: "/etc/kiln/mos.asc",
			BaseApt: "deb http://m/mos-9.0-bookworm-base bookworm main"},
		{Release: "mos-10", Apt: "deb [signed-by=/etc/kiln/ten.asc] http://m/mos-10 bookworm main",
			BaseApt: "deb http://m/mos-10-base bookworm main"},
		{Release: "nobase", Apt: "deb [signed-by=/k.asc] http://m/nobase bookworm main"},
		{Release: "nokey", Apt: "deb [trusted=yes] http://m/nokey bookworm main", BaseApt: "deb http://m/nokey-base bookworm main"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		release string
		want    executor.BaseSource
		err     string
	}{
		{"mos-9.0", executor.BaseSource{Release: "mos-9.0", URL: "http://m/mos-9.0-bookworm-base", SignedBy: "/etc/kiln/mos.asc"}, ""},
		{"mos-10", executor.BaseSource{Release: "mos-10", URL: "http://m/mos-10-base", SignedBy: "/etc/kiln/ten.asc"}, ""},
		{"nobase", executor.BaseSource{}, "add base_apt"},
		{"nokey", executor.BaseSource{}, "has no key"},
		{"unknown", executor.BaseSource{}, "names no base repository"},
	} {
		got, err := cfg.baseSource(tt.release, "bookworm-amd64")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.release, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.release, got, err, tt.want)
		}
	}
	bad := DefaultConfig()
	bad.Repositories = []Repository{{Release: "r", Apt: "deb http://m/r bookworm main", BaseApt: "deb file:///srv/base bookworm main"}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "base_apt") {
		t.Errorf("a file: base accepted: %v", err)
	}
}

// Package files with an epoch, as apt names them in its cache (%3a) and
// as a URL gives them (:), are base files; a path is not.
func TestBasePackageNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"zlib1g_1%3a1.2.13.dfsg-1_amd64.deb": true,
		"zlib1g_1:1.2.13.dfsg-1_amd64.deb":   true,
		"g++_4%3a12.2.0-3_amd64.deb":         true,
		"hello-2.10-1.el9.x86_64.rpm":        true,
		"../etc/passwd.deb":                  false,
		"a/b.deb":                            false,
		".hidden.deb":                        false,
		"notes.txt":                          false,
	} {
		if got := basePackageName.MatchString(name); got != want {
			t.Errorf("%q: %v, want %v", name, got, want)
		}
	}
}

package runcmd

import (
	"maps"
	"testing"

	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/pkgbuild"
)

func TestExampleConfigIsValid(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	if err := config.Load("../../examples/worker.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Buildroot.WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Build.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Buildroot.Targets) != 3 || cfg.Build.CacheDir == "" {
		t.Fatalf("example lost its sections: %+v", cfg)
	}
}

func TestChrootLabels(t *testing.T) {
	t.Parallel()
	targets := []buildroot.TargetInfo{{Name: "bookworm-amd64", Digest: "sha256:aa"}, {Name: "alma9-x86_64", Digest: "sha256:bb"}}
	got := chrootLabels(map[string]string{"site": "dc1"}, targets, nil)
	want := map[string]string{"site": "dc1", "target": "alma9-x86_64|bookworm-amd64", "chroot/bookworm-amd64": "sha256:aa", "chroot/alma9-x86_64": "sha256:bb"}
	if !maps.Equal(got, want) {
		t.Errorf("chrootLabels = %v, want %v", got, want)
	}
	// A configured target is kept; no chroots, no target label.
	if got := chrootLabels(map[string]string{"target": "bookworm-amd64"}, targets, nil); got["target"] != "bookworm-amd64" {
		t.Errorf("configured target replaced: %v", got)
	}
	if got := chrootLabels(nil, nil, nil); len(got) != 0 {
		t.Errorf("no chroots: %v", got)
	}
	configured := map[string]string{"site": "dc1"}
	chrootLabels(configured, targets, nil)
	if len(configured) != 1 {
		t.Errorf("the configured labels were changed: %v", configured)
	}
}

// A worker whose build.repositories name a release's base takes that
// release's sealed builds for every configured target, chroot or not.
func TestSealedLabels(t *testing.T) {
	cfg := Config{}
	cfg.Buildroot.Targets = []buildroot.Target{{Name: "trixie"}, {Name: "bookworm"}}
	if got := sealedLabels(cfg); got != nil {
		t.Errorf("no base repositories: %v, want none", got)
	}
	cfg.Build.Repositories = []pkgbuild.Repository{{Release: "mos", Apt: "deb http://r/mos mos main"}, {Release: "rel", BaseApt: "deb http://r/rel-base rel main"},
		{Release: "alpha", BaseBaseURL: "http://r/alpha-base/"}}
	want := map[string]string{"sealed-target": "bookworm|trixie", "sealed-release": "alpha|rel"}
	if got := sealedLabels(cfg); !maps.Equal(got, want) {
		t.Errorf("sealedLabels = %v, want %v", got, want)
	}
	// Configured labels win over the derived ones.
	got := chrootLabels(map[string]string{"sealed-release": "rel"}, nil, want)
	if got["sealed-release"] != "rel" || got["sealed-target"] != "bookworm|trixie" {
		t.Errorf("chrootLabels with sealed labels = %v", got)
	}
}

package runcmd

import (
	"maps"
	"testing"

	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/worker/buildroot"
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
	got := chrootLabels(map[string]string{"site": "dc1"}, targets)
	want := map[string]string{"site": "dc1", "target": "alma9-x86_64|bookworm-amd64", "chroot/bookworm-amd64": "sha256:aa", "chroot/alma9-x86_64": "sha256:bb"}
	if !maps.Equal(got, want) {
		t.Errorf("chrootLabels = %v, want %v", got, want)
	}
	// A configured target is kept; no chroots, no target label.
	if got := chrootLabels(map[string]string{"target": "bookworm-amd64"}, targets); got["target"] != "bookworm-amd64" {
		t.Errorf("configured target replaced: %v", got)
	}
	if got := chrootLabels(nil, nil); len(got) != 0 {
		t.Errorf("no chroots: %v", got)
	}
	configured := map[string]string{"site": "dc1"}
	chrootLabels(configured, targets)
	if len(configured) != 1 {
		t.Errorf("the configured labels were changed: %v", configured)
	}
}

package runcmd

import (
	"testing"

	"github.com/kiln-build/kiln/internal/config"
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

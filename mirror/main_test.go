package main

import (
	"testing"

	"github.com/kiln-build/kiln/internal/config"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	var cfg Config
	if err := config.Load("../examples/mirror.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Root == "" || cfg.Listen == "" || cfg.MetricsListen == "" {
		t.Errorf("example config decoded as %+v", cfg)
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/cmdline/cmdlinetest"
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

// Every setting comes from the defaults, then the file, then KILN_MIRROR_*,
// then the flags.
func TestSettingsLayering(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mirror.yaml")
	if err := os.WriteFile(file, []byte("root: /from/file\nlisten: 127.0.0.1:1\nmetrics_listen: 127.0.0.1:2\nlog:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(args ...string) Config {
		t.Helper()
		g := &grammar{}
		var got Config
		g.Serve.loaded = func(c Config) error { got = c; return nil }
		var out bytes.Buffer
		if err := program.Run(context.Background(), g, append([]string{"serve"}, args...), &out, &out); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		return got
	}
	if got := load(); got.Root != "/srv/kiln/mirror" || got.Listen != "127.0.0.1:8080" || got.MetricsListen != "" {
		t.Errorf("defaults: %+v", got)
	}
	got := load("--config", file)
	if got.Root != "/from/file" || got.Listen != "127.0.0.1:1" || got.MetricsListen != "127.0.0.1:2" || got.Log.Level != "debug" {
		t.Errorf("file: %+v", got)
	}
	t.Setenv("KILN_MIRROR_CONFIG", file)
	t.Setenv("KILN_MIRROR_ROOT", "/from/env")
	t.Setenv("KILN_MIRROR_LISTEN", "127.0.0.1:3")
	t.Setenv("KILN_MIRROR_LOG_LEVEL", "warn")
	t.Setenv("KILN_MIRROR_LOG_JSON", "true")
	got = load()
	if got.Root != "/from/env" || got.Listen != "127.0.0.1:3" || got.MetricsListen != "127.0.0.1:2" || got.Log.Level != "warn" || !got.Log.JSON {
		t.Errorf("env over file: %+v", got)
	}
	got = load("--root", "/from/flag", "--metrics-listen", "127.0.0.1:4")
	if got.Root != "/from/flag" || got.Listen != "127.0.0.1:3" || got.MetricsListen != "127.0.0.1:4" {
		t.Errorf("flags over env: %+v", got)
	}
	t.Setenv("KILN_MIRROR_LOG_JSON", "maybe")
	if err := program.Run(context.Background(), &grammar{}, []string{"serve"}, io.Discard, io.Discard); cmdline.Code(err, -1) != cmdline.ExitUsage || !strings.Contains(err.Error(), "KILN_MIRROR_LOG_JSON") {
		t.Errorf("a bad environment variable: %v, want exit 2 naming it", err)
	}
}

func TestUsageExits2(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"bogus"}, {"serve", "--nope"}, {"serve", "extra"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if cmdline.Code(err, -1) != cmdline.ExitUsage {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--help"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "--metrics-listen") || !strings.Contains(out.String(), "$KILN_MIRROR_ROOT") {
		t.Errorf("serve --help: %v\n%s", err, out.String())
	}
}

func TestManPageUpToDate(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"man"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	cmdlinetest.ManPage(t, out.Bytes(), "../docs/man/mirror.1")
}

package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// The mirror serves files and /healthz until its context ends, then both
// servers stop and serveMirror returns nil.
func TestServeStopsBothServers(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	cfg := defaults()
	cfg.Root, cfg.Listen, cfg.MetricsListen = root, free(), free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveMirror(ctx, cfg, io.Discard) }()
	get := func(url string) (int, error) {
		r, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		r.Body.Close()
		return r.StatusCode, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, errA := get("http://" + cfg.Listen + "/hello.txt")
		b, errB := get("http://" + cfg.MetricsListen + "/healthz")
		if errA == nil && errB == nil && a == 200 && b == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror not serving: %d %v, %d %v", a, errA, b, errB)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveMirror after its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveMirror did not return after its context ended")
	}
	for _, addr := range []string{cfg.Listen, cfg.MetricsListen} {
		if _, err := get("http://" + addr + "/healthz"); err == nil {
			t.Errorf("%s still serves after the mirror stopped", addr)
		}
	}
}

// --check-config reads and checks the configuration as a start does and
// starts nothing: ok for the example, exit 2 naming a bad value.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--check-config", "--config", "../examples/mirror.yaml"}, &out, io.Discard); err != nil ||
		out.String() != "configuration ok: ../examples/mirror.yaml\n" {
		t.Fatalf("example config: %v, output %q", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("log: {level: loud}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"serve", "--check-config", "--config", bad}, &out, io.Discard)
	if cmdline.Code(err, -1) != cmdline.ExitUsage || out.Len() != 0 {
		t.Fatalf("bad config: %v (want exit 2), output %q", err, out.String())
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/serve"
	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/cmdline/cmdlinetest"
)

// Every setting of serve comes from the defaults, then the file, then
// KILN_COORDINATOR_*, then the flags.
func TestServeSettingsLayering(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "coordinator.yaml")
	if err := os.WriteFile(file, []byte("dev: true\nstate_dir: /file\nlisten: 127.0.0.1:1\nqueue_timeout: 1h\nworker_tokens: {w1: a}\nlog:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(args ...string) serve.Config {
		t.Helper()
		g := &grammar{}
		var got serve.Config
		g.Serve.loaded = func(c serve.Config) error { got = c; return nil }
		var out bytes.Buffer
		if err := program.Run(context.Background(), g, append([]string{"serve"}, args...), &out, &out); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		return got
	}
	got := load("--config", file)
	if !got.Dev || got.StateDir != "/file" || got.Listen != "127.0.0.1:1" || got.HTTPListen != "127.0.0.1:7421" || got.QueueTimeout != time.Hour ||
		got.Log.Level != "debug" || got.RetryCap != 3 || got.WorkerTokens["w1"] != "a" {
		t.Errorf("file over defaults: %+v", got)
	}
	t.Setenv("KILN_COORDINATOR_CONFIG", file)
	t.Setenv("KILN_COORDINATOR_STATE_DIR", "/env")
	t.Setenv("KILN_COORDINATOR_LISTEN", "127.0.0.1:2")
	t.Setenv("KILN_COORDINATOR_QUEUE_TIMEOUT", "2h")
	t.Setenv("KILN_COORDINATOR_RETRY_CAP", "5")
	t.Setenv("KILN_COORDINATOR_WORKER_TOKENS", "w2=b")
	t.Setenv("KILN_COORDINATOR_LOG_LEVEL", "warn")
	got = load()
	if got.StateDir != "/env" || got.Listen != "127.0.0.1:2" || got.QueueTimeout != 2*time.Hour || got.RetryCap != 5 || got.Log.Level != "warn" ||
		got.WorkerTokens["w1"] != "a" || got.WorkerTokens["w2"] != "b" {
		t.Errorf("env over file: %+v", got)
	}
	got = load("--state-dir", "/flag", "--http-listen", "127.0.0.1:3", "--log-level", "error", "--log-json")
	if got.StateDir != "/flag" || got.Listen != "127.0.0.1:2" || got.HTTPListen != "127.0.0.1:3" || got.Log.Level != "error" || !got.Log.JSON {
		t.Errorf("flags over env: %+v", got)
	}
	t.Setenv("KILN_COORDINATOR_RETRY_CAP", "many")
	if err := program.Run(context.Background(), &grammar{}, []string{"serve"}, io.Discard, io.Discard); cmdline.Code(err, -1) != cmdline.ExitUsage || !strings.Contains(err.Error(), "KILN_COORDINATOR_RETRY_CAP") {
		t.Errorf("a bad environment variable: %v, want exit 2 naming it", err)
	}
}

// The client's one setting group, the coordinator and its certificates:
// the default, then KILN_SERVER and KILN_TLS_*, then the flags. Plaintext
// to an address off loopback is refused naming the address, before any
// call.
func TestClientSettingsLayering(t *testing.T) {
	server := func(args ...string) string {
		t.Helper()
		err := run(context.Background(), append([]string{"jobs", "list"}, args...), io.Discard, io.Discard)
		if cmdline.Code(err, -1) != cmdline.ExitUsage {
			t.Fatalf("%v: %v, want exit 2", args, err)
		}
		return err.Error()
	}
	t.Setenv("KILN_SERVER", "192.0.2.1:7420")
	if got := server(); !strings.Contains(got, `"192.0.2.1:7420"`) {
		t.Errorf("KILN_SERVER not used: %s", got)
	}
	if got := server("--server", "192.0.2.2:7420"); !strings.Contains(got, `"192.0.2.2:7420"`) {
		t.Errorf("--server not over KILN_SERVER: %s", got)
	}
	t.Setenv("KILN_TLS_CERT", "/nonexistent/cert.pem")
	t.Setenv("KILN_TLS_KEY", "/nonexistent/key.pem")
	t.Setenv("KILN_TLS_CA", "/nonexistent/ca.pem")
	if got := server(); !strings.Contains(got, "/nonexistent/") {
		t.Errorf("KILN_TLS_* not used: %s", got)
	}
}

func TestUsageExits2(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"bogus"}, {"jobs"}, {"jobs", "bogus"}, {"jobs", "show"}, {"jobs", "show", "1", "2"},
		{"build", "--release", "r"}, {"run", "--labels", "os=linux"}, {"serve", "--nope"}, {"rebuild"}, {"release", "seal"}, {"certs"},
		// A priority is an int32 on the wire: a larger one is refused, not wrapped.
		{"run", "--priority", "9999999999", "--", "true"}, {"build", "--priority", "-2147483649", "--release", "r", "--target", "t", "--package", "p", "--source", "/x@main"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if cmdline.Code(err, -1) != cmdline.ExitUsage {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	for args, want := range map[string]string{"--help": "jobs list", "serve --help": "$KILN_COORDINATOR_STATE_DIR",
		"build --help": "--source=REPO@REV", "jobs logs --help": "--follow"} {
		var out bytes.Buffer
		if err := run(context.Background(), strings.Fields(args), &out, io.Discard); err != nil || !strings.Contains(out.String(), want) {
			t.Errorf("%s: %v\n%s", args, err, out.String())
		}
	}
}

func TestManPageUpToDate(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"man"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	cmdlinetest.ManPage(t, out.Bytes(), "../docs/man/coordinator.1")
}

// --check-config reads and checks the configuration as a start does and
// starts nothing: ok for the example, exit 2 naming a bad value.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--check-config", "--config", "../examples/coordinator.yaml"}, &out, io.Discard); err != nil ||
		out.String() != "configuration ok: ../examples/coordinator.yaml\n" {
		t.Fatalf("example config: %v, output %q", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("heartbeat interval: -1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"serve", "--check-config", "--config", bad}, &out, io.Discard)
	if cmdline.Code(err, -1) != cmdline.ExitUsage || out.Len() != 0 {
		t.Fatalf("bad config: %v (want exit 2), output %q", err, out.String())
	}
}

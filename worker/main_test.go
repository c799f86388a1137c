package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/cmdline/cmdlinetest"
	"github.com/kiln-build/kiln/worker/runcmd"
)

// Every setting comes from the defaults, then the file, then KILN_WORKER_*,
// then the flags.
func TestSettingsLayering(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(file, []byte("dev: true\nname: file\nslots: 2\nwork_dir: /file\nlabels: {site: dc1}\nshutdown_grace: 1m\nbuildroot:\n  namespace: file-ns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(args ...string) runcmd.Config {
		t.Helper()
		g := &grammar{}
		var got runcmd.Config
		g.Run.loaded = func(c runcmd.Config) error { got = c; return nil }
		var out bytes.Buffer
		if err := program.Run(context.Background(), g, append([]string{"run"}, args...), &out, &out); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out.String())
		}
		return got
	}
	got := load("--config", file)
	if got.Name != "file" || got.Slots != 2 || got.WorkDir != "/file" || got.Coordinator != "127.0.0.1:7420" || got.ShutdownGrace != time.Minute ||
		got.Buildroot.Namespace != "file-ns" || !maps.Equal(got.Labels, map[string]string{"site": "dc1"}) {
		t.Errorf("file over defaults: %+v", got)
	}
	t.Setenv("KILN_WORKER_CONFIG", file)
	t.Setenv("KILN_WORKER_NAME", "env")
	t.Setenv("KILN_WORKER_SLOTS", "3")
	t.Setenv("KILN_WORKER_LABELS", "os=linux")
	t.Setenv("KILN_WORKER_SHUTDOWN_GRACE", "2m")
	t.Setenv("KILN_WORKER_BUILDROOT_NAMESPACE", "env-ns")
	got = load()
	if got.Name != "env" || got.Slots != 3 || got.WorkDir != "/file" || got.ShutdownGrace != 2*time.Minute || got.Buildroot.Namespace != "env-ns" ||
		!maps.Equal(got.Labels, map[string]string{"site": "dc1", "os": "linux"}) {
		t.Errorf("env over file: %+v", got)
	}
	got = load("--name", "flag", "--slots", "4", "--labels", "arch=amd64", "--work-dir", "/flag")
	if got.Name != "flag" || got.Slots != 4 || got.WorkDir != "/flag" || got.ShutdownGrace != 2*time.Minute ||
		!maps.Equal(got.Labels, map[string]string{"site": "dc1", "arch": "amd64"}) {
		t.Errorf("flags over env: %+v", got)
	}
}

func TestUsageExits2(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"bogus"}, {"run", "--nope"}, {"run", "--dev", "--labels", "novalue"},
		{"chroot"}, {"chroot", "create", "--json", "bookworm"}, {"chroot", "remove", "--all", "x"}, {"chroot", "refresh", "a", "b"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if cmdline.Code(err, -1) != cmdline.ExitUsage {
			t.Errorf("%v: %v, want exit 2", args, err)
		}
	}
	for args, want := range map[string]string{"run --help": "$KILN_WORKER_WORK_DIR", "chroot list --help": "print the list as JSON", "chroot --help": "refresh"} {
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
	cmdlinetest.ManPage(t, out.Bytes(), "../docs/man/worker.1")
}

// --check-config reads and checks the configuration as a start does and
// starts nothing: ok for the example, exit 2 naming a bad value.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"run", "--check-config", "--config", "../examples/worker.yaml"}, &out, io.Discard); err != nil ||
		out.String() != "configuration ok: ../examples/worker.yaml\n" {
		t.Fatalf("example config: %v, output %q", err, out.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("slots: -3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"run", "--check-config", "--config", bad}, &out, io.Discard)
	if cmdline.Code(err, -1) != cmdline.ExitUsage || out.Len() != 0 {
		t.Fatalf("bad config: %v (want exit 2), output %q", err, out.String())
	}
}

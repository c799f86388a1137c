package chrootcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/chrootcmd"
	"github.com/kiln-build/kiln/worker/executor"
)

func TestRunBadArguments(t *testing.T) {
	t.Parallel()
	cfg := buildroot.Config{
		// Never dialled: the arguments are checked first.
		Address: "/nonexistent/containerd.sock",
		Targets: []buildroot.Target{{Name: "bookworm", Suite: "bookworm", Mirror: "http://deb.debian.org/debian"}},
	}
	tests := []struct {
		name    string
		cfg     *buildroot.Config
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "all without targets", cfg: &buildroot.Config{Address: "/nonexistent/containerd.sock"}, args: []string{"create", "--all"}, wantErr: "no targets in the worker config"},
		{name: "no command", args: nil, wantErr: "give a command"},
		{name: "unknown command", args: []string{"destroy", "bookworm"}, wantErr: `unknown command "destroy"`},
		{name: "missing target", args: []string{"create"}, wantErr: "give exactly one target (configured: bookworm)"},
		{name: "two targets", args: []string{"refresh", "a", "b"}, wantErr: "give exactly one target"},
		{name: "unconfigured target", args: []string{"create", "trusty"}, wantErr: `target "trusty" is not configured (configured: bookworm)`},
		{name: "list takes no target", args: []string{"list", "bookworm"}, wantErr: `unexpected argument "bookworm"`},
		{name: "unknown flag", args: []string{"create", "--fast", "bookworm"}, wantErr: "flag provided but not defined: -fast"},
		{name: "json only for list", args: []string{"create", "--json", "bookworm"}, wantErr: "flag provided but not defined: -json"},
		{name: "all and a target", args: []string{"refresh", "--all", "bookworm"}, wantErr: "give a target or --all, not both"},
		{name: "all only for create and refresh", args: []string{"remove", "--all"}, wantErr: "flag provided but not defined: -all"},
		{name: "help", args: []string{"--help"}, wantOut: "usage: worker chroot COMMAND"},
		{name: "list help", args: []string{"list", "--help"}, wantOut: "print the list as JSON"},
		{name: "containerd down", args: []string{"list"}, wantErr: "containerd socket /nonexistent/containerd.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			c := cfg
			if tt.cfg != nil {
				c = *tt.cfg
			}
			err := chrootcmd.Run(context.Background(), c, hclog.NewNullLogger(), tt.args, &stdout, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q, want it to contain %q", stdout.String(), tt.wantOut)
			}
		})
	}
}

func TestListAndRemove(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget)
	want, err := b.Target(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	list := func() map[string]chrootcmd.Entry {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), []string{"list", "--json"}, &stdout, &stderr); err != nil {
			t.Fatalf("list: %v\n%s", err, stderr.String())
		}
		var entries []chrootcmd.Entry
		if err := json.Unmarshal(stdout.Bytes(), &entries); err != nil {
			t.Fatalf("list --json output: %v\n%s", err, stdout.String())
		}
		m := map[string]chrootcmd.Entry{}
		for _, e := range entries {
			m[e.Name] = e
		}
		return m
	}
	got := list()
	if e := got[target]; e.Digest != want.Digest || e.Format != "deb" || !e.Configured {
		t.Errorf("list entry %+v, want digest %s, format deb", e, want.Digest)
	}
	if e, ok := got[buildroottest.RPMTarget]; !ok || e.Digest != "" {
		t.Errorf("rpm target without chroot: %+v, %v; want listed without digest", e, ok)
	}

	var stdout bytes.Buffer
	if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), []string{"list"}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), want.Digest) || !strings.Contains(stdout.String(), "no chroot: worker chroot create "+buildroottest.RPMTarget) {
		t.Errorf("list table:\n%s", stdout.String())
	}

	// Every target of a config with only the deb target has a chroot.
	debOnly := cfg
	debOnly.Targets = []buildroot.Target{cfg.Targets[0]}
	stdout.Reset()
	if err := chrootcmd.Run(context.Background(), debOnly, hclog.NewNullLogger(), []string{"create", "--all"}, &stdout, &stdout); err != nil || !strings.Contains(stdout.String(), "nothing to create") {
		t.Errorf("create --all with every chroot made: %v\n%s", err, stdout.String())
	}

	// A build is running while the command removes its chroot: the
	// command must neither clean up the worker's namespace nor take the
	// chroot from under the build.
	sb, err := b.Open(context.Background(), target, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close(context.Background())
	stdout.Reset()
	if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), []string{"remove", target}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if e := list()[target]; e.Digest != "" {
		t.Errorf("after remove: %+v, want no chroot", e)
	}
	var log bytes.Buffer
	if res, err := sb.Exec(context.Background(), executor.Step{Argv: []string{"dpkg", "--version"}}, &log); err != nil || res.Failed() {
		t.Errorf("build after its chroot was removed: %+v, %v\n%s", res, err, log.String())
	}
	if err := sb.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left, err := b.Targets(context.Background()); err != nil || len(left) != 0 {
		t.Errorf("after the build closed: targets %+v, %v; want none", left, err)
	}
	err = chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), []string{"remove", target}, &stdout, &stdout)
	if err == nil || !strings.Contains(err.Error(), "chroot missing") {
		t.Errorf("second remove: err = %v, want chroot missing", err)
	}
}

package chrootcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/cmdline"
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
		req     chrootcmd.Request
		wantErr string
		wantOut string
	}{
		{name: "all without targets", cfg: &buildroot.Config{Address: "/nonexistent/containerd.sock"}, req: chrootcmd.Request{Command: "create", All: true}, wantErr: "no targets in the worker config"},
		{name: "unknown command", req: chrootcmd.Request{Command: "destroy", Target: "bookworm"}, wantErr: `unknown command "destroy"`},
		{name: "missing target", req: chrootcmd.Request{Command: "create"}, wantErr: "give exactly one target (configured: bookworm)"},
		{name: "unconfigured target", req: chrootcmd.Request{Command: "create", Target: "trusty"}, wantErr: `target "trusty" is not configured (configured: bookworm)`},
		{name: "list takes no target", req: chrootcmd.Request{Command: "list", Target: "bookworm"}, wantErr: `unexpected argument "bookworm"`},
		{name: "all and a target", req: chrootcmd.Request{Command: "refresh", All: true, Target: "bookworm"}, wantErr: "give a target or --all, not both"},
		{name: "containerd down", req: chrootcmd.Request{Command: "list"}, wantErr: "containerd socket /nonexistent/containerd.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			c := cfg
			if tt.cfg != nil {
				c = *tt.cfg
			}
			err := chrootcmd.Run(context.Background(), c, hclog.NewNullLogger(), tt.req, &stdout, &stderr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			// Bad arguments are bad usage (exit 2); containerd down is not.
			if code := cmdline.Code(err, 3); tt.wantErr != "" && (code == cmdline.ExitUsage) != (tt.name != "containerd down") {
				t.Errorf("exit %d for %q", code, err)
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
		if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), chrootcmd.Request{Command: "list", JSON: true}, &stdout, &stderr); err != nil {
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
	if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), chrootcmd.Request{Command: "list"}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), want.Digest) || !strings.Contains(stdout.String(), "no chroot: worker chroot create "+buildroottest.RPMTarget) {
		t.Errorf("list table:\n%s", stdout.String())
	}

	// Every target of a config with only the deb target has a chroot.
	debOnly := cfg
	debOnly.Targets = []buildroot.Target{cfg.Targets[0]}
	stdout.Reset()
	if err := chrootcmd.Run(context.Background(), debOnly, hclog.NewNullLogger(), chrootcmd.Request{Command: "create", All: true}, &stdout, &stdout); err != nil || !strings.Contains(stdout.String(), "nothing to create") {
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
	if err := chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), chrootcmd.Request{Command: "remove", Target: target}, &stdout, &stdout); err != nil {
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
	err = chrootcmd.Run(context.Background(), cfg, hclog.NewNullLogger(), chrootcmd.Request{Command: "remove", Target: target}, &stdout, &stdout)
	if err == nil || !strings.Contains(err.Error(), "chroot missing") {
		t.Errorf("second remove: err = %v, want chroot missing", err)
	}
}

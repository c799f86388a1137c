package push

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The order is what keeps a mirror consistent: package files without
// deletion, then the indexes, then deletion.
func TestPushOrder(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mos-9.0")
	os.MkdirAll(filepath.Join(dir, "pool"), 0o755)
	os.MkdirAll(filepath.Join(dir, ".dists", "1"), 0o755)
	os.Symlink(".dists/1", filepath.Join(dir, "dists"))
	var calls [][]string
	run := func(_ context.Context, args []string, _ io.Writer) error {
		calls = append(calls, args)
		return nil
	}
	if err := Repository(context.Background(), run, dir, Mirror{Name: "m1", Dest: "rsync://127.0.0.1/mirror/"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 {
		t.Fatalf("%d rsync calls: %v", len(calls), calls)
	}
	join := func(a []string) string { return strings.Join(a, " ") }
	if c := join(calls[0]); strings.Contains(c, "--delete") || !strings.Contains(c, "--exclude=/dists") || !strings.HasSuffix(c, dir+"/ rsync://127.0.0.1/mirror/mos-9.0/") {
		t.Errorf("first pass: %s", c)
	}
	if c := join(calls[1]); !strings.Contains(c, "--delay-updates") || !strings.Contains(c, "--copy-links") || !strings.HasSuffix(c, dir+"/dists/ rsync://127.0.0.1/mirror/mos-9.0/dists/") {
		t.Errorf("index pass: %s", c)
	}
	if c := join(calls[2]); !strings.Contains(c, "--delete") || !strings.Contains(c, "--exclude=/dists") {
		t.Errorf("removal pass: %s", c)
	}
	// A failure stops before the next pass.
	calls = nil
	boom := errors.New("connection refused")
	err := Repository(context.Background(), func(context.Context, []string, io.Writer) error { calls = append(calls, nil); return boom }, dir, Mirror{Name: "m1", Dest: "/x"}, io.Discard)
	if !errors.Is(err, boom) || len(calls) != 1 || !strings.Contains(err.Error(), "package files") {
		t.Fatalf("failure: %v after %d calls", err, len(calls))
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, m := range []Mirror{{Name: "a"}, {Dest: "/x"}, {Name: "a", Dest: "--rsh=evil"}, {Name: "a", Dest: "/x\n"}} {
		if m.Validate() == nil {
			t.Errorf("%+v accepted", m)
		}
	}
	if err := Repository(context.Background(), RunRsync, filepath.Join(t.TempDir(), "missing"), Mirror{Name: "a", Dest: "/x"}, io.Discard); err == nil || !strings.Contains(err.Error(), "publish it first") {
		t.Errorf("missing dir: %v", err)
	}
}

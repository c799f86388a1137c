package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/rpm"
)

const testRPM = "../../publisher/rpm/testdata/kiln-hello-1.2.3-4.noarch.rpm"

func copyTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRepodataThenUpdate drives the benchmark commands on one package and
// checks that update adds the second one from the kept metadata.
func TestRepodataThenUpdate(t *testing.T) {
	dir := t.TempDir()
	copyTo(t, testRPM, filepath.Join(dir, "a", "one.rpm"))
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"repodata", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 packages") {
		t.Errorf("repodata printed %q", out.String())
	}
	copyTo(t, testRPM, filepath.Join(dir, "b", "two.rpm"))
	out.Reset()
	if err := run(ctx, []string{"update", dir, filepath.Join(dir, "b", "two.rpm")}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "2 packages") {
		t.Errorf("update printed %q", out.String())
	}
	md, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("primary")) {
		t.Errorf("repomd.xml lacks primary:\n%s", md)
	}
	kept, err := os.ReadFile(filepath.Join(dir, keptName))
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []*rpm.Package
	if err := json.Unmarshal(kept, &pkgs); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 || pkgs[0].Location != "a/one.rpm" || pkgs[1].Location != "b/two.rpm" {
		t.Errorf("kept metadata: %d packages, want a/one.rpm and b/two.rpm", len(pkgs))
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{nil, {"repodata"}, {"frobnicate", "x"}, {"sign", "k", "s"}} {
		if err := run(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

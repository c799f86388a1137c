package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/cmdline/cmdlinetest"
	"github.com/kiln-build/kiln/publisher/cli"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// Every setting comes from the defaults, then the file, then
// KILN_PUBLISHER_*, then the flags: key show prints the fingerprint of the
// key each layer names, list the repositories of the root it names.
func TestSettingsLayering(t *testing.T) {
	fromFile, fromEnv, fromFlag := signtest.Generate(t, "ed25519", ""), signtest.Generate(t, "ed25519", ""), signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	roots := map[string]string{}
	for _, layer := range []string{"file", "env", "flag"} {
		roots[layer] = filepath.Join(dir, layer)
		if out, err := run(t, "include", "--root", roots[layer], "--repo", "from-"+layer, "--format", "deb", "--suite", "bookworm",
			writeDeb(t, dir, "hello", "1.0", "amd64")); err != nil {
			t.Fatalf("include: %v\n%s", err, out)
		}
	}
	file := filepath.Join(dir, "publisher.yaml")
	if err := os.WriteFile(file, []byte("root: "+roots["file"]+"\nsigning:\n  key_file: "+fromFile.KeyFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(layer string, key *signtest.OperatorKey, args ...string) {
		t.Helper()
		out, err := run(t, append([]string{"key", "show"}, args...)...)
		if err != nil || !strings.Contains(out, key.Fingerprint) {
			t.Errorf("%s: key show %v: %v, want the fingerprint %s\n%s", layer, args, err, key.Fingerprint, out)
		}
		out, err = run(t, append([]string{"list"}, args...)...)
		if err != nil || !strings.Contains(out, "from-"+layer) {
			t.Errorf("%s: list %v: %v, want the repository of that root\n%s", layer, args, err, out)
		}
	}
	check("file", fromFile, "--config", file)
	t.Setenv("KILN_PUBLISHER_CONFIG", file)
	t.Setenv("KILN_PUBLISHER_ROOT", roots["env"])
	t.Setenv("KILN_PUBLISHER_KEY", fromEnv.KeyFile)
	check("env", fromEnv)
	check("flag", fromFlag, "--root", roots["flag"], "--key", fromFlag.KeyFile)
}

func TestManPageUpToDate(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"man"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	cmdlinetest.ManPage(t, out.Bytes(), "../../docs/man/publisher.1")
}

package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/publisher/cli"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := cli.Run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), err
}

func writeDeb(t *testing.T, dir, name, version, arch string) string {
	t.Helper()
	b, err := debtest.Build(debtest.Control(name, version, arch), debtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+"_"+version+"_"+arch+".deb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQuickStartWorkflow(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "pw")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile, "--passphrase-file", key.PassphraseFile}
	d1 := writeDeb(t, dir, "hello", "1.0", "amd64")
	d2 := writeDeb(t, dir, "hello", "1.1", "amd64")

	if out, err := run(t, append([]string{"include", "--repo", "r"}, append(base, d1)...)...); err == nil || !strings.Contains(out+err.Error(), "--format") {
		t.Fatalf("include into a missing repository without --format: %v %s", err, out)
	}
	out, err := run(t, append([]string{"include", "--repo", "r", "--format", "deb", "--suite", "bookworm", d1, d2}, base...)...)
	if err != nil {
		t.Fatalf("include: %v\n%s", err, out)
	}
	if !strings.Contains(out, "added hello 1.0 amd64") {
		t.Errorf("include output: %s", out)
	}
	if out, err := run(t, append([]string{"publish", "--repo", "r"}, base...)...); err != nil {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	in := filepath.Join(root, "public", "r", "dists", "bookworm", "InRelease")
	if out, ok := signtest.Gpgv(t, key.Keyring, in); !ok {
		t.Fatalf("gpgv rejects the published InRelease:\n%s", out)
	}
	out, err = run(t, append([]string{"list", "--repo", "r", "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list []repo.Entry
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v %s", err, out)
	}
	out, err = run(t, append([]string{"list"}, base...)...)
	if err != nil || !regexp.MustCompile(`(?m)^r\s+deb\s+bookworm\s+2$`).MatchString(out) {
		t.Fatalf("list without --repo: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"list", "--json"}, base...)...)
	var repos []struct {
		Name     string `json:"name"`
		Packages int    `json:"packages"`
	}
	if err != nil || json.Unmarshal([]byte(out), &repos) != nil || len(repos) != 1 || repos[0].Name != "r" || repos[0].Packages != 2 {
		t.Fatalf("list --json without --repo: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"snapshot", "create", "--repo", "r", "rc1"}, base...)...); err != nil {
		t.Fatalf("snapshot create: %v %s", err, out)
	}
	if out, err := run(t, append([]string{"remove", "--repo", "r", "hello=1.0"}, base...)...); err != nil || !strings.Contains(out, "removed hello 1.0") {
		t.Fatalf("remove: %v %s", err, out)
	}
	if out, err := run(t, append([]string{"snapshot", "publish", "rc1"}, base...)...); err != nil {
		t.Fatalf("snapshot publish: %v %s", err, out)
	}
	snapIn := filepath.Join(root, "public", "snapshots", "rc1", "dists", "bookworm", "InRelease")
	if out, ok := signtest.Gpgv(t, key.Keyring, snapIn); !ok {
		t.Fatalf("gpgv rejects the snapshot's InRelease:\n%s", out)
	}
	out, err = run(t, append([]string{"snapshot", "list", "--json"}, base...)...)
	if err != nil || !strings.Contains(out, `"name": "rc1"`) {
		t.Fatalf("snapshot list: %v %s", err, out)
	}
	out, err = run(t, "key", "show", "--key", key.KeyFile, "--passphrase-file", key.PassphraseFile)
	if err != nil || !strings.Contains(out, "Fingerprint: "+key.Fingerprint) || !strings.Contains(out, "BEGIN PGP PUBLIC KEY BLOCK") {
		t.Fatalf("key show: %v\n%s", err, out)
	}
	if strings.Contains(out, "PRIVATE") {
		t.Fatal("key show printed private key material")
	}
	out, err = run(t, "key", "show", "--json", "--key", key.KeyFile, "--passphrase-file", key.PassphraseFile)
	var shown struct {
		Fingerprint string `json:"fingerprint"`
		PublicKey   string `json:"public_key"`
	}
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.Fingerprint != key.Fingerprint || !strings.Contains(shown.PublicKey, "BEGIN PGP PUBLIC KEY BLOCK") || strings.Contains(out, "PRIVATE") {
		t.Fatalf("key show --json: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"snapshot", "create", "--json", "--repo", "r", "rc2"}, base...)...)
	var snap repo.Snapshot
	if err != nil || json.Unmarshal([]byte(out), &snap) != nil || snap.Name != "rc2" || snap.Packages != 1 {
		t.Fatalf("snapshot create --json: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"remove", "--json", "--repo", "r", "hello"}, base...)...)
	var removed struct {
		Removed []repo.Entry `json:"removed"`
	}
	if err != nil || json.Unmarshal([]byte(out), &removed) != nil || len(removed.Removed) != 1 || removed.Removed[0].Version != "1.1" {
		t.Fatalf("remove --json: %v\n%s", err, out)
	}
}

func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "publisher.yaml")
	os.WriteFile(cfg, []byte("root: "+filepath.Join(dir, "root")+"\nrepositories:\n  - name: mos\n    format: deb\n    suite: trusty\n"), 0o644)
	d := writeDeb(t, dir, "hello", "1.0", "amd64")
	if out, err := run(t, "include", "--config", cfg, "--repo", "mos", d); err != nil {
		t.Fatalf("include with config: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("root: /x\nrepositorys: []\n"), 0o644)
	if _, err := run(t, "list", "--config", bad, "--repo", "mos"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("unknown key: %v", err)
	}
	badRepo := filepath.Join(dir, "badrepo.yaml")
	os.WriteFile(badRepo, []byte("root: /x\nrepositories:\n  - name: a\n    format: deb\n"), 0o644)
	if _, err := run(t, "list", "--config", badRepo, "--repo", "a"); err == nil || !strings.Contains(err.Error(), "need a suite") {
		t.Errorf("repository without suite: %v", err)
	}
}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"include", "--help"}, {"remove", "--help"}, {"publish", "--help"}, {"list", "--help"},
		{"snapshot", "--help"}, {"snapshot", "create", "--help"}, {"snapshot", "list", "--help"}, {"snapshot", "publish", "--help"},
		{"key", "--help"}, {"key", "show", "--help"}, {"serve", "--help"}} {
		out, err := run(t, args...)
		if err != nil || !strings.Contains(out, "Usage: publisher") && !strings.Contains(out, "Usage:\n  publisher") {
			t.Errorf("%v: err %v, output %q", args, err, out)
		}
	}
	for _, args := range [][]string{{}, {"bogus"}, {"include"}, {"publish", "--root", "/tmp/x"}, {"snapshot"}, {"list", "--nope"}} {
		_, err := run(t, args...)
		if !isUsage(err) {
			t.Errorf("%v: error %v is not a usage error", args, err)
		}
	}
}

func TestServeRefusesPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	_, err := run(t, "serve", "--root", t.TempDir(), "--dev", "--listen", "0.0.0.0:0")
	if err == nil || !strings.Contains(err.Error(), "loopback only") {
		t.Fatalf("serve --dev on 0.0.0.0: %v", err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	var cfg cli.Config
	if err := config.Load("../../examples/publisher.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Repositories) != 2 || cfg.Serve.Listen == "" || cfg.Repositories[0].ValidFor != 168*time.Hour {
		t.Fatalf("example config decoded as %+v", cfg)
	}
	for _, r := range cfg.Repositories {
		if err := r.WithDefaults().Validate(); err != nil {
			t.Error(err)
		}
	}
	if err := cfg.Serve.Validate(); err != nil {
		t.Error(err)
	}
}

func TestGCRemovesTheFilesOfRemovedPackages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	d1, d2 := writeDeb(t, dir, "hello", "1.0", "amd64"), writeDeb(t, dir, "hello", "1.1", "amd64")
	if out, err := run(t, "include", "--root", root, "--repo", "r", "--format", "deb", "--suite", "bookworm", d1, d2); err != nil {
		t.Fatalf("include: %v\n%s", err, out)
	}
	if out, err := run(t, "remove", "--root", root, "--repo", "r", "hello=1.0"); err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	count := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(root, "objects"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return err
		})
		return n
	}
	out, err := run(t, "gc", "--root", root, "--json")
	if err != nil || !strings.Contains(out, `"removed": 0`) || !strings.Contains(out, `"young": 1`) || count() != 2 {
		t.Fatalf("gc within the default grace period removed something: %v %d objects left\n%s", err, count(), out)
	}
	out, err = run(t, "gc", "--root", root, "--grace", "0s", "--dry-run")
	if err != nil || !strings.Contains(out, "would remove 1 unreferenced files") || count() != 2 {
		t.Fatalf("gc --dry-run: %v, %d objects left\n%s", err, count(), out)
	}
	out, err = run(t, "gc", "--root", root, "--grace", "0s")
	if err != nil || !strings.Contains(out, "removed 1 unreferenced files") || count() != 1 {
		t.Fatalf("gc: %v, %d objects left\n%s", err, count(), out)
	}
	if out, err := run(t, "gc", "--root", root, "--grace", "-1h"); !isUsage(err) {
		t.Errorf("gc --grace -1h: %v\n%s", err, out)
	}
}

// isUsage reports whether err is bad usage (exit 2).
func isUsage(err error) bool { return cmdline.Code(err, 0) == cmdline.ExitUsage }

// A directory argument includes the package files in it (not below it),
// so that many packages need not be command-line arguments; one without
// any is refused naming it.
func TestIncludeDirectory(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "pw")
	dir := t.TempDir()
	base := []string{"--root", filepath.Join(dir, "root"), "--key", key.KeyFile, "--passphrase-file", key.PassphraseFile}
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(filepath.Join(debs, "below"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeDeb(t, debs, "alpha", "1.0", "amd64")
	writeDeb(t, debs, "beta", "2.0", "all")
	writeDeb(t, filepath.Join(debs, "below"), "gamma", "3.0", "all")
	if err := os.WriteFile(filepath.Join(debs, "README"), []byte("not a package"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, append([]string{"include", "--repo", "r", "--format", "deb", "--suite", "bookworm", debs}, base...)...)
	if err != nil {
		t.Fatalf("include %s: %v\n%s", debs, err, out)
	}
	if !strings.Contains(out, "added alpha 1.0 amd64") || !strings.Contains(out, "added beta 2.0 all") || strings.Contains(out, "gamma") {
		t.Errorf("include of a directory: %s", out)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, append([]string{"include", "--repo", "r", empty}, base...)...); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("include of a directory without packages: %v %s", err, out)
	}
}

// serve --check-config reads and checks the configuration and starts
// nothing: it neither opens the store nor reads the signing key.
func TestServeCheckConfig(t *testing.T) {
	t.Parallel()
	out, err := run(t, "serve", "--check-config", "--config", "../../examples/publisher.yaml")
	if err != nil || out != "configuration ok: ../../examples/publisher.yaml\n" {
		t.Fatalf("example config: %v, output %q", err, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("root: "+filepath.Join(dir, "root")+"\nrepositories:\n  - name: a\n    format: deb\n"), 0o644)
	if out, err := run(t, "serve", "--check-config", "--config", bad); err == nil || !strings.Contains(err.Error(), "need a suite") {
		t.Errorf("repository without suite: %v, output %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "root")); !os.IsNotExist(err) {
		t.Errorf("check-config touched the root: %v", err)
	}
}

package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// The operator sees and manages a repository's base with --base.
func TestBaseCommands(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	own := writeDeb(t, dir, "hello", "1.0", "amd64")
	zlib := writeDeb(t, dir, "zlib1g", "1.2.13", "amd64")
	if out, err := run(t, append([]string{"include", "--repo", "r", "--format", "deb", "--suite", "bookworm", own}, base...)...); err != nil {
		t.Fatalf("include: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"list", "--repo", "r", "--base"}, base...)...); err == nil || !strings.Contains(out+err.Error(), "no base yet") {
		t.Fatalf("list --base before the base exists: %v\n%s", err, out)
	}
	out, err := run(t, append([]string{"include", "--base", "--publish", "--repo", "r", zlib}, base...)...)
	if err != nil || !strings.Contains(out, "added zlib1g 1.2.13 amd64") || !strings.Contains(out, "published r-base") {
		t.Fatalf("include --base --publish: %v\n%s", err, out)
	}
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(root, "public", "r-base", "dists", "bookworm", "InRelease")); !ok {
		t.Fatalf("gpgv rejects the base's InRelease:\n%s", out)
	}
	out, err = run(t, append([]string{"list", "--repo", "r", "--base", "--json"}, base...)...)
	var list []repo.Entry
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "zlib1g" {
		t.Fatalf("list --base --json: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"list", "--repo", "r", "--json"}, base...)...)
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "hello" {
		t.Fatalf("list --json of the repository: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"list", "--json"}, base...)...)
	var repos []struct {
		Name     string `json:"name"`
		BaseOf   string `json:"base_of"`
		Packages int    `json:"packages"`
	}
	if err != nil || json.Unmarshal([]byte(out), &repos) != nil || len(repos) != 2 || repos[1].Name != "r-base" || repos[1].BaseOf != "r" || repos[1].Packages != 1 || repos[0].BaseOf != "" {
		t.Fatalf("list --json: %v\n%s", err, out)
	}

	// Other bytes under the stored name, version and architecture.
	data, err := debtest.Build(debtest.Control("zlib1g", "1.2.13", "amd64"), debtest.Options{Payload: []byte("other")})
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other", "zlib1g_1.2.13_amd64.deb")
	os.MkdirAll(filepath.Dir(other), 0o755)
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, append([]string{"include", "--base", "--repo", "r", other}, base...)...)
	want := "base package zlib1g 1.2.13 amd64: stored sha256 " + fileSHA(t, zlib) + ", offered sha256 " + fileSHA(t, other)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("include --base of other bytes: %v\n%s\nwant %q", err, out, want)
	}

	out, err = run(t, append([]string{"snapshot", "create", "--repo", "r", "ga"}, base...)...)
	if err != nil || !strings.Contains(out, "snapshot ga-base of its base r-base") {
		t.Fatalf("snapshot create: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"snapshot", "publish", "ga"}, base...)...)
	if err != nil || !strings.Contains(out, "published snapshot ga-base of the base (1 packages)") {
		t.Fatalf("snapshot publish: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"remove", "--base", "--repo", "r", "zlib1g"}, base...)...); err != nil || !strings.Contains(out, "removed zlib1g 1.2.13 amd64") {
		t.Fatalf("remove --base: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"publish", "--base", "--repo", "r"}, base...)...); err != nil || !strings.Contains(out, "published r-base (0 packages)") {
		t.Fatalf("publish --base: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"list", "--base"}, base...)...); !isUsage(err) {
		t.Errorf("list --base without --repo: %v\n%s", err, out)
	}
	if out, err := run(t, append([]string{"include", "--base", "--repo", "r-base", zlib}, base...)...); err == nil || !strings.Contains(err.Error(), "has no base of its own") {
		t.Errorf("include --base into a base: %v\n%s", err, out)
	}
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

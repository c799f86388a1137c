package repo_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/sign"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// dpkgDebWithFile builds a real package with dpkg-deb that installs one
// file, /usr/bin/<file>.
func dpkgDebWithFile(t *testing.T, dir, name, file string) repo.Input {
	t.Helper()
	tool := testenv.Tool(t, "dpkg-deb")
	root := filepath.Join(dir, "build-"+name)
	for _, d := range []string{"DEBIAN", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := fmt.Sprintf("Package: %s\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Kiln Tests <tests@kiln.invalid>\nSection: utils\nPriority: optional\nDescription: Kiln test package %s\n for the Contents tests.\n", name, name)
	if err := os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin", file), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := name + "_1.0-1_amd64.deb"
	out := filepath.Join(dir, base)
	if b, err := exec.Command(tool, "-Zxz", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return repo.Input{Name: base, Path: out}
}

// TestAptFileReadsContents publishes a repository with contents: true,
// serves it over loopback HTTP and lets apt-file, with an apt
// configuration of its own, fetch the Contents index through apt and find
// a file of a package in it; a package added later is found after the next
// publish (the file lists kept for the first are reused).
func TestAptFileReadsContents(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "apt-get")
	testenv.Tool(t, "apt-file")
	testenv.Root(t) // apt-get update locks its (temporary) lists as root
	ctx := context.Background()
	dir := t.TempDir()
	key := signtest.Generate(t, "ed25519", "")
	signer, err := sign.Load(ctx, sign.Config{KeyFile: key.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	st, err := repo.Open(ctx, repo.Options{Root: filepath.Join(dir, "root")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateRepo(ctx, repo.Config{Name: "c", Format: repo.FormatDeb, Suite: "stable", Contents: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Include(ctx, "c", []repo.Input{dpkgDebWithFile(t, dir, "kiln-probe", "kiln-contents-probe")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, "c", signer); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(st.PublicDir("c"))))
	defer srv.Close()

	// apt-file's own apt configuration (the IndexTargets that fetch
	// Contents-<arch>), as the apt-file package installs it.
	atf, err := os.ReadFile("/etc/apt/apt.conf.d/50apt-file.conf")
	testenv.Require(t, err == nil, "apt-file's /etc/apt/apt.conf.d/50apt-file.conf")
	run := aptClient(t, key.Keyring, srv.URL, map[string][]byte{"50apt-file.conf": atf})
	update := func() {
		t.Helper()
		out, err := run("apt-get", "update", "-o", "APT::Update::Error-Mode=any")
		if err != nil || strings.Contains(out, "W:") || strings.Contains(out, "E:") || strings.Contains(out, "Err:") {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		if !strings.Contains(out, "Contents (deb)") {
			t.Fatalf("apt-get update fetched no Contents index:\n%s", out)
		}
	}
	search := func(file, want string) {
		t.Helper()
		out, err := run("apt-file", "search", file)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("apt-file search %s: %v\n%q, want %q", file, err, out, want)
		}
	}
	update()
	search("kiln-contents-probe", "kiln-probe: /usr/bin/kiln-contents-probe")

	if _, err := st.Include(ctx, "c", []repo.Input{dpkgDebWithFile(t, dir, "kiln-second", "kiln-contents-second")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, "c", signer); err != nil {
		t.Fatal(err)
	}
	update()
	search("kiln-contents-second", "kiln-second: /usr/bin/kiln-contents-second")
	search("kiln-contents-probe", "kiln-probe: /usr/bin/kiln-contents-probe")
}

// TestCollectObjectsForgetsFileLists: the file lists kept for the Contents
// indexes go with the packages that no repository or snapshot references.
func TestCollectObjectsForgetsFileLists(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.store.CreateRepo(ctx, repo.Config{Name: "test", Format: repo.FormatDeb, Suite: "stable", Codename: "bookworm", Contents: true}); err != nil {
		t.Fatal(err)
	}
	a, b := f.deb("alpha", "1.0", "amd64", "a"), f.deb("beta", "1.0", "amd64", "b")
	if _, err := f.store.Include(ctx, "test", []repo.Input{a, b}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "test", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if got := f.read("dists/stable/main/Contents-amd64"); !strings.Contains(got, "misc/alpha,misc/beta") {
		t.Fatalf("Contents-amd64:\n%s", got)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(f.store.Root(), "state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lists := func() []string {
		t.Helper()
		rs, err := db.QueryContext(ctx, `SELECT sha256 FROM deb_files ORDER BY sha256`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []string
		for rs.Next() {
			var s string
			if err := rs.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	if got := lists(); len(got) != 2 {
		t.Fatalf("kept file lists after publish: %q, want alpha's and beta's", got)
	}
	if _, err := f.store.Remove(ctx, "test", []repo.RemoveSpec{{Name: "alpha"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CollectObjects(ctx, 0, false); err != nil {
		t.Fatal(err)
	}
	if got, want := lists(), []string{fileSHA(t, b.Path)}; !slices.Equal(got, want) {
		t.Fatalf("kept file lists after gc: %q, want beta's only %q", got, want)
	}
}

// aptClient returns a runner of apt commands (apt-get, apt-cache,
// apt-file) with an apt configuration and state of their own in a
// temporary directory, for amd64, whose sources.list is the suite stable,
// component main at url, signed by keyring. parts are further files
// of its apt.conf.d.
func aptClient(t *testing.T, keyring, url string, parts map[string][]byte) func(args ...string) (string, error) {
	t.Helper()
	apt := t.TempDir()
	for _, d := range []string{"etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d", "state/lists/partial", "cache/archives/partial", "log"} {
		if err := os.MkdirAll(filepath.Join(apt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(apt, "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sources := fmt.Sprintf("deb [signed-by=%s] %s stable main\n", keyring, url)
	if err := os.WriteFile(filepath.Join(apt, "etc/sources.list"), []byte(sources), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, data := range parts {
		if err := os.WriteFile(filepath.Join(apt, "etc/apt.conf.d", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`Dir::Etc "%[1]s/etc";
Dir::Etc::main "%[1]s/etc/apt.conf";
Dir::Etc::parts "%[1]s/etc/apt.conf.d";
Dir::Etc::sourcelist "%[1]s/etc/sources.list";
Dir::Etc::sourceparts "%[1]s/etc/sources.list.d";
Dir::Etc::preferences "%[1]s/etc/preferences";
Dir::Etc::preferencesparts "%[1]s/etc/preferences.d";
Dir::Etc::trusted "%[1]s/etc/trusted.gpg";
Dir::Etc::trustedparts "%[1]s/etc/trusted.gpg.d";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Proxy "DIRECT";
`, apt)
	cfg := filepath.Join(apt, "apt.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "APT_CONFIG="+cfg, "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	return run
}

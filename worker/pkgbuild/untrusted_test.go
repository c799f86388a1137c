package pkgbuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
)

// worldDir makes a directory any user may enter (as the worker's TMPDIR
// is) and removes it when t ends.
func worldDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kiln-untrusted-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// outsideDir is a directory of root's, open for anyone to read and enter,
// that the untrusted tools must not write into.
func outsideDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(worldDir(t), "outside")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestUntrustedCmdWritesOnlyItsScratch(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "setpriv")
	// The scratch directory's parent is closed to others, as a test's or
	// a worker's state directory may be.
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := os.Mkdir(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := giveToUntrusted(scratch); err != nil {
		t.Fatal(err)
	}
	outside := outsideDir(t)
	cmd := untrustedCmd(context.Background(), scratch, []string{"PATH=/usr/bin:/bin", "OUT=" + outside}, "sh", "-c",
		`id -u; id -G; echo ok > inside; echo pwned > "$OUT/pwned" || echo refused; sudo -n true 2>/dev/null && echo root again; exit 0`)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	id := strconv.Itoa(untrustedID)
	if lines := strings.Split(string(out), "\n"); len(lines) < 2 || lines[0] != id || lines[1] != id {
		t.Errorf("ran as uid/groups %q, want %s/%s", out, id, id)
	}
	if _, err := os.Stat(filepath.Join(scratch, "inside")); err != nil {
		t.Errorf("could not write its scratch directory: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(outside, "pwned")); err == nil || !strings.Contains(string(out), "refused") {
		t.Errorf("wrote outside its scratch directory:\n%s", out)
	}
	if strings.Contains(string(out), "root again") {
		t.Errorf("got root back:\n%s", out)
	}
}

// patch runs as the unprivileged user (what it creates is that user's),
// and a patch that reverts through a symlink the tree holds cannot write
// where the symlink points.
func TestRevertPatchRunsUnprivileged(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "patch")
	testenv.Tool(t, "setpriv")
	outside := outsideDir(t)
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(tree, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := giveToUntrusted(tree); err != nil {
		t.Fatal(err)
	}
	// Reverted, a patch that removed a file creates it.
	patches := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(patches, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, err := runPatch(context.Background(), tree, write("remove.patch", "--- a/NEWS\n+++ /dev/null\n@@ -1 +0,0 @@\n-news\n"), 1); err != nil {
		t.Fatalf("revert: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(tree, "NEWS"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != untrustedID {
		t.Errorf("patch ran as uid %d, want %d", uid, untrustedID)
	}
	out, err := runPatch(context.Background(), tree, write("hostile.patch", "--- a/escape/pwned\n+++ /dev/null\n@@ -1 +0,0 @@\n-pwned\n"), 1)
	if _, serr := os.Stat(filepath.Join(outside, "pwned")); serr == nil {
		t.Fatalf("patch wrote through the symlink (err %v):\n%s", err, out)
	}
	if err == nil {
		t.Errorf("the hostile patch reverted cleanly:\n%s", out)
	}
}

// pristine-tar runs as the unprivileged user in a copy of the objects it
// needs: a pristine-tar that did what a hostile delta might make it do
// writes nothing outside its scratch directory, and a symlink in place
// of the tarball is refused.
func TestPristineTarRunsUnprivileged(t *testing.T) {
	testenv.Root(t)
	testenv.Tool(t, "setpriv")
	testenv.Tool(t, "git")
	cacheDir := t.TempDir()
	repo := filepath.Join(cacheDir, "cached.git")
	os.MkdirAll(repo, 0o755)
	runGit(t, repo, "init", "--quiet", "--initial-branch=upstream")
	os.WriteFile(filepath.Join(repo, "README"), []byte("upstream\n"), 0o644)
	runGit(t, repo, "add", "README")
	runGit(t, repo, "commit", "--quiet", "-m", "upstream")
	tree := strings.TrimSpace(runGit(t, repo, "rev-parse", "HEAD^{tree}"))
	runGit(t, repo, "checkout", "--quiet", "--orphan", "pristine-tar")
	runGit(t, repo, "rm", "--quiet", "-r", "--cached", ".")
	os.Remove(filepath.Join(repo, "README"))
	os.WriteFile(filepath.Join(repo, "x_1.orig.tar.gz.delta"), []byte("delta"), 0o644)
	os.WriteFile(filepath.Join(repo, "x_1.orig.tar.gz.id"), []byte(tree+"\n"), 0o644)
	runGit(t, repo, "add", ".")
	runGit(t, repo, "commit", "--quiet", "-m", "pristine-tar data")

	outside := outsideDir(t)
	// A pristine-tar that tries what code run by a hostile delta could
	// try, and then writes the uid it ran as and the upstream tree it
	// was given as the tarball, or puts a symlink there.
	bin := worldDir(t)
	script := `#!/bin/sh
echo pwned > "` + outside + `/pwned"
echo pwned > "` + repo + `/pwned"
if [ -e "` + bin + `/symlink" ]; then ln -s /etc/shadow "$2"; exit 0; fi
{ id -u; git cat-file -p "$(git show pristine-tar:x_1.orig.tar.gz.id)"; } > "$2"
`
	if err := os.WriteFile(filepath.Join(bin, "pristine-tar"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	g := newGitCache(cacheDir, 0, []string{"file"})

	out := t.TempDir()
	ok, err := g.PristineTar(context.Background(), repo, "x_1.orig.tar.gz", out)
	if err != nil || !ok {
		t.Fatalf("PristineTar: %v %v", ok, err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "x_1.orig.tar.gz"))
	if !strings.HasPrefix(string(got), strconv.Itoa(untrustedID)+"\n") || !strings.Contains(string(got), "README") {
		t.Errorf("pristine-tar ran as or saw %q, want uid %d and the upstream tree", got, untrustedID)
	}
	for _, p := range []string{filepath.Join(outside, "pwned"), filepath.Join(repo, "pwned")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("pristine-tar wrote %s", p)
		}
	}

	os.WriteFile(filepath.Join(bin, "symlink"), nil, 0o644)
	out = t.TempDir()
	ok, err = g.PristineTar(context.Background(), repo, "x_1.orig.tar.gz", out)
	if _, bad := isBadSource(err); ok || !bad || !strings.Contains(err.Error(), "not a regular file") && !strings.Contains(err.Error(), "no regular file") {
		t.Errorf("a symlink for the tarball: %v %v", ok, err)
	}
	if _, err := os.Lstat(filepath.Join(out, "x_1.orig.tar.gz")); err == nil {
		t.Errorf("the symlink was copied out")
	}
}

// The real pristine-tar, unprivileged, regenerates Debian's hello
// 2.10 upstream tarball byte for byte from the repository gbp
// import-dsc --pristine-tar makes.
func TestPristineTarCheckoutUnprivileged(t *testing.T) {
	testenv.Root(t)
	for _, tool := range []string{"gbp", "pristine-tar", "setpriv"} {
		testenv.Tool(t, tool)
	}
	const origSum = "31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"
	dl := t.TempDir()
	dsc := debianFile(t, dl, "hello_2.10-3.dsc", "75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790")
	debianFile(t, dl, "hello_2.10.orig.tar.gz", origSum)
	debianFile(t, dl, "hello_2.10.orig.tar.gz.asc", "4ea69de913428a4034d30dcdcb34ab84f5c4a76acf9040f3091f0d3fac411b60")
	debianFile(t, dl, "hello_2.10-3.debian.tar.xz", "60ee7a466808301fbaa7fea2490b5e7a6d86f598956fb3e79c71b3295dc1f249")
	cacheDir := t.TempDir()
	repo := filepath.Join(cacheDir, "hello")
	os.MkdirAll(repo, 0o755)
	runGit(t, repo, "init", "--quiet", "--initial-branch=master")
	gbp := exec.Command("gbp", "import-dsc", "--pristine-tar", "--no-sign-tags", dsc)
	gbp.Dir = repo
	gbp.Env = append(os.Environ(), "HOME="+repo, "GIT_AUTHOR_NAME=Kiln Tests", "GIT_AUTHOR_EMAIL=tests@kiln.invalid",
		"GIT_COMMITTER_NAME=Kiln Tests", "GIT_COMMITTER_EMAIL=tests@kiln.invalid", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := gbp.CombinedOutput(); err != nil {
		t.Fatalf("gbp import-dsc: %v\n%s", err, out)
	}
	out := t.TempDir()
	ok, err := newGitCache(cacheDir, 0, []string{"file"}).PristineTar(context.Background(), repo, "hello_2.10.orig.tar.gz", out)
	if err != nil || !ok {
		t.Fatalf("PristineTar: %v %v", ok, err)
	}
	data, err := os.ReadFile(filepath.Join(out, "hello_2.10.orig.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(data); hex.EncodeToString(h[:]) != origSum {
		t.Errorf("hello_2.10.orig.tar.gz has sha256 %x, Debian's has %s", h, origSum)
	}
}

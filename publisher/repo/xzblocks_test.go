package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/sign"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// xzBlocks checks the published Packages.xz of repository name with
// xz(1): one stream that decompresses, as one stream, to Packages; it
// returns the number of blocks.
func (f *fixture) xzBlocks(name string) int {
	f.t.Helper()
	xzTool := testenv.Tool(f.t, "xz")
	dir := filepath.Join(f.store.PublicDir(name), "dists/stable/main/binary-amd64")
	text, err := os.ReadFile(filepath.Join(dir, "Packages"))
	if err != nil {
		f.t.Fatal(err)
	}
	packed := filepath.Join(dir, "Packages.xz")
	if out, err := exec.Command(xzTool, "--test", "--single-stream", packed).CombinedOutput(); err != nil {
		f.t.Fatalf("xz --test --single-stream %s: %v %s", packed, err, out)
	}
	got, err := exec.Command(xzTool, "--decompress", "--stdout", "--single-stream", packed).Output()
	if err != nil || !bytes.Equal(got, text) {
		f.t.Fatalf("Packages.xz decompresses to %d bytes (%v), Packages has %d", len(got), err, len(text))
	}
	out, err := exec.Command(xzTool, "--list", "--robot", packed).Output()
	if err != nil {
		f.t.Fatalf("xz --list %s: %v", packed, err)
	}
	for line := range strings.Lines(string(out)) {
		if fl := strings.Fields(line); len(fl) > 2 && fl[0] == "totals" && fl[1] == "1" {
			n, err := strconv.Atoi(fl[2])
			if err == nil {
				return n
			}
		}
	}
	f.t.Fatalf("xz --list %s: not one stream:\n%s", packed, out)
	return 0
}

// cachedBlocks returns the files of the publisher's xz block cache by
// name, with their content.
func (f *fixture) cachedBlocks() map[string][]byte {
	f.t.Helper()
	files, err := filepath.Glob(filepath.Join(f.store.Root(), "xzblocks/blocks/*/*"))
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range files {
		if out[p], err = os.ReadFile(p); err != nil {
			f.t.Fatal(err)
		}
	}
	return out
}

// includeMany includes n packages name000 … into repository r.
func (f *fixture) includeMany(r, prefix string, n int) {
	f.t.Helper()
	var in []repo.Input
	for i := range n {
		in = append(in, f.deb(fmt.Sprintf("%s%03d", prefix, i), "1.0", "amd64", "x"))
	}
	if _, err := f.store.Include(context.Background(), r, in, nil, nil); err != nil {
		f.t.Fatal(err)
	}
}

// TestXZBlocksRepublishCompressesOnlyChangedBlocks: with xz_block_size the
// Packages.xz is one stream of many blocks; adding one package compresses
// one or two blocks again and keeps the rest; a cached block whose bytes
// changed is compressed again; without the setting it is one block, and
// turning the setting off empties the cache.
func TestXZBlocksRepublishCompressesOnlyChangedBlocks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if err := f.store.CreateRepo(ctx, repo.Config{Name: "xb", Format: repo.FormatDeb, Suite: "stable", XZBlockSize: 1024}); err != nil {
		t.Fatal(err)
	}
	f.includeMany("xb", "pkg", 300)
	f.includeMany("test", "pkg", 300)
	for _, r := range []string{"xb", "test"} {
		if _, err := f.store.Publish(ctx, r, fakeSigner{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.xzBlocks("test"); n != 1 {
		t.Fatalf("without xz_block_size Packages.xz has %d blocks, want 1", n)
	}
	blocks := f.xzBlocks("xb")
	first := f.cachedBlocks()
	if blocks < 8 || len(first) != blocks {
		t.Fatalf("Packages.xz has %d blocks, the cache %d; want the same, at least 8", blocks, len(first))
	}

	if _, err := f.store.Include(ctx, "xb", []repo.Input{f.deb("pkg150a", "1.0", "amd64", "x")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "xb", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	blocks = f.xzBlocks("xb")
	second := f.cachedBlocks()
	var added []string
	for p := range second {
		if first[p] == nil {
			added = append(added, p)
		}
	}
	if len(added) < 1 || len(added) > 2 {
		t.Fatalf("adding one package to %d compressed %d blocks, want 1 or 2", len(first), len(added))
	}
	if len(second) != blocks {
		t.Fatalf("the cache keeps %d blocks, the live Packages.xz has %d", len(second), blocks)
	}

	// A block changed on disk is not used, and is compressed again to
	// its former bytes.
	var victim string
	for p := range second {
		if !slices.Contains(added, p) {
			victim = p
			break
		}
	}
	bad := slices.Clone(second[victim])
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(victim, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "xb", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	f.xzBlocks("xb")
	if got, err := os.ReadFile(victim); err != nil || !bytes.Equal(got, second[victim]) {
		t.Fatalf("the corrupted cached block %s was not compressed again (%v)", victim, err)
	}

	// Without the setting again: one block, and the cache is emptied.
	if err := f.store.CreateRepo(ctx, repo.Config{Name: "xb", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "xb", fakeSigner{}); err != nil {
		t.Fatal(err)
	}
	if n, left := f.xzBlocks("xb"), len(f.cachedBlocks()); n != 1 || left != 0 {
		t.Fatalf("xz_block_size removed: Packages.xz has %d blocks, the cache keeps %d, want 1 and 0", n, left)
	}
}

// TestAptReadsXZBlockIndexes publishes a repository with xz_block_size and
// only .xz indexes, serves it over loopback HTTP refusing every
// uncompressed Packages, and has apt-get update read it, then again after
// one package was added.
func TestAptReadsXZBlockIndexes(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "apt-get")
	testenv.Root(t) // apt-get update locks its (temporary) lists as root
	ctx := context.Background()
	f := newFixture(t)
	key := signtest.Generate(t, "ed25519", "")
	signer, err := sign.Load(ctx, sign.Config{KeyFile: key.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.CreateRepo(ctx, repo.Config{Name: "xb", Format: repo.FormatDeb, Suite: "stable", Compressions: []string{"xz"}, XZBlockSize: 1024}); err != nil {
		t.Fatal(err)
	}
	f.includeMany("xb", "pkg", 120)
	if _, err := f.store.Publish(ctx, "xb", signer); err != nil {
		t.Fatal(err)
	}
	if n := f.xzBlocks("xb"); n < 4 {
		t.Fatalf("Packages.xz has %d blocks, want several", n)
	}
	var mu sync.Mutex
	var fetched []string
	files := http.FileServer(http.Dir(f.store.PublicDir("xb")))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.URL.Path)
		mu.Unlock()
		// Files of a publish within the second of the last have the
		// same Last-Modified: always send them whole.
		r.Header.Del("If-Modified-Since")
		if strings.HasSuffix(r.URL.Path, "/Packages") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	run := aptClient(t, key.Keyring, srv.URL, map[string][]byte{"10no-by-hash": []byte("Acquire::By-Hash \"no\";\n")})
	check := func(n int) {
		t.Helper()
		out, err := run("apt-get", "update", "-o", "APT::Update::Error-Mode=any")
		if err != nil || strings.Contains(out, "W:") || strings.Contains(out, "E:") || strings.Contains(out, "Err:") {
			t.Fatalf("apt-get update: %v\n%s", err, out)
		}
		mu.Lock()
		got := slices.Contains(fetched, "/dists/stable/main/binary-amd64/Packages.xz")
		fetched = nil
		mu.Unlock()
		if !got {
			t.Fatalf("apt-get update did not fetch Packages.xz:\n%s", out)
		}
		out, err = run("apt-cache", "pkgnames", "pkg")
		if err != nil {
			t.Fatalf("apt-cache pkgnames: %v\n%s", err, out)
		}
		if names := strings.Fields(out); len(names) != n {
			t.Fatalf("apt reads %d packages, want %d:\n%s", len(names), n, out)
		}
	}
	check(120)
	if _, err := f.store.Include(ctx, "xb", []repo.Input{f.deb("pkg060a", "1.0", "amd64", "x")}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Publish(ctx, "xb", signer); err != nil {
		t.Fatal(err)
	}
	check(121)
}

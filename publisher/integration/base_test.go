package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/testenv"
	publisherv1 "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// upstreamDeb builds a package shaped like one of Debian's: an epoch, a
// Source field naming its source and version, Multi-Arch. payload makes two
// builds of the same version differ.
func upstreamDeb(t *testing.T, dir, name, source, version, arch, payload string) string {
	t.Helper()
	tool := testenv.Tool(t, "dpkg-deb")
	root := filepath.Join(dir, "build-"+name+"-"+payload)
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr/share/kiln-test"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "usr/share/kiln-test", name), []byte(payload+"\n"), 0o644))
	multiArch := "same"
	if arch == "all" {
		multiArch = "foreign"
	}
	control := fmt.Sprintf("Package: %s\nSource: %s (%s)\nVersion: %s\nArchitecture: %s\nMulti-Arch: %s\nMaintainer: Kiln Tests <tests@kiln.invalid>\nSection: libs\nPriority: optional\nDescription: upstream-like package %s\n built by the publisher's integration tests.\n", name, source, version, version, arch, multiArch, name)
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(control), 0o644))
	_, noEpoch, _ := strings.Cut(version, ":")
	out := filepath.Join(dir, payload, name+"_"+noEpoch+"_"+arch+".deb")
	must(t, os.MkdirAll(filepath.Dir(out), 0o755))
	if b, err := exec.Command(tool, "-Zxz", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	must(t, err)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestBaseRepositoryServedToApt: "publisher serve" puts a build's base
// packages, sent with base set, into the repository's base, which apt
// accepts with signed-by the operator's key beside the repository itself
// and serves the base packages from, byte for byte; the mirror receives
// it too. Other bytes under a stored base package's name, version and
// architecture are refused naming both digests.
func TestBaseRepositoryServedToApt(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "rsa3072", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	mirror := filepath.Join(dir, "mirror")
	must(t, os.MkdirAll(mirror, 0o755))
	cfg := filepath.Join(dir, "publisher.yaml")
	must(t, os.WriteFile(cfg, fmt.Appendf(nil, `root: %s
signing:
  key_file: %s
repositories:
  - name: rel
    format: deb
    suite: bookworm
    architectures: [amd64]
serve:
  listen: 127.0.0.1:0
  dev: true
mirrors:
  - name: local
    dest: %s
`, root, key.KeyFile, mirror), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, publisherBin(t), "serve", "--config", cfg)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	found := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if a, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
				found <- a
			}
		}
	}()
	var addr string
	select {
	case addr = <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("publisher serve did not report its address")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	c := publisherv1.NewPublisherServiceClient(conn)
	upload := func(path string) *publisherv1.FileRef {
		t.Helper()
		data, err := os.ReadFile(path)
		must(t, err)
		sum := sha256.Sum256(data)
		ref := &publisherv1.FileRef{Name: filepath.Base(path), Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}
		st, err := c.UploadArtifact(ctx)
		must(t, err)
		must(t, st.Send(&publisherv1.UploadArtifactRequest{Header: ref}))
		_ = st.Send(&publisherv1.UploadArtifactRequest{Chunk: data}) // io.EOF when the publisher has it
		if _, err := st.CloseAndRecv(); err != nil {
			t.Fatalf("upload %s: %v", path, err)
		}
		return ref
	}

	zlib := upstreamDeb(t, dir, "zlib1g", "zlib", "1:1.2.13.dfsg-1", "amd64", "upstream")
	common := upstreamDeb(t, dir, "kiln-data-common", "kiln-data", "2.0-1", "all", "upstream")
	own := dpkgDeb(t, dir, "kiln-built", "1.0-1~rel+1", "amd64", "misc", false)
	res, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-1-base", Repository: "rel", Base: true,
		Files: []*publisherv1.FileRef{upload(zlib), upload(common)}})
	if err != nil || res.GetRepository() != "rel-base" || res.GetAdded() != 2 {
		t.Fatalf("publish the base: %v, %v", res, err)
	}
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-1", Repository: "rel", Files: []*publisherv1.FileRef{upload(own)}}); err != nil {
		t.Fatalf("publish the packages: %v", err)
	}

	public := filepath.Join(root, "public")
	if err := verifyTree(t, key.Keyring, filepath.Join(public, "rel-base"), "bookworm"); err != nil {
		t.Fatalf("the base: %v", err)
	}
	rel, err := os.ReadFile(filepath.Join(public, "rel-base", "dists", "bookworm", "Release"))
	must(t, err)
	if !strings.Contains(string(rel), "Label: Kiln base\n") || !strings.Contains(string(rel), "Description: Base of rel: ") {
		t.Errorf("the base's Release does not say whose base it is:\n%s", rel)
	}
	url := serve(t, public)
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%[2]s] %[1]s/rel bookworm main\ndeb [signed-by=%[2]s] %[1]s/rel-base bookworm main\n", url, key.Keyring))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update refused the repository or its base:\n%s", out)
	}
	out, err := apt.run("apt-cache", "policy", "zlib1g")
	if err != nil || !strings.Contains(out, "1:1.2.13.dfsg-1") || !strings.Contains(out, "/rel-base bookworm/main amd64") {
		t.Fatalf("apt-cache policy zlib1g: %v\n%s", err, out)
	}
	for _, p := range []string{zlib, common} {
		name := strings.SplitN(filepath.Base(p), "_", 2)[0]
		if out, err := apt.run("apt-get", "download", name); err != nil {
			t.Fatalf("apt-get download %s from the base: %v\n%s", name, err, out)
		}
		// apt names a download with its epoch (1%3a1.2.13...).
		got, _ := filepath.Glob(filepath.Join(apt.dir, "download", name+"_*.deb"))
		if len(got) != 1 {
			t.Fatalf("apt-get download %s left %v", name, got)
		}
		if sha256File(t, got[0]) != sha256File(t, p) {
			t.Errorf("%s from the base differs from the bytes the build used", filepath.Base(p))
		}
	}

	// The base alone, as a sealed release's buildroot would use it.
	alone := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s/rel-base bookworm main\n", key.Keyring, url))
	if out, ok := alone.update(); !ok {
		t.Fatalf("apt-get update refused the base on its own:\n%s", out)
	}

	// Other bytes under the name, version and architecture of zlib1g.
	rebuilt := upstreamDeb(t, dir, "zlib1g", "zlib", "1:1.2.13.dfsg-1", "amd64", "other-mirror")
	_, err = c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-2-base", Repository: "rel", Base: true, Files: []*publisherv1.FileRef{upload(rebuilt)}})
	want := "base package zlib1g 1:1.2.13.dfsg-1 amd64: stored sha256 " + sha256File(t, zlib) + ", offered sha256 " + sha256File(t, rebuilt)
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), want) {
		t.Fatalf("other bytes for a base package: %v\nwant AlreadyExists with %q", err, want)
	}

	// serve pushed the base to the mirror like the repository.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(mirror, "rel-base", "dists", "bookworm", "InRelease")); err == nil {
			break
		}
		if i > 400 {
			t.Fatal("serve did not push the base to the mirror")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := verifyTree(t, key.Keyring, filepath.Join(mirror, "rel-base"), "bookworm"); err != nil {
		t.Fatalf("the mirror's copy of the base: %v", err)
	}
}

// TestRPMBaseRepositoryJudgedByDnf: an rpm repository's base is signed
// like the repository (packages and repomd.xml) and dnf reads it with
// gpgcheck and repo_gpgcheck on; other bytes under a stored NEVRA are
// refused naming both digests.
func TestRPMBaseRepositoryJudgedByDnf(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "rpmbuild")
	key := signtest.Generate(t, "rsa3072", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	base := []string{"--root", root, "--key", key.KeyFile}
	own := rpmbuild(t, dir, "kiln-rpm-own", "1.0")
	dep := rpmbuild(t, dir, "kiln-rpm-upstream", "3.1")
	publisher(t, append([]string{"include", "--publish", "--repo", "el", "--format", "rpm", own}, base...)...)
	out := publisher(t, append([]string{"include", "--base", "--publish", "--repo", "el", dep}, base...)...)
	if !strings.Contains(out, "published el-base (1 packages)") {
		t.Errorf("include --base --publish: %s", out)
	}
	public := filepath.Join(root, "public", "el-base")
	pubKey := publicKey(t, key.KeyFile, filepath.Join(dir, "public.asc"))
	if out, ok := signtest.Gpgv(t, key.Keyring, filepath.Join(public, "repodata", "repomd.xml.asc"), filepath.Join(public, "repodata", "repomd.xml")); !ok {
		t.Fatalf("gpgv rejects the base's repomd.xml.asc:\n%s", out)
	}
	if out, ok := checksig(t, pubKey, filepath.Join(public, "Packages", "k", "kiln-rpm-upstream-3.1-1.noarch.rpm")); !ok {
		t.Fatalf("rpmkeys rejects the base's rpm:\n%s", out)
	}
	if out, err := dnfDownload(t, serve(t, public), pubKey, "kiln-rpm-upstream"); err != nil {
		t.Fatalf("dnf refused the base repository: %v\n%s", err, out)
	}
	// The release's own package is not in its base.
	if out, err := dnfDownload(t, serve(t, public), pubKey, "kiln-rpm-own"); err == nil {
		t.Fatalf("dnf found the release's own package in its base:\n%s", out)
	}

	// The base's own signed file, offered back (a build of the sealed
	// release installed it from the base) is the package it holds.
	published := filepath.Join(dir, "from-base.rpm")
	if data, err := os.ReadFile(filepath.Join(public, "Packages", "k", "kiln-rpm-upstream-3.1-1.noarch.rpm")); err != nil || os.WriteFile(published, data, 0o644) != nil {
		t.Fatalf("copy the base's rpm: %v", err)
	}
	if sha256File(t, published) == sha256File(t, dep) {
		t.Fatal("the base's rpm is the upload itself: the publisher did not sign it")
	}
	if out := publisher(t, append([]string{"include", "--base", "--repo", "el", published}, base...)...); !strings.Contains(out, "already present kiln-rpm-upstream 3.1-1 noarch") {
		t.Errorf("the base's own file offered back: %s", out)
	}

	other := rpmbuild(t, filepath.Join(dir, "b"), "kiln-rpm-upstream", "3.1")
	b, err := exec.Command(publisherBin(t), append([]string{"include", "--base", "--repo", "el", other}, base...)...).CombinedOutput()
	want := "base package kiln-rpm-upstream 3.1-1 noarch: stored sha256 " + sha256File(t, dep) + ", offered sha256 " + sha256File(t, other)
	if err == nil || !strings.Contains(string(b), want) {
		t.Errorf("other bytes under a stored NEVRA in the base: %v\n%s\nwant %q", err, b, want)
	}
}

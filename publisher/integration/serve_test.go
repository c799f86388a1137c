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
	"google.golang.org/grpc/credentials/insecure"

	publisherv1 "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
	"github.com/kiln-build/kiln/publisher/sign/signtest"
)

// TestServeProcess runs "publisher serve" as its own process and publishes
// through its gRPC API what apt then accepts.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	key := signtest.Generate(t, "ed25519", "")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "publisher.yaml")
	must(t, os.WriteFile(cfg, fmt.Appendf(nil, `root: %s
signing:
  key_file: %s
repositories:
  - name: rel
    format: deb
    suite: bookworm
serve:
  listen: 127.0.0.1:0
  dev: true
  max_upload_bytes: 1048576
mirrors:
  - name: local
    dest: %s
`, root, key.KeyFile, filepath.Join(dir, "mirror")), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "mirror"), 0o755))
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
	lines := bufio.NewScanner(stdout)
	addr := ""
	deadline := time.After(20 * time.Second)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if a, ok := strings.CutPrefix(lines.Text(), "listening on "); ok {
				found <- a
				return
			}
		}
	}()
	select {
	case addr = <-found:
	case <-deadline:
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
		must(t, st.Send(&publisherv1.UploadArtifactRequest{Chunk: data}))
		if _, err := st.CloseAndRecv(); err != nil {
			t.Fatalf("upload %s: %v", path, err)
		}
		return ref
	}
	// A binary package and a source package whose tarball travels in the
	// same request.
	deb := upload(dpkgDeb(t, dir, "kiln-served", "2.0-1", "all", "misc", false))
	dsc := dpkgSource(t, dir, "kiln-served", "2.0")
	refs := []*publisherv1.FileRef{deb, upload(dsc), upload(strings.TrimSuffix(dsc, ".dsc") + ".tar.xz")}
	res, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "build-1", Repository: "rel", Files: refs})
	if err != nil || res.GetAdded() != 2 {
		t.Fatalf("publish: %v %v", res, err)
	}
	public := filepath.Join(root, "public", "rel")
	if err := verifyTree(t, key.Keyring, public, "bookworm"); err != nil {
		t.Fatal(err)
	}
	apt := newAptClient(t, fmt.Sprintf("deb [signed-by=%s] %s bookworm main\n", key.Keyring, serve(t, public)))
	if out, ok := apt.update(); !ok {
		t.Fatalf("apt-get update:\n%s", out)
	}
	if out, err := apt.run("apt-get", "download", "kiln-served"); err != nil {
		t.Fatalf("apt-get download: %v\n%s", err, out)
	}
	sources, err := os.ReadFile(filepath.Join(public, "dists", "bookworm", "main", "source", "Sources"))
	must(t, err)
	if !strings.Contains(string(sources), "Package: kiln-served\n") || !strings.Contains(string(sources), "kiln-served_2.0.tar.xz") {
		t.Errorf("Sources lacks the uploaded source package:\n%s", sources)
	}
	// After the publish, serve pushed the repository to the configured
	// mirror; gpgv and the hashes check the mirror's copy.
	mirrored := filepath.Join(dir, "mirror", "rel")
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(mirrored, "dists", "bookworm", "InRelease")); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("serve did not push the published repository to the mirror")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the removal pass may still run
	if err := verifyTree(t, key.Keyring, mirrored, "bookworm"); err != nil {
		t.Fatalf("mirror copy: %v", err)
	}
}

package serve_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/tlsconfig"
	publisherv1 "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/serve"
)

type fakeSigner struct{}

func (fakeSigner) DetachSign(_ context.Context, r io.Reader, _ bool) ([]byte, error) {
	_, err := io.ReadAll(r)
	return []byte("SIG\n"), err
}
func (fakeSigner) ClearSign(_ context.Context, d []byte) ([]byte, error) { return d, nil }

type env struct {
	store *repo.Store
	addr  string
}

func start(t *testing.T, cfg serve.Config) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := repo.Open(context.Background(), repo.Options{Root: filepath.Join(dir, "root")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateRepo(context.Background(), repo.Config{Name: "rel", Format: repo.FormatDeb, Suite: "stable"}); err != nil {
		t.Fatal(err)
	}
	svc := serve.NewService(st, fakeSigner{}, 1<<20, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- serve.Run(ctx, cfg, svc, hclogNull(), func(a net.Addr) { ready <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return &env{store: st, addr: a.String()}
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	return nil
}

func makeCerts(t *testing.T) (dir string, coordinatorPin string) {
	t.Helper()
	dir = t.TempDir()
	if err := tlsconfig.MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"publisher", "coordinator", "worker"} {
		if err := tlsconfig.Issue(dir, n, tlsconfig.Role(n), []string{"127.0.0.1", "localhost"}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "coordinator.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	return dir, serve.CertSHA256(blk.Bytes)
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) publisherv1.PublisherServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return publisherv1.NewPublisherServiceClient(conn)
}

func clientTLS(t *testing.T, dir, name string) credentials.TransportCredentials {
	t.Helper()
	tc, err := tlsconfig.Client(tlsconfig.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(tc)
}

func upload(ctx context.Context, c publisherv1.PublisherServiceClient, ref *publisherv1.FileRef, data []byte) (*publisherv1.UploadArtifactResponse, error) {
	st, err := c.UploadArtifact(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&publisherv1.UploadArtifactRequest{Header: ref}); err != nil {
		return nil, err
	}
	for len(data) > 0 {
		n := min(len(data), 1000)
		if err := st.Send(&publisherv1.UploadArtifactRequest{Chunk: data[:n]}); err != nil {
			break // the server may refuse early; CloseAndRecv reports why
		}
		data = data[n:]
	}
	return st.CloseAndRecv()
}

func ref(name string, data []byte) *publisherv1.FileRef {
	s := sha256.Sum256(data)
	return &publisherv1.FileRef{Name: name, Sha256: hex.EncodeToString(s[:]), Size: int64(len(data))}
}

func TestUploadAndPublishOverPinnedTLS(t *testing.T) {
	t.Parallel()
	certs, pin := makeCerts(t)
	e := start(t, serve.Config{Listen: "127.0.0.1:0", ClientCertSHA256: []string{pin},
		TLS: tlsconfig.Files{Cert: filepath.Join(certs, "publisher.pem"), Key: filepath.Join(certs, "publisher-key.pem"), CA: filepath.Join(certs, "ca.pem")}})
	ctx := context.Background()
	c := dial(t, e.addr, clientTLS(t, certs, "coordinator"))

	pkg, err := debtest.Build(debtest.Control("hello", "1.0", "amd64"), debtest.Options{Payload: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	good := ref("hello_1.0_amd64.deb", pkg)

	// Wrong digest: refused, nothing kept.
	bad := ref("hello_1.0_amd64.deb", pkg)
	bad.Sha256 = strings.Repeat("0", 64)
	if _, err := upload(ctx, c, bad, pkg); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), good.Sha256) {
		t.Errorf("wrong digest: %v", err)
	}
	if e.store.HasObject(bad.Sha256) {
		t.Error("object kept under the wrong digest")
	}
	// Short upload: size mismatch refused.
	if _, err := upload(ctx, c, good, pkg[:len(pkg)-1]); status.Code(err) != codes.InvalidArgument {
		t.Errorf("short upload: %v", err)
	}
	// Over the limit: refused from the header alone.
	huge := &publisherv1.FileRef{Name: "big.deb", Sha256: good.Sha256, Size: 2 << 20}
	if _, err := upload(ctx, c, huge, nil); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "upload limit") {
		t.Errorf("oversized upload: %v", err)
	}
	if _, err := upload(ctx, c, &publisherv1.FileRef{Name: "../x.deb", Sha256: good.Sha256, Size: 1}, nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("traversal name: %v", err)
	}
	if e.store.HasObject(good.Sha256) {
		t.Fatal("refused uploads left the object")
	}
	res, err := upload(ctx, c, good, pkg)
	if err != nil || res.GetExisted() {
		t.Fatalf("upload: %v, existed %v", err, res.GetExisted())
	}
	if res, err := upload(ctx, c, good, pkg); err != nil || !res.GetExisted() {
		t.Fatalf("second upload: %v, existed %v", err, res.GetExisted())
	}

	// Publishing a file never uploaded is refused.
	other := ref("other_1.0_amd64.deb", []byte("nope"))
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "r0", Repository: "rel", Files: []*publisherv1.FileRef{other}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("publish of a missing upload: %v", err)
	}
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "rx", Repository: "nope", Files: []*publisherv1.FileRef{good}}); status.Code(err) != codes.NotFound {
		t.Errorf("publish to an unknown repository: %v", err)
	}
	req := &publisherv1.PublishRequest{RequestId: "build-42", Repository: "rel", Files: []*publisherv1.FileRef{good}}
	pub, err := c.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if pub.GetAdded() != 1 {
		t.Errorf("added = %d, want 1", pub.GetAdded())
	}
	again, err := c.Publish(ctx, req)
	if err != nil || again.GetAdded() != 1 || again.GetLocation() != pub.GetLocation() {
		t.Errorf("repeated request: %v, %v (want the first result again)", again, err)
	}
	// Same files under a new id: no-op, nothing added.
	req.RequestId = "build-43"
	if third, err := c.Publish(ctx, req); err != nil || third.GetAdded() != 0 {
		t.Errorf("same files again: %v, %v", third, err)
	}
	if _, err := os.Stat(filepath.Join(e.store.PublicDir("rel"), "dists/stable/InRelease")); err != nil {
		t.Errorf("not published: %v", err)
	}

	// A client with another certificate from the same CA is refused, and
	// so is one without a certificate.
	w := dial(t, e.addr, clientTLS(t, certs, "worker"))
	if _, err := w.Publish(ctx, &publisherv1.PublishRequest{RequestId: "evil", Repository: "rel"}); err == nil {
		t.Error("unpinned client certificate accepted")
	}
	anon := dial(t, e.addr, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}))
	if _, err := anon.Publish(ctx, &publisherv1.PublishRequest{RequestId: "anon", Repository: "rel"}); err == nil {
		t.Error("client without certificate accepted")
	}
	plain := dial(t, e.addr, insecure.NewCredentials())
	if _, err := plain.Publish(ctx, &publisherv1.PublishRequest{RequestId: "plain", Repository: "rel"}); err == nil {
		t.Error("plaintext client accepted by the TLS server")
	}
}

func TestDevModePlaintextOnLoopback(t *testing.T) {
	t.Parallel()
	e := start(t, serve.Config{Listen: "127.0.0.1:0", Dev: true})
	c := dial(t, e.addr, insecure.NewCredentials())
	if _, err := c.Publish(context.Background(), &publisherv1.PublishRequest{RequestId: "x", Repository: "rel"}); err != nil {
		t.Fatalf("dev publish: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	files := tlsconfig.Files{Cert: "c", Key: "k", CA: "ca"}
	cases := []struct {
		name    string
		cfg     serve.Config
		wantErr string
	}{
		{"dev off loopback", serve.Config{Listen: "0.0.0.0:9000", Dev: true}, "loopback only"},
		{"dev on public ip", serve.Config{Listen: "192.0.2.1:9000", Dev: true}, "loopback only"},
		{"no tls", serve.Config{Listen: "127.0.0.1:9000"}, "TLS needs"},
		{"no pin", serve.Config{Listen: "127.0.0.1:9000", TLS: files}, "pin the coordinator"},
		{"bad pin", serve.Config{Listen: "127.0.0.1:9000", TLS: files, ClientCertSHA256: []string{"abc"}}, `pin "abc"`},
		{"no listen", serve.Config{}, "no listen address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestMetricsAndHealthOverHTTP(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	e := start(t, serve.Config{Listen: "127.0.0.1:0", Dev: true, HTTPListen: httpAddr})
	ctx := context.Background()
	c := dial(t, e.addr, insecure.NewCredentials())
	pkg, err := debtest.Build(debtest.Control("hello", "1.0", "amd64"), debtest.Options{Payload: []byte("metrics")})
	if err != nil {
		t.Fatal(err)
	}
	good := ref("hello_1.0_amd64.deb", pkg)
	bad := ref("hello_1.0_amd64.deb", pkg)
	bad.Sha256 = strings.Repeat("0", 64)
	if _, err := upload(ctx, c, bad, pkg); err == nil {
		t.Fatal("upload with a wrong digest accepted")
	}
	for range 2 {
		if _, err := upload(ctx, c, good, pkg); err != nil {
			t.Fatal(err)
		}
	}
	req := &publisherv1.PublishRequest{RequestId: "m-1", Repository: "rel", Files: []*publisherv1.FileRef{good}}
	for range 2 {
		if _, err := c.Publish(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "m-2", Repository: "no-such-repo", Files: []*publisherv1.FileRef{good}}); err == nil {
		t.Fatal("publish to an unknown repository accepted")
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
	metrics := get("/metrics")
	for _, want := range []string{
		`kiln_publisher_uploads_total{result="refused"} 1`,
		`kiln_publisher_uploads_total{result="stored"} 1`,
		`kiln_publisher_uploads_total{result="existed"} 1`,
		fmt.Sprintf("kiln_publisher_upload_bytes_total %d", len(pkg)),
		`kiln_publisher_publish_requests_total{repository="rel",result="published"} 1`,
		`kiln_publisher_publish_requests_total{repository="rel",result="replayed"} 1`,
		`kiln_publisher_publish_requests_total{repository="unknown",result="failed"} 1`,
		`kiln_publisher_repository_packages{repository="rel"} 1`,
		`kiln_publisher_publish_duration_seconds_count{repository="rel"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want+"\n") && !strings.Contains(metrics, want+" ") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

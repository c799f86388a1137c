package serve_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	publisherv1 "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
	"github.com/kiln-build/kiln/publisher/deb/debtest"
	"github.com/kiln-build/kiln/publisher/serve"
)

// A publish request with base adds its files to the repository's base,
// which is made on first use; other bytes under a stored base package's
// name, version and architecture are refused naming both digests.
func TestPublishToBase(t *testing.T) {
	t.Parallel()
	e := start(t, serve.Config{Listen: "127.0.0.1:0", Dev: true})
	ctx := context.Background()
	c := dial(t, e.addr, insecure.NewCredentials())
	build := func(payload string) ([]byte, *publisherv1.FileRef) {
		t.Helper()
		data, err := debtest.Build(debtest.Control("zlib1g", "1:1.2.13", "amd64"), debtest.Options{Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		return data, ref("zlib1g_1.2.13_amd64.deb", data)
	}
	data, zlib := build("upstream")
	if _, err := upload(ctx, c, zlib, data); err != nil {
		t.Fatal(err)
	}
	req := &publisherv1.PublishRequest{RequestId: "job-1-base", Repository: "rel", Base: true, Files: []*publisherv1.FileRef{zlib}}
	res, err := c.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.GetRepository() != "rel-base" || res.GetAdded() != 1 || res.GetPackages() != 1 || res.GetSize() != int64(len(data)) || res.GetLocation() != e.store.PublicDir("rel-base") {
		t.Fatalf("base publish: %v", res)
	}
	if again, err := c.Publish(ctx, req); err != nil || again.GetRepository() != "rel-base" || again.GetAdded() != 1 {
		t.Errorf("the same request again: %v, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(e.store.PublicDir("rel-base"), "dists/stable/InRelease")); err != nil {
		t.Errorf("the base is not published: %v", err)
	}
	if list, err := e.store.List(ctx, "rel"); err != nil || len(list) != 0 {
		t.Errorf("the repository itself got the base package: %v, %v", list, err)
	}

	other, offered := build("another mirror")
	if _, err := upload(ctx, c, offered, other); err != nil {
		t.Fatal(err)
	}
	_, err = c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-2-base", Repository: "rel", Base: true, Files: []*publisherv1.FileRef{offered}})
	want := "base package zlib1g 1:1.2.13 amd64: stored sha256 " + zlib.GetSha256() + ", offered sha256 " + offered.GetSha256()
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), want) {
		t.Fatalf("other bytes for a base package: %v\nwant AlreadyExists with %q", err, want)
	}
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-3-base", Repository: "rel-base", Base: true, Files: []*publisherv1.FileRef{zlib}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("base of a base: %v", err)
	}
	if _, err := c.Publish(ctx, &publisherv1.PublishRequest{RequestId: "job-4-base", Repository: "nope", Base: true, Files: []*publisherv1.FileRef{zlib}}); status.Code(err) != codes.NotFound {
		t.Errorf("base of an unknown repository: %v", err)
	}
}

package serve

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestServe(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	outside := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dists", "stable"), 0o755)
	os.WriteFile(filepath.Join(root, "dists", "stable", "Release"), []byte("Suite: stable\n"), 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "leak"))
	os.Symlink("dists", filepath.Join(root, "current"))
	srv := httptest.NewServer(New(root, hclog.NewNullLogger()))
	defer srv.Close()
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/dists/stable/Release", 200, "Suite: stable\n"},
		{"/current/stable/Release", 200, "Suite: stable\n"},
		{"/../../etc/passwd", 404, ""},
		{"/leak", 403, ""},
		{"/dists/", 403, ""},
		{"/missing", 404, ""},
	}
	for _, c := range cases {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && string(b) != c.body) {
			t.Errorf("%s: %d %q", c.path, resp.StatusCode, b)
		}
	}
	resp, _ := http.Post(srv.URL+"/x", "text/plain", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

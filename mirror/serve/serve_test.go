package serve

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

func TestInstrumented(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "Release"), []byte("Suite: stable\n"), 0o644)
	files, admin := Instrumented(New(root, hclog.NewNullLogger()))
	fsrv := httptest.NewServer(files)
	defer fsrv.Close()
	asrv := httptest.NewServer(admin)
	defer asrv.Close()
	for _, p := range []string{"/Release", "/Release", "/missing"} {
		resp, err := http.Get(fsrv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get := func(p string) string {
		resp, err := http.Get(asrv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
	m := get("/metrics")
	for _, want := range []string{`kiln_mirror_requests_total{code="200",method="get"} 2`, `kiln_mirror_requests_total{code="404",method="get"} 1`, `kiln_mirror_response_bytes_count 3`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

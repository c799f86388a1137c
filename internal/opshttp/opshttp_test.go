package opshttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMux(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(Mux(reg))
	defer srv.Close()
	for path, want := range map[string]string{"/healthz": "ok\n", "/metrics": "kiln_test_total 3\n"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
	if resp, err := http.Get(srv.URL + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "go_goroutines") {
			t.Error("/metrics lacks the Go runtime's metrics")
		}
	}
}

// A daemon's health checks decide /healthz: any failing one makes it 503
// with the reason.
func TestHealthChecks(t *testing.T) {
	t.Parallel()
	var failing error
	srv := httptest.NewServer(Mux(NewRegistry(), func(context.Context) error { return failing }))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	failing = errors.New("the store cannot write: disk full")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "the store cannot write: disk full") {
		t.Fatalf("unhealthy: %d %q", code, body)
	}
}

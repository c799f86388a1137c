package gerrit

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

func TestWebhook(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	mux := http.NewServeMux()
	mux.Handle("/gerrit/webhook/", h.in.WebhookHandler())
	mux.Handle("/gerrit/webhook", h.in.WebhookHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	event := readEvent(t, "v3-patchset-created.json")
	cases := []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{"no secret", http.MethodPost, "/gerrit/webhook/review", "", event, http.StatusUnauthorized},
		{"wrong secret", http.MethodPost, "/gerrit/webhook/review", "Bearer nope", event, http.StatusUnauthorized},
		{"GET", http.MethodGet, "/gerrit/webhook/review?secret=s3cret", "", "", http.StatusMethodNotAllowed},
		{"malformed", http.MethodPost, "/gerrit/webhook/review", "Bearer s3cret", `{"type":"patchset-created"`, http.StatusBadRequest},
		{"accepted", http.MethodPost, "/gerrit/webhook/review", "Bearer s3cret", event, http.StatusNoContent},
		{"secret in query", http.MethodPost, "/gerrit/webhook/review?secret=s3cret", "", event, http.StatusNoContent},
		{"sole server without name", http.MethodPost, "/gerrit/webhook?secret=s3cret", "", event, http.StatusNoContent},
	}
	for _, tc := range cases {
		req, err := http.NewRequestWithContext(context.Background(), tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	// Several deliveries of one event, and the same event on the stream: one build.
	h.srv.Send(event)
	h.sync()
	if got := h.builds.wait(t, 1, 30*time.Second); len(got) != 1 || got[0].Sources[0].Commit != psRev {
		t.Fatalf("builds = %+v, want one review build", got)
	}
}

func TestWebhookPicksServerByName(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, func(c *Config, _ *gerrittest.Server) {
		second := c.Servers[0]
		second.Name, second.WebhookSecret, second.DisableStream = "second", "other-secret", true
		c.Servers = append(c.Servers, second)
	})
	srv := httptest.NewServer(h.in.WebhookHandler())
	defer srv.Close()
	event := readEvent(t, "v3-patchset-created.json")
	cases := []struct {
		path string
		want int
	}{
		{"/gerrit/webhook/second?secret=other-secret", http.StatusNoContent},
		{"/gerrit/webhook/second?secret=s3cret", http.StatusUnauthorized},
		{"/gerrit/webhook/review?secret=s3cret", http.StatusNoContent},
		{"/gerrit/webhook/other?secret=s3cret", http.StatusNotFound},
	}
	for _, tc := range cases {
		resp, err := srv.Client().Post(srv.URL+tc.path, "application/json", strings.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST %s: status %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	// One build per server: the change is not the same change on both.
	if got := h.builds.wait(t, 2, 30*time.Second); len(got) != 2 {
		t.Fatalf("builds = %+v", got)
	}
}

// TestWebhookRefusesSHA256: events of repositories with SHA-256 object
// ids are refused with a 4xx that says so, not accepted and failed later
// (Gerrit would deliver them again and again).
func TestWebhookRefusesSHA256(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	srv := httptest.NewServer(h.in.WebhookHandler())
	defer srv.Close()
	sha256Rev := strings.Repeat("ab", 32)
	for _, event := range []string{
		patchsetCreated(nginx, "9.0", 900, 1, sha256Rev),
		refUpdated(nginx, "refs/heads/9.0", parentRev, sha256Rev),
	} {
		resp, err := srv.Client().Post(srv.URL+"/gerrit/webhook/review?secret=s3cret", "application/json", strings.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || !strings.Contains(string(body), "SHA-256") {
			t.Errorf("status %d %q, want a 4xx saying SHA-256 is not supported", resp.StatusCode, body)
		}
	}
	// On the stream too: skipped, and the stream goes on.
	h.srv.Send(patchsetCreated(nginx, "9.0", 901, 1, sha256Rev))
	h.srv.Send(patchsetCreated(nginx, "9.0", 902, 1, psRev))
	if got := h.builds.wait(t, 1, 10*time.Second); got[0].Sources[0].Commit != psRev {
		t.Fatalf("builds = %+v", got)
	}
	h.sync()
	if n := len(h.builds.all()); n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

// TestWebhookBodiesCappedInMemory: the bodies of concurrent webhook
// requests share a memory budget; requests beyond it wait for room
// instead of being read, and are all accepted once there is.
func TestWebhookBodiesCappedInMemory(t *testing.T) {
	t.Parallel()
	const size, budget = 3 << 20, 8 << 20
	h := newHarnessWith(t, gerrittest.Options{}, nil, Options{WebhookMemory: budget, WebhookWait: 2 * time.Minute})
	srv := httptest.NewServer(h.in.WebhookHandler())
	defer srv.Close()
	// Well-formed events of exactly size bytes: comments that ask for nothing.
	body := func(i int) []byte {
		ev := commentAdded(nginx, "9.0", 950+i, 1, psRev, "", 1700000000+i)
		pad := strings.Repeat("x", size-len(ev))
		return []byte(strings.Replace(ev, `"comment":""`, `"comment":"`+pad+`"`, 1))
	}
	const n = 4
	writers := make([]*io.PipeWriter, n)
	status := make(chan int, n)
	for i := range n {
		pr, pw := io.Pipe()
		writers[i] = pw
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/gerrit/webhook/review?secret=s3cret", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		go func() {
			resp, err := srv.Client().Do(req)
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
	}
	// Each sends its first MiB and stalls: two fit the budget and are
	// being read, two wait.
	// One goroutine per body writes both parts in order: the rest only
	// after release is closed (two writers on one pipe could race).
	release := make(chan struct{})
	for i := range n {
		b := body(i)
		go func() {
			defer writers[i].Close()
			if _, err := writers[i].Write(b[:1<<20]); err != nil {
				return // the status tells
			}
			<-release
			writers[i].Write(b[1<<20:]) //nolint:errcheck // the status tells
		}()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: in use %v, waits %v", what, h.counter("kiln_gerrit_webhook_body_bytes"), h.counter("kiln_gerrit_webhook_body_waits_total"))
			}
		}
	}
	waitFor("two bodies read, two waiting", func() bool {
		return h.counter("kiln_gerrit_webhook_body_bytes") == 2*size && h.counter("kiln_gerrit_webhook_body_waits_total") == 2
	})
	close(release)
	for range n {
		if s := <-status; s != http.StatusNoContent {
			t.Errorf("status %d, want 204", s)
		}
	}
	if peak := h.in.webhook.Peak(); peak > budget {
		t.Errorf("%d bytes of bodies held at once, budget %d", peak, budget)
	}
	waitFor("all read", func() bool { return h.counter("kiln_gerrit_webhook_body_bytes") == 0 })
}

// TestLoggerNamedOnce: the intake logs under the name it is given (the
// coordinator names it gerrit), without adding gerrit again.
func TestLoggerNamedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, gerrittest.Options{}, nil)
	var out strings.Builder
	var mu sync.Mutex
	logger := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: lockedWriter{&mu, &out}}).Named("gerrit")
	in, err := NewWithOptions(h.cfg, h.st, newFakeBuilds(), logger, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.WebhookHandler())
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/gerrit/webhook/review?secret=s3cret", "application/json", strings.NewReader(`{"type":"patchset-created"`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if got := out.String(); !strings.Contains(got, "coordinator.gerrit: refusing event") {
		t.Errorf("log %q, want the event refused by the logger coordinator.gerrit", got)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

package transport

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/semaphore"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// DefaultWebhookMemory bounds the webhook bodies held at once.
const DefaultWebhookMemory = 64 << 20

// WebhookConfig configures the webhook handler.
type WebhookConfig struct {
	// Secrets are the webhook secrets by server name; servers without
	// one are not reached by the webhook.
	Secrets map[string]string
	// Memory bounds the bytes of bodies held at once (DefaultWebhookMemory
	// when zero); Wait is how long a request waits for room before it is
	// answered 503 (10 s when zero).
	Memory int64
	Wait   time.Duration
	Logger hclog.Logger
	// Metrics: BodyBytes and BodyWaits are used.
	Metrics Metrics
}

// Webhook accepts events POSTed by Gerrit's webhooks plugin. The last
// path segment names the server: the coordinator mounts it at
// /gerrit/webhook/ (point Gerrit at /gerrit/webhook/review) and at
// /gerrit/webhook, which reaches the server when only one has a webhook
// secret. Requests must carry the server's secret as "Authorization:
// Bearer <secret>" or as the query parameter secret. An event is answered
// once it is stored, before it is decided.
type Webhook struct {
	cfg   WebhookConfig
	inbox Inbox
	// bodies is the memory budget of bodies being read and stored.
	bodies *semaphore.Weighted
	held   atomic.Int64
	peak   atomic.Int64
}

// NewWebhook returns the handler of cfg.
func NewWebhook(cfg WebhookConfig, inbox Inbox) *Webhook {
	cfg.Memory = cmp.Or(cfg.Memory, DefaultWebhookMemory)
	cfg.Wait = cmp.Or(cfg.Wait, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Webhook{cfg: cfg, inbox: inbox, bodies: semaphore.NewWeighted(cfg.Memory)}
}

// Peak is the most body bytes held at once so far.
func (wh *Webhook) Peak() int64 { return wh.peak.Load() }

func (wh *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST Gerrit events here", http.StatusMethodNotAllowed)
		return
	}
	name, err := wh.server(r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	got := r.URL.Query().Get("secret")
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = a
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(wh.cfg.Secrets[name])) != 1 {
		wh.cfg.Logger.Warn("webhook request with a wrong secret", "server", name, "remote", r.RemoteAddr)
		http.Error(w, "wrong or missing webhook secret", http.StatusUnauthorized)
		return
	}
	if r.ContentLength > MaxLine {
		http.Error(w, fmt.Sprintf("body of %d bytes: the limit is %d bytes", r.ContentLength, MaxLine), http.StatusRequestEntityTooLarge)
		return
	}
	// The body takes its room in the memory budget before it is read: its
	// length when told, the limit otherwise.
	size := int64(MaxLine)
	if r.ContentLength >= 0 {
		size = max(r.ContentLength, 1)
	}
	if !wh.bodies.TryAcquire(size) {
		if m := wh.cfg.Metrics.BodyWaits; m != nil {
			m.Inc()
		}
		wctx, cancel := context.WithTimeout(r.Context(), wh.cfg.Wait)
		err := wh.bodies.Acquire(wctx, size)
		cancel()
		if err != nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "too many webhook bodies are being stored; try again", http.StatusServiceUnavailable)
			return
		}
	}
	wh.hold(size)
	defer wh.hold(-size)
	defer wh.bodies.Release(size)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, size))
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v (limit %d bytes)", err, size), http.StatusRequestEntityTooLarge)
		return
	}
	// Accepted once stored; the decision comes after the answer.
	if err := wh.inbox.Accept(r.Context(), name, [][]byte{body}, "webhook"); err != nil {
		if errors.Is(err, event.ErrMalformed) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if errors.Is(err, event.ErrUnsupported) {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		wh.cfg.Logger.Error("storing webhook event failed", "server", name, "error", err)
		http.Error(w, "could not store the event; try again", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// hold counts n more bytes of bodies held (n < 0: fewer).
func (wh *Webhook) hold(n int64) {
	if m := wh.cfg.Metrics.BodyBytes; m != nil {
		m.Add(float64(n))
	}
	held := wh.held.Add(n)
	for {
		peak := wh.peak.Load()
		if held <= peak || wh.peak.CompareAndSwap(peak, held) {
			return
		}
	}
}

// server names the server a request is for: the path's last segment, or
// the only server with a secret.
func (wh *Webhook) server(path string) (string, error) {
	last := path[strings.LastIndex(path, "/")+1:]
	if wh.cfg.Secrets[last] != "" {
		return last, nil
	}
	var only string
	n := 0
	for name, secret := range wh.cfg.Secrets {
		if secret != "" {
			only, n = name, n+1
		}
	}
	if n == 1 {
		return only, nil
	}
	return "", fmt.Errorf("no gerrit server with a webhook_secret named %q; end the URL with the server's name", last)
}

package gerrit

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// maxWebhookBody bounds one webhook request.
const maxWebhookBody = maxLine

// defaultWebhookMemory bounds the webhook bodies held at once.
const defaultWebhookMemory = 64 << 20

// WebhookHandler accepts events POSTed by Gerrit's webhooks plugin. The
// last path segment names the server: the coordinator mounts it at
// /gerrit/webhook/ (point Gerrit at /gerrit/webhook/review) and at
// /gerrit/webhook, which reaches the server when only one has a
// webhook_secret. Requests must carry the server's secret as
// "Authorization: Bearer <secret>" or as the query parameter secret. An
// event is answered once it is stored, before it is decided.
func (in *Intake) WebhookHandler() http.Handler {
	return http.HandlerFunc(in.serveWebhook)
}

func (in *Intake) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST Gerrit events here", http.StatusMethodNotAllowed)
		return
	}
	s, err := in.webhookServer(r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	got := r.URL.Query().Get("secret")
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = a
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.WebhookSecret)) != 1 {
		in.logger.Warn("webhook request with a wrong secret", "server", s.cfg.Name, "remote", r.RemoteAddr)
		http.Error(w, "wrong or missing webhook secret", http.StatusUnauthorized)
		return
	}
	if r.ContentLength > maxWebhookBody {
		http.Error(w, fmt.Sprintf("body of %d bytes: the limit is %d bytes", r.ContentLength, maxWebhookBody), http.StatusRequestEntityTooLarge)
		return
	}
	// The body takes its room in the memory budget before it is read: its
	// length when told, the limit otherwise.
	size := int64(maxWebhookBody)
	if r.ContentLength >= 0 {
		size = max(r.ContentLength, 1)
	}
	if !in.bodies.TryAcquire(size) {
		in.metrics.bodyWaits.Inc()
		wctx, cancel := context.WithTimeout(r.Context(), in.bodyWait)
		err := in.bodies.Acquire(wctx, size)
		cancel()
		if err != nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "too many webhook bodies are being stored; try again", http.StatusServiceUnavailable)
			return
		}
	}
	in.holdBody(size)
	defer in.holdBody(-size)
	defer in.bodies.Release(size)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, size))
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v (limit %d bytes)", err, size), http.StatusRequestEntityTooLarge)
		return
	}
	// Accepted once stored; the decision comes after the answer.
	if err := in.accept(r.Context(), s, [][]byte{body}, "webhook"); err != nil {
		if errors.Is(err, event.ErrMalformed) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if errors.Is(err, event.ErrUnsupported) {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		in.logger.Error("storing webhook event failed", "server", s.cfg.Name, "error", err)
		http.Error(w, "could not store the event; try again", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// holdBody counts n more bytes of bodies held (n < 0: fewer).
func (in *Intake) holdBody(n int64) {
	in.metrics.bodyBytes.Add(float64(n))
	held := in.bodyHeld.Add(n)
	for {
		peak := in.bodyPeak.Load()
		if held <= peak || in.bodyPeak.CompareAndSwap(peak, held) {
			return
		}
	}
}

func (in *Intake) webhookServer(path string) (*server, error) {
	last := path[strings.LastIndex(path, "/")+1:]
	if s := in.servers[last]; s != nil && s.cfg.WebhookSecret != "" {
		return s, nil
	}
	var only *server
	n := 0
	for _, name := range in.order {
		if s := in.servers[name]; s.cfg.WebhookSecret != "" {
			only, n = s, n+1
		}
	}
	if n == 1 {
		return only, nil
	}
	return nil, fmt.Errorf("no gerrit server with a webhook_secret named %q; end the URL with the server's name", last)
}

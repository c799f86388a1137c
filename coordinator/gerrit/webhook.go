package gerrit

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxWebhookBody bounds one webhook request.
const maxWebhookBody = maxLine

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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v (limit %d bytes)", err, maxWebhookBody), http.StatusRequestEntityTooLarge)
		return
	}
	// Accepted once stored; the decision comes after the answer.
	if err := in.accept(r.Context(), s, [][]byte{body}, "webhook"); err != nil {
		if errors.Is(err, ErrMalformed) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if errors.Is(err, ErrUnsupported) {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		in.logger.Error("storing webhook event failed", "server", s.cfg.Name, "error", err)
		http.Error(w, "could not store the event; try again", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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

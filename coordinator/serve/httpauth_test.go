package serve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestOnlyTheOpenPathsAnswerWithoutACertificate(t *testing.T) {
	t.Parallel()
	h := requireClientCert([]string{"/metrics", "/healthz", "/gerrit/webhook"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	for path, open := range map[string]bool{
		"/metrics": true, "/healthz": true, "/gerrit/webhook": true, "/gerrit/webhook/review": true,
		"/logs/1": false, "/jobs/1": false, "/": false, "/metricsx": false, "/healthz.html": false, "/static/log.js": false,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Code == http.StatusTeapot; got != open {
			t.Errorf("%s without a certificate: %d %s", path, rec.Code, rec.Body)
		}
		if !open && !strings.Contains(rec.Body.String(), "coordinator certs --role client") {
			t.Errorf("%s: the refusal does not say what to do: %s", path, rec.Body)
		}
	}
}

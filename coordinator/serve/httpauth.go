package serve

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/kiln-build/kiln/internal/tlsconfig"
)

// In production the HTTP listener speaks TLS with the coordinator's
// certificate and asks for a client certificate without requiring one:
// /metrics and /healthz answer anyone, and so do the hooks' own paths
// (Gerrit's webhook, which carries its own secret); every other path (the
// job logs, the web pages, their artifacts) needs a certificate of the CA
// with role client or admin, the same as the gRPC API. A browser follows
// Gerrit's log link with a client certificate imported into it.

// httpTLS is the HTTP listener's TLS configuration: the API's, with the
// client certificate optional so that the open paths stay open.
func httpTLS(f tlsconfig.Files) (*tls.Config, error) {
	tc, err := tlsconfig.Server(f)
	if err != nil {
		return nil, err
	}
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	return tc, nil
}

// requireClientCert serves the open paths to anyone and the rest only to
// a verified client certificate with role client or admin.
func requireClientCert(open []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range open {
			if r.URL.Path == p || strings.HasPrefix(r.URL.Path, strings.TrimSuffix(p, "/")+"/") {
				next.ServeHTTP(w, r)
				return
			}
		}
		if err := httpCaller(r); err != nil {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func httpCaller(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return fmt.Errorf("%s needs a client certificate with role client or admin: make one with `coordinator certs --role client` and present it (curl --cert/--key, or import it into the browser)", r.URL.Path)
	}
	cert := r.TLS.VerifiedChains[0][0]
	role, err := tlsconfig.RoleOf(cert)
	if err != nil {
		return err
	}
	if role != tlsconfig.RoleClient && role != tlsconfig.RoleAdmin {
		return fmt.Errorf("certificate %q has role %s, which may not read %s (allowed: client, admin)", cert.Subject.CommonName, role, r.URL.Path)
	}
	return nil
}

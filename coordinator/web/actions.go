package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/publish"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// Actions says who may use the pages' actions (cancel, rebuild, rebuild to
// verify, drain, undrain). Every action is a POST form that must come from
// the pages themselves: it carries the token the page gave (bound to the
// reader's certificate), and its Sec-Fetch-Site, Origin or Referer must
// name this server. The pages set no cookie, so there is no session for
// another site to ride on; the browser's client certificate is what such a
// site could make it send, and the token and origin checks refuse that.
type Actions int

const (
	// NoActions offers no action.
	NoActions Actions = iota
	// LoopbackActions lets whoever reaches the listener act: development
	// mode, where the listener is on loopback. The request's host must be
	// a loopback one, so that a name another site rebinds to 127.0.0.1
	// cannot pass for the pages.
	LoopbackActions
	// CertificateActions lets a reader act whose verified client
	// certificate has a role that may make the same call of the gRPC API
	// (api.Authorize): client or admin cancel and rebuild, only admin
	// drains and undrains. Production mode.
	CertificateActions
)

// The gRPC calls whose authorisation each action shares.
const (
	cancelMethod  = pb.CoordinatorService_CancelJob_FullMethodName
	rebuildMethod = pb.CoordinatorService_RebuildJob_FullMethodName
	drainMethod   = pb.CoordinatorService_DrainWorker_FullMethodName
)

// jobActions says which of a job's actions its page offers.
type jobActions struct {
	Cancel, Rebuild, Verify bool
}

// actionsFor is the actions that apply to j and that the reader of r may
// use.
func (s *Server) actionsFor(r *http.Request, j *job.Job) jobActions {
	cancel, rebuild := s.may(r, cancelMethod) == nil, s.may(r, rebuildMethod) == nil
	return jobActions{
		Cancel:  cancel && (!j.State.Final() || (j.State == job.Succeeded && pendingPublish(j))),
		Rebuild: rebuild && j.State.Final() && j.Spec.Build != nil,
		Verify:  rebuild && j.State == job.Succeeded && j.Spec.Build != nil && j.Record != nil,
	}
}

func pendingPublish(j *job.Job) bool {
	st, _, _ := publish.Parse(j.Publish)
	return st == publish.StatePending
}

// clientCert is the request's verified client certificate, or nil.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// who names the reader in the log: the certificate's name, or the address
// in development mode.
func who(r *http.Request) string {
	if c := clientCert(r); c != nil {
		return c.Subject.CommonName
	}
	return r.RemoteAddr
}

// may says whether the reader of r may do what the gRPC call method does.
func (s *Server) may(r *http.Request, method string) error {
	switch s.cfg.Actions {
	case LoopbackActions:
		return nil
	case CertificateActions:
		cert := clientCert(r)
		if cert == nil {
			return fmt.Errorf("%w: actions need a client certificate with role client or admin (drain: admin); make one with `coordinator certs --role client` and import it into the browser", errForbidden)
		}
		if err := api.Authorize(cert, method); err != nil {
			return fmt.Errorf("%w: %s", errForbidden, status.Convert(err).Message())
		}
		return nil
	}
	return fmt.Errorf("%w: actions are off on this coordinator's pages; use `coordinator jobs cancel`, `coordinator jobs rebuild` or `coordinator workers drain`", errForbidden)
}

// checkAction refuses an action the reader may not take, or whose request
// did not come from the pages: another site's page may make the browser
// post a form here, with the reader's client certificate.
func (s *Server) checkAction(r *http.Request, method string) error {
	if err := s.may(r, method); err != nil {
		return err
	}
	if err := s.sameOrigin(r); err != nil {
		return err
	}
	got, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("token"))
	if err != nil || !hmac.Equal(got, s.tokenMAC(r)) {
		return fmt.Errorf("%w: the form's token is missing or not this page's (the coordinator restarted, or the form came from elsewhere): reload the page and try again", errForbidden)
	}
	return nil
}

// token is what the forms carry to show they come from a page this server
// gave the same reader: a MAC, under a key made at start, of the reader's
// certificate (the same for everybody in development mode).
func (s *Server) token(r *http.Request) string {
	return base64.RawURLEncoding.EncodeToString(s.tokenMAC(r))
}

func (s *Server) tokenMAC(r *http.Request) []byte {
	subject := "loopback"
	if c := clientCert(r); c != nil {
		sum := sha256.Sum256(c.Raw)
		subject = "certificate " + hex.EncodeToString(sum[:])
	}
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("kiln web action\x00" + subject))
	return m.Sum(nil)
}

// sameOrigin refuses a request that another site's page may have sent
// (cross-site request forgery): a browser's Sec-Fetch-Site must say
// same-origin, and its Origin, or without one its Referer, must be this
// server. In development mode the host must be a loopback one, so that a
// name rebound to 127.0.0.1 by another site cannot pass for it; in
// production the browser's check of the server certificate refuses such a
// name.
func (s *Server) sameOrigin(r *http.Request) error {
	if s.cfg.Actions == LoopbackActions {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%w: host %q is not a loopback address: open the pages as http://127.0.0.1:PORT/", errForbidden, r.Host)
		}
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("%w: the browser says the request came from a %s page, not from this server's pages (%s)", errForbidden, site, r.Host)
	}
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(src)
	if src == "" || err != nil || u.Host != r.Host || u.Scheme != scheme {
		return fmt.Errorf("%w: the request came from %q, not from this server's pages (%s://%s)", errForbidden, src, scheme, r.Host)
	}
	return nil
}

// cancelReason is the reason a cancel from the pages records.
const cancelReason = "cancelled from the web page"

// jobAction cancels, rebuilds or verifies a job from its page's forms, for
// a reader checkAction lets through. It calls what CancelJob and
// RebuildJob call.
func (s *Server) jobAction(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, action := r.PathValue("id"), r.PathValue("action")
	method := rebuildMethod
	switch action {
	case "cancel":
		method = cancelMethod
	case "rebuild", "verify":
	default:
		s.fail(w, r, fmt.Errorf("%w: action %q: use cancel, rebuild or verify", fleet.ErrNotFound, action))
		return
	}
	if err := s.checkAction(r, method); err != nil {
		s.fail(w, r, err)
		return
	}
	if action == "cancel" {
		j, err := s.f.Cancel(ctx, id, cancelReason)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if j.State == job.Succeeded && pendingPublish(j) && s.cfg.Publish != nil {
			if err := s.cfg.Publish.Cancel(ctx, j.ID, cancelReason); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		s.cfg.Logger.Info("job cancelled from the web page", "job_id", id, "by", who(r))
		http.Redirect(w, r, jobURL(id), http.StatusSeeOther)
		return
	}
	j, err := s.f.Rebuild(ctx, id, action == "verify")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("job rebuilt from the web page", "job_id", id, "rebuild_id", j.ID, "verify", action == "verify", "by", who(r))
	http.Redirect(w, r, jobURL(j.ID), http.StatusSeeOther)
}

func jobURL(id string) string { return "/jobs/" + url.PathEscape(id) }

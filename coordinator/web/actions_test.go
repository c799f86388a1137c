package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/tlsconfig"
)

// serveTLS serves the pages over HTTPS as production does: the server's
// certificate from a CA made here, a client certificate asked for and
// verified when given. It returns the server and a client per role (and
// "none", which presents no certificate).
func serveTLS(t *testing.T, f Fleet, cfg Config) (*httptest.Server, map[string]*http.Client) {
	t.Helper()
	dir := t.TempDir()
	if err := tlsconfig.MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	files := func(name string) tlsconfig.Files {
		return tlsconfig.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	}
	if err := tlsconfig.Issue(dir, "coordinator", tlsconfig.RoleCoordinator, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconfig.Server(files("coordinator"))
	if err != nil {
		t.Fatal(err)
	}
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	s := New(cfg, f)
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)

	clients := map[string]*http.Client{}
	for _, role := range []tlsconfig.Role{tlsconfig.RoleClient, tlsconfig.RoleAdmin, tlsconfig.RoleWorker} {
		name := "web-" + string(role)
		if err := tlsconfig.Issue(dir, name, role, nil); err != nil {
			t.Fatal(err)
		}
		ctc, err := tlsconfig.Client(files(name))
		if err != nil {
			t.Fatal(err)
		}
		clients[string(role)] = &http.Client{Transport: &http.Transport{TLSClientConfig: ctc}}
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	clients["none"] = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return srv, clients
}

func getWith(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// In production the actions follow the gRPC API's roles over real HTTPS
// with client certificates: client and admin certificates cancel and
// rebuild, only admin drains; a certificate without such a role, no
// certificate, another certificate's token, a cross-site request and a
// request without the page's token are refused and change nothing.
func TestProductionActions(t *testing.T) {
	t.Parallel()
	rf := newReleaseFleet(t, "mos-9.0")
	ctx := context.Background()
	srv, c := serveTLS(t, rf, Config{Actions: CertificateActions})
	built := rf.build("mos-9.0", "hello", 1)
	queued := rf.submit(pkgSpec("mos-9.0", "world", "cli", 2))
	state := func(id string) job.State {
		j, _, err := rf.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j.State
	}
	jobCount := func() int {
		jobs, _, err := rf.Store().Query(ctx, store.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(jobs)
	}

	// The forms are offered to the roles that may use them.
	tokens := map[string]string{}
	for _, role := range []string{"client", "admin"} {
		_, body := getWith(t, c[role], srv.URL+"/jobs/"+queued.ID)
		if !strings.Contains(body, `action="/jobs/`+queued.ID+`/cancel"`) {
			t.Errorf("%s: queued job's page lacks the cancel form:\n%s", role, body)
		}
		tokens[role] = formToken(t, body)
		_, body = getWith(t, c[role], srv.URL+"/workers")
		if hasForm := strings.Contains(body, `action="/workers/w1/drain"`); hasForm != (role == "admin") {
			t.Errorf("%s: workers page has a drain form: %v, want it for admin only", role, hasForm)
		}
	}
	if tokens["client"] == tokens["admin"] {
		t.Errorf("two certificates got the same form token %q", tokens["client"])
	}
	_, body := getWith(t, c["worker"], srv.URL+"/jobs/"+queued.ID)
	if strings.Contains(body, "<form method=\"post\"") {
		t.Errorf("a worker certificate is offered actions:\n%s", body)
	}

	origin := srv.URL
	for _, tc := range []struct {
		name   string
		client string
		header []string
	}{
		{"no certificate", "none", []string{"token", tokens["client"], "Origin", origin}},
		{"worker certificate", "worker", []string{"token", tokens["client"], "Origin", origin}},
		{"no token", "client", []string{"Origin", origin, "Sec-Fetch-Site", "same-origin"}},
		{"another certificate's token", "client", []string{"token", tokens["admin"], "Origin", origin}},
		{"cross-site", "client", []string{"token", tokens["client"], "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}},
		{"cross-site without Origin", "client", []string{"token", tokens["client"], "Sec-Fetch-Site", "cross-site"}},
		{"same site, other origin", "client", []string{"token", tokens["client"], "Origin", origin, "Sec-Fetch-Site", "same-site"}},
		{"plain http origin", "client", []string{"token", tokens["client"], "Origin", strings.Replace(origin, "https:", "http:", 1)}},
		{"no origin", "client", []string{"token", tokens["client"]}},
	} {
		for _, a := range []string{"cancel", "rebuild", "verify"} {
			id := queued.ID
			if a != "cancel" {
				id = built.ID
			}
			if code, _ := postFormWith(t, c[tc.client], srv.URL+"/jobs/"+id+"/"+a, tc.header...); code != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", tc.name, a, code)
			}
		}
	}
	if st := state(queued.ID); st != job.Queued {
		t.Fatalf("refused cancels left the job %s", st)
	}
	if n := jobCount(); n != 2 {
		t.Fatalf("refused rebuilds made jobs: %d jobs", n)
	}
	// A client certificate may cancel and rebuild, as CancelJob and
	// RebuildJob allow it, but not drain, which DrainWorker keeps for
	// admins.
	ok := []string{"token", tokens["client"], "Origin", origin, "Sec-Fetch-Site", "same-origin"}
	if code, _ := postFormWith(t, c["client"], srv.URL+"/workers/w1/drain", ok...); code != http.StatusForbidden {
		t.Errorf("drain by a client certificate: %d, want 403", code)
	}
	if code, loc := postFormWith(t, c["client"], srv.URL+"/jobs/"+built.ID+"/rebuild", ok...); code != http.StatusSeeOther || jobCount() != 3 {
		t.Errorf("rebuild by a client certificate: %d to %q, %d jobs", code, loc, jobCount())
	}
	if code, _ := postFormWith(t, c["client"], srv.URL+"/jobs/"+queued.ID+"/cancel", ok...); code != http.StatusSeeOther || state(queued.ID) != job.Canceled {
		t.Errorf("cancel by a client certificate: %d, job %s", code, state(queued.ID))
	}
	admin := []string{"token", tokens["admin"], "Referer", origin + "/workers"}
	if code, _ := postFormWith(t, c["admin"], srv.URL+"/workers/w1/drain", admin...); code != http.StatusSeeOther || rf.Workers()[0].State != scheduler.WorkerDraining {
		t.Errorf("drain by an admin certificate: %d, worker %s", code, rf.Workers()[0].State)
	}
}

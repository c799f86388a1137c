package itest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/tlsconfig"
)

// TestProductionRolesAndAuthenticatedHTTP runs the coordinator without
// --dev, with a certificate of each role: every role is refused outside
// its RPCs, a worker's name is bound to its certificate, job environment
// values reach admins only, and the logs and pages on the HTTP listener
// need a client certificate while /metrics and /healthz stay open.
func TestProductionRolesAndAuthenticatedHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	for n, role := range map[string]string{"coordinator": "coordinator", "worker-1": "worker", "worker-2": "worker",
		"jenkins": "client", "root": "admin", "publisher": "publisher"} {
		if out, errOut, code := run(t, bin("coordinator"), "certs", "--dir", pki, "--name", n, "--role", role, "--host", "127.0.0.1"); code != 0 {
			t.Fatalf("certs %s: %s %s", n, out, errOut)
		}
	}
	files := func(n string) tlsconfig.Files {
		return tlsconfig.Files{Cert: filepath.Join(pki, n+".pem"), Key: filepath.Join(pki, n+"-key.pem"), CA: filepath.Join(pki, "ca.pem")}
	}
	addr, httpAddr := freeAddr(t), freeAddr(t)
	coordCfg := filepath.Join(dir, "coordinator.yaml")
	os.WriteFile(coordCfg, []byte(fmt.Sprintf(`listen: %s
http_listen: %s
public_url: https://%s
state_dir: %s
tls: {cert: %s, key: %s, ca: %s}
worker_tokens: {worker-1: token-1, worker-2: token-2, jenkins: token-j}
heartbeat_interval: 1s
lost_after: 4s
`, addr, httpAddr, httpAddr, filepath.Join(dir, "state"), files("coordinator").Cert, files("coordinator").Key, files("coordinator").CA)), 0o644)
	start(t, "coordinator", "coordinator", "serve", "--config", coordCfg)
	c := &cluster{t: t, addr: addr}
	c.waitListening(addr)

	worker := func(name, cert, token string) *proc {
		f := files(cert)
		cfg := filepath.Join(dir, name+"-"+cert+".yaml")
		os.WriteFile(filepath.Join(dir, name+"-"+cert+".token"), []byte(token), 0o600)
		os.WriteFile(cfg, []byte(fmt.Sprintf("coordinator: %s\nname: %s\nlabels: {os: linux}\nwork_dir: %s\ntoken_file: %s\ntls: {cert: %s, key: %s, ca: %s}\n",
			addr, name, filepath.Join(dir, "work-"+name+"-"+cert), filepath.Join(dir, name+"-"+cert+".token"), f.Cert, f.Key, f.CA)), 0o644)
		return start(t, "worker", name+"-"+cert, "run", "--config", cfg)
	}
	refusedWorker := func(p *proc, want string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: worker stopped without an error", p.log)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: a refused worker kept running", p.log)
		}
		b, _ := os.ReadFile(p.log)
		if !strings.Contains(string(b), want) {
			t.Fatalf("refused worker's log lacks %q:\n%s", want, b)
		}
	}
	worker("worker-1", "worker-1", "token-1")
	// worker-1's certificate with worker-2's token cannot register as
	// worker-2; a client certificate cannot register at all.
	refusedWorker(worker("worker-2", "worker-1", "token-2"), `worker certificate "worker-1" may register only as worker "worker-1", not as "worker-2"`)
	refusedWorker(worker("jenkins", "jenkins", "token-j"), "has role client, which may not call /kiln.worker.v1.WorkerService/Register")

	as := func(cert string, args ...string) (string, string, int) {
		t.Helper()
		f := files(cert)
		return runEnv(t, []string{"KILN_SERVER=" + addr, "KILN_TLS_CERT=" + f.Cert, "KILN_TLS_KEY=" + f.Key, "KILN_TLS_CA=" + f.CA}, bin("coordinator"), args...)
	}
	out, errOut, code := as("jenkins", "run", "--labels", "os=linux", "--env", "DEPLOY_KEY=hunter2", "--wait", "--", "sh", "-c", "echo from-the-job")
	if code != 0 || !strings.Contains(out, "from-the-job") {
		t.Fatalf("run as a client: %d\n%s\n%s", code, out, errOut)
	}
	j := struct{ ID string }{jobID(t, errOut)}

	// Each role is refused outside its RPCs, with the role and the RPC named.
	for _, tc := range []struct {
		cert string
		args []string
		want string
	}{
		{"worker-1", []string{"jobs", "list"}, "role worker, which may not call /kiln.coordinator.v1.CoordinatorService/ListJobs"},
		{"worker-1", []string{"run", "--labels", "os=linux", "--", "id"}, "role worker, which may not call /kiln.coordinator.v1.CoordinatorService/SubmitJob"},
		{"publisher", []string{"workers", "drain", "worker-1"}, "role publisher, which may not call /kiln.coordinator.v1.CoordinatorService/DrainWorker"},
		{"publisher", []string{"jobs", "show", j.ID}, "role publisher, which may not call /kiln.coordinator.v1.CoordinatorService/GetJob"},
		{"coordinator", []string{"jobs", "list"}, "role coordinator, which may not call /kiln.coordinator.v1.CoordinatorService/ListJobs"},
		{"jenkins", []string{"workers", "drain", "worker-1"}, "role client, which may not call /kiln.coordinator.v1.CoordinatorService/DrainWorker"},
		{"jenkins", []string{"release", "seal", "rel"}, "role client, which may not call /kiln.coordinator.v1.ReleaseService/SealRelease"},
	} {
		out, errOut, code := as(tc.cert, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s %v: exit %d, want the refusal %q\n%s\n%s", tc.cert, tc.args, code, tc.want, out, errOut)
		}
	}
	// Inside their RPCs they are served.
	if out, errOut, code := as("root", "workers", "drain", "worker-1"); code != 0 {
		t.Errorf("admin drains: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := as("root", "workers", "undrain", "worker-1"); code != 0 {
		t.Errorf("admin undrains: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := as("jenkins", "workers", "list", "--json"); code != 0 || !strings.Contains(out, `"name": "worker-1"`) || strings.Contains(out, "worker-2") {
		t.Errorf("client lists workers: %d %s %s", code, out, errOut)
	}

	// Environment values reach admins only.
	out, _, code = as("jenkins", "jobs", "show", j.ID, "--json")
	if code != 0 || strings.Contains(out, "hunter2") || !strings.Contains(out, "DEPLOY_KEY=(redacted)") {
		t.Errorf("jobs show --json as a client: %d\n%s", code, out)
	}
	out, _, code = as("root", "jobs", "show", j.ID, "--json")
	if code != 0 || !strings.Contains(out, "DEPLOY_KEY=hunter2") {
		t.Errorf("jobs show --json as an admin: %d\n%s", code, out)
	}

	// The HTTP listener: HTTPS; logs and pages for client and admin
	// certificates, /metrics and /healthz for anyone.
	client := func(cert string) *http.Client {
		ca, err := tlsconfig.Client(files("jenkins"))
		if err != nil {
			t.Fatal(err)
		}
		tc := &tls.Config{RootCAs: ca.RootCAs}
		if cert != "" {
			if tc, err = tlsconfig.Client(files(cert)); err != nil {
				t.Fatal(err)
			}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
	}
	get := func(cl *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := cl.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	base := "https://" + httpAddr
	for _, p := range []string{"/logs/" + j.ID, "/jobs/" + j.ID, "/", "/workers"} {
		if code, body := get(client(""), base+p); code != http.StatusForbidden || !strings.Contains(body, "coordinator certs --role client") {
			t.Errorf("%s without a certificate: %d %s", p, code, body)
		}
		for _, cert := range []string{"worker-1", "publisher"} {
			if code, body := get(client(cert), base+p); code != http.StatusForbidden || !strings.Contains(body, "which may not read") {
				t.Errorf("%s with a %s certificate: %d %s", p, cert, code, body)
			}
		}
		for _, cert := range []string{"jenkins", "root"} {
			if code, body := get(client(cert), base+p); code != http.StatusOK {
				t.Errorf("%s with the %s certificate: %d %s", p, cert, code, body)
			}
		}
	}
	if code, body := get(client("jenkins"), base+"/logs/"+j.ID); !strings.Contains(body, "from-the-job") {
		t.Errorf("log with a client certificate: %d %s", code, body)
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		if code, body := get(client(""), base+p); code != http.StatusOK {
			t.Errorf("%s without a certificate: %d %s", p, code, body)
		}
	}
	// The pages' actions in production follow the same roles: the admin
	// drains from the workers page's form, a client certificate and a
	// cross-site request may not.
	post := func(cl *http.Client, path, token string, header ...string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(url.Values{"token": {token}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		noRedirect := *cl
		noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, page := get(client("root"), base+"/workers")
	m := regexp.MustCompile(`action="/workers/worker-1/drain">\s*<input type="hidden" name="token" value="([^"]+)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the admin's workers page lacks worker-1's drain form:\n%s", page)
	}
	if code := post(client("jenkins"), "/workers/worker-1/drain", m[1], "Origin", base); code != http.StatusForbidden {
		t.Errorf("drain from the page with a client certificate: %d, want 403", code)
	}
	if code := post(client("root"), "/workers/worker-1/drain", m[1], "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site drain with the admin certificate: %d, want 403", code)
	}
	if code := post(client("root"), "/workers/worker-1/drain", m[1], "Origin", base, "Sec-Fetch-Site", "same-origin"); code != http.StatusSeeOther {
		t.Errorf("drain from the page with the admin certificate: %d, want 303", code)
	}
	if out, _, _ := as("root", "workers", "list"); !strings.Contains(out, "draining") {
		t.Errorf("after the admin's drain from the page, workers list says:\n%s", out)
	}
	if code := post(client("root"), "/workers/worker-1/undrain", m[1], "Referer", base+"/workers"); code != http.StatusSeeOther {
		t.Errorf("undrain from the page with the admin certificate: %d, want 303", code)
	}
	// Plain HTTP gets no log.
	if code, body := get(&http.Client{Timeout: 20 * time.Second}, "http://"+httpAddr+"/logs/"+j.ID); code == http.StatusOK || strings.Contains(body, "from-the-job") {
		t.Errorf("log over plain HTTP: %d %s", code, body)
	}
}

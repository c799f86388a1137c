package itest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLSWithClientCertificatesAndTokens runs the fleet without --dev:
// mutual TLS for the worker and the CLI, and a bearer token per worker.
func TestTLSWithClientCertificatesAndTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	for n, role := range map[string]string{"coordinator": "coordinator", "worker-1": "worker", "intruder": "worker", "jenkins": "client"} {
		out, errOut, code := run(t, bin("coordinator"), "certs", "--dir", pki, "--name", n, "--role", role, "--host", "127.0.0.1")
		if code != 0 {
			t.Fatalf("certs %s: %s %s", n, out, errOut)
		}
	}
	addr := freeAddr(t)
	os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600)
	coordCfg := filepath.Join(dir, "coordinator.yaml")
	os.WriteFile(coordCfg, []byte(`listen: `+addr+`
http_listen: ""
state_dir: `+filepath.Join(dir, "state")+`
tls:
  cert: `+filepath.Join(pki, "coordinator.pem")+`
  key: `+filepath.Join(pki, "coordinator-key.pem")+`
  ca: `+filepath.Join(pki, "ca.pem")+`
worker_tokens:
  worker-1: s3cret
heartbeat_interval: 1s
lost_after: 4s
`), 0o644)
	coord := start(t, "coordinator", "coordinator", "serve", "--config", coordCfg)
	c := &cluster{t: t}
	c.waitListening(addr)

	workerCfg := func(name, token string) string {
		p := filepath.Join(dir, name+".yaml")
		os.WriteFile(filepath.Join(dir, name+".token"), []byte(token), 0o600)
		os.WriteFile(p, []byte(`coordinator: `+addr+`
name: `+name+`
labels: {os: linux}
work_dir: `+filepath.Join(dir, name)+`
token_file: `+filepath.Join(dir, name+".token")+`
tls:
  cert: `+filepath.Join(pki, name+".pem")+`
  key: `+filepath.Join(pki, name+"-key.pem")+`
  ca: `+filepath.Join(pki, "ca.pem")+`
`), 0o644)
		return p
	}
	start(t, "worker", "worker-1", "run", "--config", workerCfg("worker-1", "s3cret"))
	intruder := start(t, "worker", "intruder", "run", "--config", workerCfg("intruder", "guess"))

	tlsFlags := []string{"--server", addr, "--tls-cert", filepath.Join(pki, "jenkins.pem"), "--tls-key", filepath.Join(pki, "jenkins-key.pem"), "--tls-ca", filepath.Join(pki, "ca.pem")}
	out, errOut, code := run(t, bin("coordinator"), append(append([]string{"run"}, tlsFlags...), "--labels", "os=linux", "--wait", "--", "echo", "over-tls")...)
	if code != 0 || !strings.Contains(out, "over-tls") || !strings.Contains(out, "worker-1") {
		t.Fatalf("job over TLS: %d\n%s\n%s", code, out, errOut)
	}
	// The worker with a wrong token is refused and says why.
	if err := intruder.cmd.Wait(); err == nil {
		t.Fatal("worker with a wrong token kept running")
	}
	b, _ := os.ReadFile(intruder.log)
	if !strings.Contains(string(b), "wrong bearer token") {
		t.Fatalf("intruder log: %s", b)
	}
	// A client without a certificate is refused; plaintext is refused too.
	_, errOut, code = run(t, bin("coordinator"), "jobs", "list", "--server", addr)
	if code == 0 {
		t.Fatalf("plaintext client accepted: %s", errOut)
	}
	// A worker given another installation's CA stops, saying why, instead
	// of calling the coordinator unreachable for ever.
	other := filepath.Join(dir, "other-pki")
	if out, errOut, code := run(t, bin("coordinator"), "certs", "--dir", other, "--name", "worker-1", "--role", "worker", "--host", "127.0.0.1"); code != 0 {
		t.Fatalf("certs: %s %s", out, errOut)
	}
	strayCfg := workerCfg("worker-1", "s3cret")
	b, _ = os.ReadFile(strayCfg)
	stray := filepath.Join(dir, "stray.yaml")
	os.WriteFile(stray, []byte(strings.Replace(strings.Replace(string(b), filepath.Join(pki, "ca.pem"), filepath.Join(other, "ca.pem"), 1),
		"work_dir: "+filepath.Join(dir, "worker-1"), "work_dir: "+filepath.Join(dir, "stray"), 1)), 0o644)
	strayProc := start(t, "worker", "stray", "run", "--config", stray)
	strayDone := make(chan error, 1)
	go func() { strayDone <- strayProc.cmd.Wait() }()
	select {
	case err := <-strayDone:
		b, _ := os.ReadFile(strayProc.log)
		if err == nil || !strings.Contains(string(b), "not signed by our CA") {
			t.Fatalf("worker with another CA: %v\n%s", err, b)
		}
	case <-time.After(30 * time.Second):
		b, _ := os.ReadFile(strayProc.log)
		t.Fatalf("worker with another CA still runs after 30 s:\n%s", tail(string(b), 2000))
	}

	// Both refusals are in the coordinator's log, with the peer and why.
	waitLog(t, coord, 10*time.Second, "refused a connection", "refused=/kiln.worker.v1.WorkerService/Register", "wrong bearer token")
	waitLog(t, coord, 10*time.Second, "refused a connection", "refused=\"TLS handshake\"", "peer=127.0.0.1:")
	out, _, code = run(t, bin("coordinator"), append(append([]string{"workers", "list"}, tlsFlags...), "--json")...)
	if code != 0 || !strings.Contains(out, `"name": "worker-1"`) || strings.Contains(out, "intruder") {
		t.Fatalf("workers: %d %s", code, out)
	}
	// Serving plaintext on a non-loopback address is refused.
	_, errOut, code = run(t, bin("coordinator"), "serve", "--dev", "--listen", "0.0.0.0:0", "--state-dir", filepath.Join(dir, "x"))
	if code != 2 || !strings.Contains(errOut, "loopback only") {
		t.Fatalf("--dev on 0.0.0.0: %d %s", code, errOut)
	}
}

// waitLog waits until one line of p's log holds all of want.
func waitLog(t *testing.T, p *proc, limit time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line of %s holds all of %q:\n%s", p.log, want, tail(string(b), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package tlsconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// serveTLS accepts TLS connections on loopback with cfg and keeps each
// open until the client goes.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func pki(t *testing.T, names map[string]Role) string {
	t.Helper()
	dir := t.TempDir()
	if err := MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	for n, r := range names {
		if err := Issue(dir, n, r, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func files(dir, name string) Files {
	return Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
}

// A worker tells a refused certificate (which it cannot fix by retrying)
// from an outage (which it waits out).
func TestProbe(t *testing.T) {
	t.Parallel()
	ours := pki(t, map[string]Role{"coordinator": RoleCoordinator, "w1": RoleWorker})
	theirs := pki(t, map[string]Role{"coordinator": RoleCoordinator, "w1": RoleWorker})
	server, err := Server(files(ours, "coordinator"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, server)
	ctx := context.Background()

	good, _ := Client(files(ours, "w1"))
	if err := Probe(ctx, addr, good); err != nil {
		t.Errorf("our CA and our certificate: %v, want nil", err)
	}
	// The worker was given another installation's CA and certificate.
	wrongCA, _ := Client(Files{Cert: files(ours, "w1").Cert, Key: files(ours, "w1").Key, CA: files(theirs, "w1").CA})
	if err := Probe(ctx, addr, wrongCA); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not signed by our CA") {
		t.Errorf("wrong CA: %v, want a refusal naming the CA", err)
	}
	// The right CA, but a certificate the server's CA did not sign.
	wrongCert, _ := Client(Files{Cert: files(theirs, "w1").Cert, Key: files(theirs, "w1").Key, CA: files(ours, "w1").CA})
	if err := Probe(ctx, addr, wrongCert); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "refused our certificate") {
		t.Errorf("certificate of another CA: %v, want a refusal of our certificate", err)
	}
	// Nothing listens: an outage, not a refusal.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	if err := Probe(ctx, down, good); err != nil {
		t.Errorf("nothing listening: %v, want nil", err)
	}
}

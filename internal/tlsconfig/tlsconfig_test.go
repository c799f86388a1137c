package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckLoopback(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true,
		"0.0.0.0:1": false, "10.1.2.3:9": false, ":9": false} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"server", "client"} {
		if err := Issue(dir, n, RoleClient, []string{"127.0.0.1", "localhost"}); err != nil {
			t.Fatal(err)
		}
	}
	files := func(n string) Files {
		return Files{Cert: filepath.Join(dir, n+".pem"), Key: filepath.Join(dir, n+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	}
	sc, err := Server(files("server"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", sc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	cc, err := Client(files("client"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), cc)
	if err != nil {
		t.Fatalf("client with certificate refused: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close()
	// Without a client certificate the server refuses.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: cc.RootCAs, ServerName: "127.0.0.1"})
	_, err = tc.Read(buf)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client without certificate: %v", err)
	}
	if _, err := Server(Files{}); err == nil || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("empty files: %v", err)
	}
}

func TestRoleIsWrittenIntoTheCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := MakeCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, r := range Roles {
		if err := Issue(dir, "c-"+string(r), r, nil); err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "c-"+string(r)+".pem"), filepath.Join(dir, "c-"+string(r)+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		got, err := RoleOf(leaf)
		if err != nil || got != r {
			t.Errorf("role of a %s certificate: %q, %v", r, got, err)
		}
	}
	if err := Issue(dir, "x", Role("root"), nil); err == nil || !strings.Contains(err.Error(), `role "root"`) {
		t.Errorf("issue with an unknown role: %v", err)
	}
	if _, err := RoleOf(&x509.Certificate{Subject: pkix.Name{CommonName: "old"}}); !errors.Is(err, ErrNoRole) || !strings.Contains(err.Error(), "coordinator certs --role") {
		t.Errorf("a certificate without a role: %v", err)
	}
}

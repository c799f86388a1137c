// Package tlsconfig builds the mutual-TLS configurations Kiln's components
// use between each other, checks that plaintext stays on loopback, and makes
// a small certificate authority for an installation.
package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files names a certificate, its key and the CA that verifies the peer.
type Files struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// Empty reports whether no file is set.
func (f Files) Empty() bool { return f.Cert == "" && f.Key == "" && f.CA == "" }

func (f Files) load() (tls.Certificate, *x509.CertPool, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return tls.Certificate{}, nil, errors.New("TLS needs cert, key and ca files (make them with `coordinator certs`), or use --dev on loopback")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load certificate %s: %w", f.Cert, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("CA file %s holds no PEM certificate", f.CA)
	}
	return cert, pool, nil
}

// Server returns a server config that requires a client certificate signed
// by the CA.
func Server(f Files) (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// Client returns a client config presenting the certificate and verifying
// the server against the CA.
func Client(f Files) (*tls.Config, error) {
	cert, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// CheckLoopback refuses plaintext on anything but a loopback address.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("plaintext (--dev) is allowed on loopback only, not on %q: listen on 127.0.0.1 or configure TLS", addr)
	}
	return nil
}

// MakeCA writes ca.pem and ca-key.pem into dir unless they exist.
func MakeCA(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Kiln CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writePair(dir, "ca", der, key)
}

// Role is what a certificate may do on the coordinator. It is written into
// the certificate as a URI subject alternative name kiln:role:ROLE, so that
// it is signed by the CA with the rest of the certificate and shown by
// `openssl x509 -noout -ext subjectAltName`.
type Role string

// The roles. Worker may call the WorkerService only; Client reads and
// submits (Jenkins, people); Admin may do everything, drain and seal
// included; Publisher and Coordinator are the servers' own certificates
// and may call nothing on the coordinator.
const (
	RoleWorker      Role = "worker"
	RoleClient      Role = "client"
	RoleAdmin       Role = "admin"
	RolePublisher   Role = "publisher"
	RoleCoordinator Role = "coordinator"
)

// Roles lists the roles in the order the help text names them.
var Roles = []Role{RoleWorker, RoleClient, RoleAdmin, RolePublisher, RoleCoordinator}

const roleURIPrefix = "kiln:role:"

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("role %q: use one of worker, client, admin, publisher, coordinator", s)
}

// ErrNoRole says that a certificate carries no kiln:role: name: it was
// made before roles existed, or by another tool.
var ErrNoRole = errors.New("the certificate has no Kiln role (a URI SAN kiln:role:ROLE); make a new one with `coordinator certs --role worker|client|admin|publisher|coordinator`")

// RoleOf reads the role a certificate was issued with.
func RoleOf(cert *x509.Certificate) (Role, error) {
	var found []Role
	for _, u := range cert.URIs {
		if u.Scheme != "kiln" || !strings.HasPrefix(u.Opaque, "role:") {
			continue
		}
		r, err := ParseRole(strings.TrimPrefix(u.Opaque, "role:"))
		if err != nil {
			return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
		}
		found = append(found, r)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, ErrNoRole)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("certificate %q names %d roles: give a certificate one role", cert.Subject.CommonName, len(found))
}

// Issue writes NAME.pem and NAME-key.pem signed by the CA in dir, with the
// role, valid for the given DNS names and IPs, for both server and client
// use.
func Issue(dir, name string, role Role, hosts []string) error {
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	roleURI, err := url.Parse(roleURIPrefix + string(role))
	if err != nil {
		return err
	}
	caCert, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{roleURI},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, name, der, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("read CA (make it first): %w", err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("read CA key: %w", err)
	}
	cp, _ := pem.Decode(cb)
	kp, _ := pem.Decode(kb)
	if cp == nil || kp == nil {
		return nil, nil, fmt.Errorf("CA files in %s are not PEM", dir)
	}
	cert, err := x509.ParseCertificate(cp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kp.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

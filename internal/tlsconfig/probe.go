package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ErrRefused marks a TLS refusal that trying again cannot fix: the peer's
// certificate is not from our CA or not for its address, or the peer
// refused our certificate.
var ErrRefused = errors.New("TLS refused")

// Probe tells a TLS refusal from an outage. gRPC reports both as
// "unavailable"; Probe makes one TLS connection to addr with tc and
// returns an error wrapping ErrRefused, naming the reason and what to do,
// when the handshake fails on a certificate. It returns nil when nothing
// answers (an outage, retried) or when the handshake succeeds.
func Probe(ctx context.Context, addr string, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil
	}
	defer raw.Close()
	cfg := tc.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	cfg.NextProtos = []string{"h2"}
	conn := tls.Client(raw, cfg)
	err = conn.HandshakeContext(ctx)
	if err == nil {
		// With TLS 1.3 the server refuses a client certificate after the
		// client's handshake is done: its alert is the first read.
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, err = conn.Read(make([]byte, 1))
	}
	if why := refusal(err); why != "" {
		return fmt.Errorf("%w by %s: %s", ErrRefused, addr, why)
	}
	return nil
}

// refusal says why err is a certificate refusal, or "" when it is not.
func refusal(err error) string {
	if err == nil {
		return ""
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var remote *net.OpError
	switch {
	case errors.As(err, &unknown):
		return "its certificate is not signed by our CA (" + err.Error() + "); give the worker the installation's ca.pem (tls.ca)"
	case errors.As(err, &host):
		return err.Error() + "; make the server's certificate with `coordinator certs --host` naming the address the worker dials"
	case errors.As(err, &invalid):
		return err.Error() + "; renew the certificate with `coordinator certs`"
	case errors.As(err, &remote) && remote.Op == "remote error" && strings.Contains(remote.Err.Error(), "certificate"):
		// The peer's alert: bad, unsupported, revoked, expired or
		// unknown certificate, unknown certificate authority, or
		// certificate required (crypto/tls keeps the alert type to
		// itself over TCP).
		return "it refused our certificate (" + remote.Err.Error() + "); give the worker a certificate made by the installation's CA with `coordinator certs --role worker`"
	}
	return ""
}

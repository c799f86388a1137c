package transport

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH opens SSH connections to one Gerrit server: for its event stream,
// and for commands such as gerrit review.
type SSH struct {
	addr   string
	config *ssh.ClientConfig
	// encrypted is true when the private key needed a passphrase.
	encrypted bool
}

// loadSigner reads the server's SSH private key, decrypting it with the
// configured passphrase when it is encrypted.
func loadSigner(sc SSHConfig) (signer ssh.Signer, encrypted bool, err error) {
	key, err := os.ReadFile(sc.PrivateKeyFile)
	if err != nil {
		return nil, false, fmt.Errorf("read private_key_file: %w", err)
	}
	pass, from, err := keyPassphrase(sc)
	if err != nil {
		return nil, false, err
	}
	signer, err = ssh.ParsePrivateKey(key)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return signer, false, nil
	case !errors.As(err, &missing):
		return nil, false, fmt.Errorf("private_key_file %s: %w (an OpenSSH or PEM private key is needed)", sc.PrivateKeyFile, err)
	case from == "":
		return nil, true, fmt.Errorf("private_key_file %s is encrypted: set private_key_passphrase_file (or private_key_passphrase_env) to its passphrase", sc.PrivateKeyFile)
	}
	signer, err = ssh.ParsePrivateKeyWithPassphrase(key, pass)
	if errors.Is(err, x509.IncorrectPasswordError) {
		return nil, true, fmt.Errorf("private_key_file %s: wrong passphrase in %s", sc.PrivateKeyFile, from)
	}
	if err != nil {
		return nil, true, fmt.Errorf("private_key_file %s with the passphrase in %s: %w", sc.PrivateKeyFile, from, err)
	}
	return signer, true, nil
}

// keyPassphrase reads the private key's passphrase; from says where it
// came from, and is empty when none is configured.
func keyPassphrase(sc SSHConfig) (pass []byte, from string, err error) {
	switch {
	case sc.PrivateKeyPassphraseFile != "":
		b, err := os.ReadFile(sc.PrivateKeyPassphraseFile)
		if err != nil {
			return nil, "", fmt.Errorf("read private_key_passphrase_file: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		return b, "private_key_passphrase_file " + sc.PrivateKeyPassphraseFile, nil
	case sc.PrivateKeyPassphraseEnv != "":
		v, ok := os.LookupEnv(sc.PrivateKeyPassphraseEnv)
		if !ok {
			return nil, "", fmt.Errorf("private_key_passphrase_env: environment variable %s is not set; export it or use private_key_passphrase_file", sc.PrivateKeyPassphraseEnv)
		}
		return []byte(v), "environment variable " + sc.PrivateKeyPassphraseEnv, nil
	}
	return nil, "", nil
}

// SSHConfig says how to reach a Gerrit server's SSH daemon. Errors name
// the configuration keys of gerrit.servers.
type SSHConfig struct {
	// Addr is host:port.
	Addr string
	// User is the account Kiln logs in as.
	User string
	// PrivateKeyFile is the account's key; an encrypted one is opened
	// with the passphrase in PrivateKeyPassphraseFile or in the
	// environment variable PrivateKeyPassphraseEnv.
	PrivateKeyFile           string
	PrivateKeyPassphraseFile string
	PrivateKeyPassphraseEnv  string
	// KnownHostsFile holds the server's host key.
	KnownHostsFile string
}

// NewSSH reads the key and the known hosts of a server.
func NewSSH(sc SSHConfig) (*SSH, error) {
	signer, encrypted, err := loadSigner(sc)
	if err != nil {
		return nil, err
	}
	hostKeys, err := knownhosts.New(sc.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("known_hosts_file: %w", err)
	}
	return &SSH{
		addr: sc.Addr,
		config: &ssh.ClientConfig{
			User:            sc.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: hostKeys,
			Timeout:         30 * time.Second,
		},
		encrypted: encrypted,
	}, nil
}

func (d *SSH) dial(ctx context.Context) (*ssh.Client, error) {
	var nd net.Dialer
	dctx, cancel := context.WithTimeout(ctx, d.config.Timeout)
	defer cancel()
	conn, err := nd.DialContext(dctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	// Bound the handshake; ssh.NewClientConn has no context.
	_ = conn.SetDeadline(time.Now().Add(d.config.Timeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, d.addr, d.config)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", d.addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Encrypted tells whether the private key needed a passphrase.
func (d *SSH) Encrypted() bool { return d.encrypted }

// Run executes one command and returns its combined output.
func (d *SSH) Run(ctx context.Context, cmd string) ([]byte, error) {
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sess, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		return out, fmt.Errorf("run %.40q: %w", cmd, err)
	}
	return out, nil
}

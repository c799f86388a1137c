package gerrit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// maxLine bounds one stream-events line; longer lines are skipped.
const maxLine = 4 << 20

// sshDialer opens SSH connections to one Gerrit server.
type sshDialer struct {
	addr      string
	config    *ssh.ClientConfig
	keepalive time.Duration
	// encrypted is true when the private key needed a passphrase.
	encrypted bool
}

// loadSigner reads the server's SSH private key, decrypting it with the
// configured passphrase when it is encrypted.
func loadSigner(sc ServerConfig) (signer ssh.Signer, encrypted bool, err error) {
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
func keyPassphrase(sc ServerConfig) (pass []byte, from string, err error) {
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

func newSSHDialer(sc ServerConfig, keepalive time.Duration) (*sshDialer, error) {
	signer, encrypted, err := loadSigner(sc)
	if err != nil {
		return nil, err
	}
	hostKeys, err := knownhosts.New(sc.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("known_hosts_file: %w", err)
	}
	return &sshDialer{
		addr: sc.SSH,
		config: &ssh.ClientConfig{
			User:            sc.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: hostKeys,
			Timeout:         30 * time.Second,
		},
		keepalive: keepalive,
		encrypted: encrypted,
	}, nil
}

func (d *sshDialer) dial(ctx context.Context) (*ssh.Client, error) {
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

// run executes one command and returns its combined output.
func (d *sshDialer) run(ctx context.Context, cmd string) ([]byte, error) {
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

// runStream keeps one server's event stream open until ctx ends.
func (in *Intake) runStream(ctx context.Context, s *server) error {
	log := in.logger.With("server", s.cfg.Name, "address", s.cfg.SSH)
	wait := in.cfg.Reconnect.Min
	for {
		start := in.now()
		got, err := in.streamOnce(ctx, s)
		in.metrics.up.WithLabelValues(s.cfg.Name).Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if got > 0 || in.now().Sub(start) > in.cfg.Reconnect.Max {
			wait = in.cfg.Reconnect.Min
		}
		log.Warn("event stream ended; reconnecting", "error", err, "events", got, "wait", wait)
		// Up to a quarter of jitter so that many coordinators do not reconnect in step.
		d := wait + time.Duration(rand.Int64N(int64(wait)/4+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, in.cfg.Reconnect.Max)
	}
}

// streamOnce runs gerrit stream-events on one connection and handles
// events until it breaks; it returns how many lines it read.
func (in *Intake) streamOnce(ctx context.Context, s *server) (int, error) {
	name := s.cfg.Name
	c, err := s.ssh.dial(ctx)
	if err != nil {
		in.metrics.connects.WithLabelValues(name, "error").Inc()
		return 0, err
	}
	defer c.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(sctx, func() { c.Close() })
	sess, err := c.NewSession()
	if err != nil {
		in.metrics.connects.WithLabelValues(name, "error").Inc()
		return 0, fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	out, err := sess.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("stdout of stream-events: %w", err)
	}
	var stderr bytes.Buffer
	sess.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := sess.Start("gerrit stream-events"); err != nil {
		in.metrics.connects.WithLabelValues(name, "error").Inc()
		return 0, fmt.Errorf("start gerrit stream-events: %w", err)
	}
	in.metrics.connects.WithLabelValues(name, "ok").Inc()
	in.metrics.up.WithLabelValues(name).Set(1)
	in.logger.Info("event stream connected", "server", name)
	// Events may have been missed while disconnected.
	in.triggerReconcile(s)
	if in.cfg.Keepalive > 0 {
		go keepalive(sctx, c, in.cfg.Keepalive)
	}
	r := bufio.NewReaderSize(out, 64<<10)
	n := 0
	// Lines that arrived together are stored together, in one
	// transaction, before the next are read.
	var batch [][]byte
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := in.accept(ctx, s, batch, "stream")
		batch, size = batch[:0], 0
		if err != nil && !event.Refused(err) {
			// Not stored: the stream is opened again, and the
			// reconciler that runs then covers what it carried.
			return fmt.Errorf("store events: %w", err)
		}
		return nil
	}
	for {
		line, err := readLine(r)
		if len(line) > 0 && err == nil {
			n++
			batch, size = append(batch, line), size+len(line)
		}
		if err != nil || r.Buffered() == 0 || len(batch) >= streamBatch || size >= maxLine {
			if ferr := flush(); ferr != nil {
				return n, ferr
			}
		}
		if errors.Is(err, errLineTooLong) {
			in.metrics.malformed.WithLabelValues(name).Inc()
			in.logger.Warn("skipping event longer than the limit", "server", name, "limit", maxLine, "start", truncate(line, 512))
			continue
		}
		if err != nil {
			if len(line) > 0 {
				in.logger.Warn("stream ended in the middle of an event; the reconciler covers it", "server", name, "partial", truncate(line, 512))
			}
			c.Close()
			_ = sess.Wait() // lets the stderr copy finish
			if msg := bytes.TrimSpace(stderr.Bytes()); len(msg) > 0 {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return n, fmt.Errorf("read stream: %w", err)
		}
	}
}

// streamBatch bounds how many stream lines are stored in one transaction.
const streamBatch = 256

var errLineTooLong = errors.New("line too long")

// readLine reads one newline-terminated line of at most maxLine bytes. A
// longer line is consumed and reported as errLineTooLong with its start. A
// final line without newline is returned with io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > maxLine {
			start := append(buf, frag...)[:512]
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return start, err
			}
			return start, errLineTooLong
		}
		buf = append(buf, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return buf, err
		}
		return buf[:len(buf)-1], nil
	}
}

// keepalive probes the connection and closes it when the server stops
// answering, which ends the stream and triggers a reconnect.
func keepalive(ctx context.Context, c *ssh.Client, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				c.Close()
				return
			}
		case <-time.After(every):
			c.Close()
			return
		case <-ctx.Done():
			return
		}
	}
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

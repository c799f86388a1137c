// Package gerrittest is a stand-in for Gerrit's SSH daemon: it serves
// `gerrit stream-events` from a feed the test controls and records
// `gerrit review` calls. It speaks SSH with key authentication on loopback,
// queues events per stream like Gerrit does (reporting overflow with a
// dropped-output event), and can be killed and restarted on the same
// address.
package gerrittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Review is one recorded `gerrit review` call.
type Review struct {
	User string
	// Args are the command's arguments after "gerrit review", unquoted.
	Args     []string
	Change   int64
	PatchSet int64
	// Commit is set instead of Change and PatchSet when the call named a
	// commit.
	Commit  string
	Message string
	// Labels maps a label to its value as given, e.g. Verified → "+1".
	Labels map[string]string
	Tag    string
}

// Options tune the server.
type Options struct {
	// QueueSize is how many events a stream holds for a slow client before
	// dropping them (Gerrit then sends dropped-output); 100000 by default.
	QueueSize int
	// Accounts may log in, each with its key; the SSH user name is not
	// checked, the key decides the account as in Gerrit.
	Accounts []Account
	// GitRoot, when set, serves git-upload-pack over SSH (fetch and
	// ls-remote of ssh://host:port/{project}) from GitRoot/{project}.
	GitRoot string
	// Listen is the address to listen on; a free port of 127.0.0.1 when
	// empty.
	Listen string
	// HostKey is the server's host key; a new one when nil.
	HostKey ssh.Signer
}

// Account is a Gerrit account with an SSH key.
type Account struct {
	User string
	Key  ssh.PublicKey
}

// Server is the stand-in.
type Server struct {
	addr    string
	hostKey ssh.Signer
	config  *ssh.ServerConfig
	opts    Options

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	streams map[*stream]struct{}
	reviews []Review
	failing int           // review calls still to refuse
	gate    chan struct{} // while non-nil, streams hold their queues
	changed chan struct{} // closed and replaced on every state change
	wg      sync.WaitGroup
}

type stream struct {
	queue   chan []byte
	dropped chan struct{} // one token: overflow happened
	done    chan struct{}
	pending sync.WaitGroup
}

// Start runs a server on 127.0.0.1 that lets in opts.Accounts; it is
// closed when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New runs a server that lets in opts.Accounts, on opts.Listen or a free
// port of 127.0.0.1; Close stops it.
func New(opts Options) (*Server, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 100000
	}
	signer := opts.HostKey
	if signer == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		if signer, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
	}
	users := map[string]string{}
	for _, a := range opts.Accounts {
		users[string(a.Key.Marshal())] = a.User
	}
	s := &Server{
		hostKey: signer,
		opts:    opts,
		conns:   map[net.Conn]struct{}{},
		streams: map[*stream]struct{}{},
		changed: make(chan struct{}),
	}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			u, ok := users[string(key.Marshal())]
			if !ok {
				return nil, fmt.Errorf("unknown public key for %q", md.User())
			}
			return &ssh.Permissions{Extensions: map[string]string{"account": u}}, nil
		},
		ServerVersion: "SSH-2.0-GerritCodeReview_3.9.1 (APACHE-SSHD-2.12.0)",
	}
	s.config.AddHostKey(signer)
	addr := opts.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s, nil
}

// Addr is host:port of the SSH daemon.
func (s *Server) Addr() string { return s.addr }

// WriteKnownHosts writes a known_hosts file that trusts the server under
// its own address and the extra addresses given (e.g. a proxy's).
func (s *Server) WriteKnownHosts(path string, extra ...string) error {
	hosts := []string{knownhosts.Normalize(s.addr)}
	for _, a := range extra {
		hosts = append(hosts, knownhosts.Normalize(a))
	}
	line := knownhosts.Line(hosts, s.hostKey.PublicKey())
	return os.WriteFile(path, []byte(line+"\n"), 0o600)
}

// WriteClientKey writes a new unencrypted OpenSSH private key to path, as a
// Gerrit client reads it, and returns its public key for an Account.
func WriteClientKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	return WriteEncryptedClientKey(t, path, "")
}

// WriteEncryptedClientKey is WriteClientKey with the key encrypted with
// passphrase (unencrypted when it is empty).
func WriteEncryptedClientKey(t testing.TB, path, passphrase string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("client key: %v", err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("client key: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("client key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("client key: %v", err)
	}
	return sshPub
}

func (s *Server) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handleConn(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
		}
	}()
}

// Kill drops the listener and every connection at once, mid-event if one
// is being written; Restart brings the server back on the same address.
func (s *Server) Kill() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// Restart listens again on the address of before Kill.
func (s *Server) Restart() error {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() {
	s.Kill()
	s.wg.Wait()
}

func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) handleConn(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs) // keepalive@openssh.com gets "false", as from Gerrit
	gone := make(chan struct{})
	go func() {
		_ = sc.Wait()
		close(gone)
	}()
	account := sc.Permissions.Extensions["account"]
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleSession(account, ch, creqs, gone)
		}()
	}
	wg.Wait()
}

func (s *Server) handleSession(account string, ch ssh.Channel, reqs <-chan *ssh.Request, gone <-chan struct{}) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		status := s.exec(account, p.Command, ch, gone)
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func (s *Server) exec(account, command string, ch ssh.Channel, gone <-chan struct{}) uint32 {
	args := Split(command)
	if len(args) == 2 && args[0] == "git-upload-pack" && s.opts.GitRoot != "" {
		return s.uploadPack(args[1], ch)
	}
	if len(args) < 2 || args[0] != "gerrit" {
		fmt.Fprintf(ch.Stderr(), "fatal: %s: not found\n", strings.Join(args, " "))
		return 1
	}
	switch args[1] {
	case "stream-events":
		s.stream(ch, gone)
		return 0
	case "review":
		r, err := parseReview(args[2:])
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "fatal: %v\n", err)
			return 1
		}
		r.User = account
		s.mu.Lock()
		if s.failing > 0 {
			s.failing--
			s.mu.Unlock()
			fmt.Fprintf(ch.Stderr(), "fatal: Cannot post review: service unavailable\n")
			return 1
		}
		s.reviews = append(s.reviews, r)
		s.notify()
		s.mu.Unlock()
		return 0
	case "version":
		fmt.Fprintln(ch, "gerrit version 3.9.1")
		return 0
	}
	fmt.Fprintf(ch.Stderr(), "fatal: gerrit: %s: not found\n", args[1])
	return 1
}

func (s *Server) stream(ch ssh.Channel, gone <-chan struct{}) {
	st := &stream{
		queue:   make(chan []byte, s.opts.QueueSize),
		dropped: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.notify()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.notify()
		s.mu.Unlock()
		close(st.done)
		// Whatever is still queued is lost with the connection.
		for {
			select {
			case <-st.queue:
				st.pending.Done()
			default:
				return
			}
		}
	}()
	// Like Gerrit, the stream ignores the client's stdin (and its EOF) and
	// runs until the connection goes or a write fails.
	go func() { _, _ = io.Copy(io.Discard, ch) }()
	for {
		s.mu.Lock()
		gate := s.gate
		s.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-gone:
				return
			}
		}
		select {
		case <-gone:
			return
		case b := <-st.queue:
			_, err := ch.Write(b)
			st.pending.Done()
			if err != nil {
				return
			}
		case <-st.dropped:
			line := fmt.Sprintf(`{"type":"dropped-output","eventCreatedOn":%d}`+"\n", time.Now().Unix())
			if _, err := ch.Write([]byte(line)); err != nil {
				return
			}
		}
	}
}

// uploadPack runs git upload-pack for a project as Gerrit's SSH daemon does.
func (s *Server) uploadPack(path string, ch ssh.Channel) uint32 {
	project := strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	for _, part := range strings.Split(project, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, "-") {
			fmt.Fprintf(ch.Stderr(), "fatal: '%s': not a valid project name\n", path)
			return 1
		}
	}
	dir := filepath.Join(s.opts.GitRoot, filepath.FromSlash(project))
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(ch.Stderr(), "fatal: '%s': not found\n", project)
		return 1
	}
	cmd := exec.Command("git", "upload-pack", dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return uint32(exit.ExitCode())
		}
		fmt.Fprintf(ch.Stderr(), "fatal: %v\n", err)
		return 1
	}
	return 0
}

// Streams is how many clients are running stream-events.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// WaitStreams waits until at least n clients stream events.
func (s *Server) WaitStreams(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := len(s.streams), s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d event streams, have %d: %w", n, got, ctx.Err())
		case <-ch:
		}
	}
}

// Send queues one event line (a newline is added) for every stream
// connected now; streams whose queue is full drop it and get a
// dropped-output event instead, as from Gerrit.
func (s *Server) Send(line string) {
	s.SendRaw([]byte(line + "\n"))
}

// SendRaw queues raw bytes, e.g. half an event.
func (s *Server) SendRaw(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.pending.Add(1)
		select {
		case st.queue <- b:
		default:
			st.pending.Done()
			select {
			case st.dropped <- struct{}{}:
			default:
			}
		}
	}
}

// Hold stops streams from writing, as a client too slow to read would;
// events queue up (and overflow) until Release.
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// Release lets held streams write again.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

// Flush waits until every queued event was written to its connection.
func (s *Server) Flush(ctx context.Context) error {
	s.mu.Lock()
	var sts []*stream
	for st := range s.streams {
		sts = append(sts, st)
	}
	s.mu.Unlock()
	for _, st := range sts {
		done := make(chan struct{})
		go func() { st.pending.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("flush event streams: %w", ctx.Err())
		}
	}
	return nil
}

// FailReviews makes the next n review calls fail as an overloaded Gerrit
// does; they are not recorded.
func (s *Server) FailReviews(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = n
}

// Reviews returns the recorded review calls.
func (s *Server) Reviews() []Review {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Review(nil), s.reviews...)
}

// WaitReviews waits until at least n reviews were recorded.
func (s *Server) WaitReviews(ctx context.Context, n int) ([]Review, error) {
	for {
		s.mu.Lock()
		got, ch := append([]Review(nil), s.reviews...), s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for %d reviews, have %d: %w", n, len(got), ctx.Err())
		case <-ch:
		}
	}
}

// parseReview reads `gerrit review` options the way Gerrit does.
func parseReview(args []string) (Review, error) {
	r := Review{Args: args, Labels: map[string]string{}}
	var targets []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %q requires an operand", a)
			}
			i++
			return args[i], nil
		}
		name, inline, hasInline := strings.Cut(a, "=")
		if hasInline && strings.HasPrefix(a, "--") {
			a = name
		}
		get := func() (string, error) {
			if hasInline && strings.HasPrefix(args[i], "--") {
				return inline, nil
			}
			return val()
		}
		var err error
		switch a {
		case "--message", "-m":
			r.Message, err = get()
		case "--tag", "-t":
			r.Tag, err = get()
		case "--label", "-l":
			var l string
			if l, err = get(); err == nil {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return r, fmt.Errorf("%q is not a valid label; use NAME=VALUE", l)
				}
				if _, perr := strconv.Atoi(v); perr != nil {
					return r, fmt.Errorf("%q is not a valid value for label %s", v, k)
				}
				r.Labels[k] = v
			}
		case "--verified":
			var v string
			if v, err = get(); err == nil {
				r.Labels["Verified"] = v
			}
		case "--code-review":
			var v string
			if v, err = get(); err == nil {
				r.Labels["Code-Review"] = v
			}
		case "--notify", "-n", "--project", "-p", "--branch", "-b":
			_, err = get()
		case "--submit", "-s", "--abandon", "--restore", "--rebase", "--json", "-j", "--strict-labels":
		default:
			if strings.HasPrefix(a, "-") {
				return r, fmt.Errorf("%q is not a valid option", a)
			}
			targets = append(targets, a)
		}
		if err != nil {
			return r, err
		}
	}
	if len(targets) != 1 {
		return r, errors.New("exactly one {COMMIT | CHANGE,PATCHSET} is needed here")
	}
	if c, ps, ok := strings.Cut(targets[0], ","); ok {
		var err1, err2 error
		r.Change, err1 = strconv.ParseInt(c, 10, 64)
		r.PatchSet, err2 = strconv.ParseInt(ps, 10, 64)
		if err1 != nil || err2 != nil {
			return r, fmt.Errorf("%q is not a valid patch set", targets[0])
		}
	} else {
		r.Commit = targets[0]
	}
	return r, nil
}

// Split splits an SSH command line into words as Gerrit's daemon does:
// blanks separate words; single and double quotes group; a backslash
// outside single quotes takes the next character literally.
func Split(line string) []string {
	var out []string
	var cur strings.Builder
	inWord, single, double := false, false, false
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == '\'' && !double:
			single = !single
			inWord = true
		case c == '"' && !single:
			double = !double
			inWord = true
		case c == '\\' && !single && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case (c == ' ' || c == '\t') && !single && !double:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

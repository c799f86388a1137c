// Command gerrit-standin runs the Gerrit stand-in the tests use as a
// server an operator can point a coordinator at before production: it
// serves `gerrit stream-events` over SSH from a directory of event files,
// records `gerrit review` calls (printed to stdout as JSON lines) and,
// optionally, serves git fetches and ls-remote over SSH.
//
//	gerrit-standin --authorized-keys kiln.pub --events events/ --known-hosts known_hosts
//
// Every *.json file in the events directory holds one event per line, as
// Gerrit writes them; files are sent in name order once a stream is
// connected, and files added later are picked up within a second.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gerrit-standin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("gerrit-standin", flag.ContinueOnError)
	fl.SetOutput(stderr)
	listen := fl.String("listen", "127.0.0.1:29418", "SSH address")
	hostKeyFile := fl.String("host-key", "gerrit-standin-host-key", "host key (OpenSSH private key); made when missing")
	authorized := fl.String("authorized-keys", "", "authorized_keys file: the keys that may log in (required)")
	user := fl.String("user", "kiln", "the Gerrit account those keys log in as")
	knownHosts := fl.String("known-hosts", "", "write a known_hosts file trusting the stand-in here")
	events := fl.String("events", "", "directory of event files (*.json, one event per line)")
	gitRoot := fl.String("git-root", "", "serve git fetch and ls-remote of ssh://host:port/{project} from DIR/{project}")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *authorized == "" {
		return errors.New("--authorized-keys: required; name the public key(s) of the coordinator's Gerrit account")
	}
	keys, err := readAuthorizedKeys(*authorized)
	if err != nil {
		return err
	}
	hostKey, err := loadHostKey(*hostKeyFile)
	if err != nil {
		return err
	}
	var accounts []gerrittest.Account
	for _, k := range keys {
		accounts = append(accounts, gerrittest.Account{User: *user, Key: k})
	}
	srv, err := gerrittest.New(gerrittest.Options{Listen: *listen, HostKey: hostKey, Accounts: accounts, GitRoot: *gitRoot})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *knownHosts != "" {
		if err := srv.WriteKnownHosts(*knownHosts); err != nil {
			return fmt.Errorf("write known hosts: %w", err)
		}
	}
	fmt.Fprintf(stderr, "gerrit-standin: serving stream-events on %s\n", srv.Addr())
	done := make(chan error, 1)
	go func() { done <- printReviews(ctx, srv, stdout) }()
	if *events != "" {
		if err := feed(ctx, srv, *events, stderr); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return <-done
}

func readAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --authorized-keys: %w", err)
	}
	var keys []ssh.PublicKey
	for len(strings.TrimSpace(string(data))) > 0 {
		k, _, _, rest, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			return nil, fmt.Errorf("--authorized-keys %s: %w", path, err)
		}
		keys, data = append(keys, k), rest
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("--authorized-keys %s: no key in it", path)
	}
	return keys, nil
}

// loadHostKey reads the host key, making it first when it is missing, so
// that known_hosts stays valid across runs.
func loadHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("make host key: %w", err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "gerrit-standin")
		if err != nil {
			return nil, fmt.Errorf("make host key: %w", err)
		}
		data = pem.EncodeToMemory(block)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("write host key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read --host-key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("--host-key %s: %w", path, err)
	}
	return s, nil
}

// feed sends the event files of dir, in name order, to the connected
// streams, and those added later, until ctx ends. A file is sent once a
// stream is connected.
func feed(ctx context.Context, srv *gerrittest.Server, dir string, stderr io.Writer) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("--events: %w", err)
	}
	sent := map[string]bool{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		names, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			if sent[n] || srv.Streams() == 0 {
				continue
			}
			data, err := os.ReadFile(n)
			if err != nil {
				fmt.Fprintf(stderr, "gerrit-standin: %v\n", err)
				continue
			}
			lines := 0
			for _, l := range strings.Split(string(data), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					srv.Send(l)
					lines++
				}
			}
			sent[n] = true
			fmt.Fprintf(stderr, "gerrit-standin: sent %d events of %s to %d streams\n", lines, filepath.Base(n), srv.Streams())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// printReviews prints every gerrit review call as a JSON line.
func printReviews(ctx context.Context, srv *gerrittest.Server, out io.Writer) error {
	enc := json.NewEncoder(out)
	for n := 0; ; {
		revs, err := srv.WaitReviews(ctx, n+1)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, r := range revs[n:] {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		n = len(revs)
	}
}

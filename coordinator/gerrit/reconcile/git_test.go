package reconcile

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
)

// silentGitServer accepts connections and never answers, as a hung git
// server does; it returns the URL of a repository on it.
func silentGitServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return "http://" + ln.Addr().String() + "/acme/hung"
}

// processesWith lists the live processes whose command line contains s.
func processesWith(s string) []string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// A git server that accepts and never answers: the lookup ends at its
// timeout, with git's helper processes (git remote-http holds the pipe
// open) ended too, instead of waiting for the server forever.
func TestGitHeadsTimeoutEndsProcessTree(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "git")
	url := silentGitServer(t)
	g := &Git{Timeout: 500 * time.Millisecond}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := g.Heads(context.Background(), url)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "timed out after 500ms") {
			t.Errorf("Heads of a hung server: %v, want a timeout error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Heads of a hung server still running after %s; processes: %q", time.Since(start), processesWith(url))
	}
	if left := processesWith(strings.TrimPrefix(url, "http://")); len(left) > 0 {
		t.Errorf("processes left running after the lookup ended: %q", left)
	}
}

// git and ssh, run to read branch heads, do not inherit the environment
// variables that hold SSH key passphrases.
func TestGitDoesNotSeePassphraseVariables(t *testing.T) {
	t.Parallel()
	g := &Git{}
	g.AddSSH(GitSSH{URL: "ssh://kiln@review.example.org:29418/{project}", PrivateKeyFile: "/etc/kiln/gerrit_key",
		KnownHostsFile: "/etc/kiln/known_hosts", PassphraseEnv: "KILN_GERRIT_PASSPHRASE"})
	env := []string{"PATH=/usr/bin", "KILN_GERRIT_PASSPHRASE=hunter2", "HOME=/root", "KILN_GERRIT_PASSPHRASE_NOT=kept"}
	got := withoutVars(env, g.secretEnv)
	want := []string{"PATH=/usr/bin", "HOME=/root", "KILN_GERRIT_PASSPHRASE_NOT=kept"}
	if !slices.Equal(got, want) {
		t.Errorf("environment for git = %q, want %q", got, want)
	}
}

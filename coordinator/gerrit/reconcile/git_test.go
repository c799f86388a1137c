package reconcile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/gerrittest"
	"github.com/kiln-build/kiln/internal/testenv"
)

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
	url := gerrittest.SilentGitServer(t)
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

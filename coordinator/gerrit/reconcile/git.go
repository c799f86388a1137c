package reconcile

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/event"
)

// Git reads branch heads with git ls-remote.
type Git struct {
	// Timeout bounds one lookup; DefaultTimeout when zero.
	Timeout time.Duration
	ssh     []gitSSH
	// secretEnv are environment variables git and ssh must not see (the
	// SSH key passphrases).
	secretEnv []string
}

type gitSSH struct {
	prefix  string
	command string
}

// GitSSH is how git reaches one Gerrit server's repositories over SSH.
type GitSSH struct {
	// URL is the server's git_url, with {project}.
	URL string
	// PrivateKeyFile and KnownHostsFile are the server's.
	PrivateKeyFile, KnownHostsFile string
	// PassphraseEnv names the environment variable holding the key's
	// passphrase: git and ssh do not get to see it.
	PassphraseEnv string
}

// AddSSH makes ls-remote of the server's git URLs use its key and
// known_hosts file.
func (g *Git) AddSSH(sc GitSSH) {
	if sc.PassphraseEnv != "" {
		g.secretEnv = append(g.secretEnv, sc.PassphraseEnv)
	}
	prefix, _, _ := strings.Cut(sc.URL, "{project}")
	if !strings.HasPrefix(prefix, "ssh://") {
		return
	}
	g.ssh = append(g.ssh, gitSSH{
		prefix: prefix,
		command: fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s",
			shellQuote(sc.PrivateKeyFile), shellQuote(sc.KnownHostsFile)),
	})
}

// withoutVars returns env without the variables named in drop.
func withoutVars(env, drop []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains(drop, k) {
			out = append(out, kv)
		}
	}
	return out
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ErrTimeout is wrapped by the error of a lookup that took longer than
// its timeout; the event waiting for it is decided again later.
var ErrTimeout = errors.New("timed out")

// DefaultTimeout bounds one git ls-remote when git_timeout is unset.
const DefaultTimeout = time.Minute

// Heads runs git ls-remote --heads url. The lookup ends at the timeout
// with every process it started: git runs its transports (git remote-http,
// ssh) as children that would keep the output pipe open, so git runs in a
// process group of its own, which is killed as a whole.
func (g *Git) Heads(ctx context.Context, url string) (map[string]string, error) {
	if strings.HasPrefix(url, "-") {
		return nil, fmt.Errorf("git url %q: must not start with '-'", url)
	}
	timeout := cmp.Or(g.Timeout, DefaultTimeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("git ls-remote %s: %w after %s (gerrit.git_timeout)", url, ErrTimeout, timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "ls-remote", "--heads", url)
	cmd.Env = append(withoutVars(os.Environ(), g.secretEnv), "GIT_TERMINAL_PROMPT=0")
	for _, s := range g.ssh {
		if strings.HasPrefix(url, s.prefix) {
			cmd.Env = append(cmd.Env, "GIT_SSH_COMMAND="+s.command)
		}
	}
	// Pdeathsig: git does not outlive a coordinator that was killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// The negative pid names the process group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Should a process escape the group and hold the pipes, Wait still
	// returns.
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("git ls-remote %s: %w: %s", url, err, strings.TrimSpace(stderr.String()))
	}
	heads := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rev, ref, ok := strings.Cut(sc.Text(), "\t")
		if !ok || !event.IsCommit(rev) {
			continue
		}
		if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
			heads[b] = rev
		}
	}
	return heads, sc.Err()
}

// limitedWriter keeps the first n bytes written to w.
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

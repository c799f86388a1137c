package gerrit

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/coordinator/gerrit/decide"
	"github.com/kiln-build/kiln/coordinator/gerrit/event"
	"github.com/kiln-build/kiln/coordinator/gerrit/record"
	"github.com/kiln-build/kiln/coordinator/gerrit/transport"
)

// runReconciler reconciles one server's tracked branches whenever asked
// (after each reconnect, on dropped-output) and on the configured interval.
func (in *Intake) runReconciler(ctx context.Context, s *server) error {
	var tick <-chan time.Time
	if in.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(in.cfg.ReconcileInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.reconcile:
		case <-tick:
		}
		if err := in.Reconcile(ctx, s.cfg.Name); err != nil && ctx.Err() == nil {
			in.logger.Error("reconcile failed", "server", s.cfg.Name, "error", err)
		}
	}
}

// Reconcile compares every tracked branch of server with its head and
// queues a release build for each head not yet built or queued.
func (in *Intake) Reconcile(ctx context.Context, serverName string) error {
	s := in.servers[serverName]
	if s == nil {
		return fmt.Errorf("reconcile: no gerrit server %q", serverName)
	}
	tracked, err := in.store.Heads(ctx, serverName)
	if err != nil {
		in.metrics.reconciles.WithLabelValues(serverName, "error").Inc()
		return err
	}
	known := map[[2]string]string{}
	for _, h := range tracked {
		known[[2]string{h.Project, h.Branch}] = h.Revision
	}
	for _, t := range in.cfg.Track {
		if t.Server != serverName {
			continue
		}
		for _, b := range t.Branches {
			k := [2]string{t.Project, b}
			if _, ok := known[k]; !ok {
				known[k] = ""
				tracked = append(tracked, record.Head{Project: t.Project, Branch: b})
			}
		}
	}
	byProject := map[string][]record.Head{}
	var projects []string
	for _, h := range tracked {
		if _, ok := byProject[h.Project]; !ok {
			projects = append(projects, h.Project)
		}
		byProject[h.Project] = append(byProject[h.Project], h)
	}
	var errs []string
	queued := 0
	for _, p := range projects {
		heads, err := in.git.Heads(ctx, in.gitURL(s, p))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, h := range byProject[p] {
			cur := heads[h.Branch]
			if cur == "" || cur == h.Revision {
				continue
			}
			n, err := in.reconcileBranch(ctx, s, p, h.Branch, cur)
			if err != nil {
				errs = append(errs, err.Error())
			}
			queued += n
		}
	}
	in.logger.Debug("reconciled", "server", serverName, "branches", len(tracked), "queued", queued)
	if len(errs) > 0 {
		in.metrics.reconciles.WithLabelValues(serverName, "error").Inc()
		return fmt.Errorf("reconcile %s: %s", serverName, strings.Join(errs, "; "))
	}
	in.metrics.reconciles.WithLabelValues(serverName, "ok").Inc()
	return nil
}

func (in *Intake) reconcileBranch(ctx context.Context, s *server, project, branch, rev string) (int, error) {
	key := decide.BranchKey(s.cfg.Name, project, branch)
	if err := in.keys.lock(ctx, key); err != nil {
		return 0, err
	}
	defer in.wakeDecider() // events of the branch may have waited for the key
	defer in.keys.unlock(key)
	if _, dup, err := in.store.ReleaseQueued(ctx, s.cfg.Name, project, branch, rev); err != nil || dup {
		return 0, err
	}
	plan, ok, err := in.decider.Rules.Resolve(project, branch)
	if err != nil || !ok {
		return 0, err
	}
	ev := event.Event{Type: "reconcile", Project: project, Branch: branch, RefName: "refs/heads/" + branch, NewRev: rev, Revision: rev}
	in.logger.Info("branch head not built yet; queueing", "server", s.cfg.Name, "project", project, "branch", branch, "revision", rev)
	in.metrics.reconcileQueued.WithLabelValues(s.cfg.Name).Inc()
	return 1, in.queueRelease(ctx, s, stored{Event: ev}, plan, rev, "", "reconcile")
}

// gitHeads reads branch heads with git ls-remote.
type gitHeads struct {
	// timeout bounds one lookup.
	timeout time.Duration
	ssh     []gitSSH
	// secretEnv are environment variables git and ssh must not see (the
	// SSH key passphrases).
	secretEnv []string
}

type gitSSH struct {
	prefix  string
	command string
}

// addSSH makes ls-remote of the server's git URLs use its key and
// known_hosts file.
func (g *gitHeads) addSSH(sc ServerConfig) {
	if sc.PrivateKeyPassphraseEnv != "" {
		g.secretEnv = append(g.secretEnv, sc.PrivateKeyPassphraseEnv)
	}
	prefix, _, _ := strings.Cut(sc.GitURL, "{project}")
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

// errGitTimeout is wrapped by the error of a lookup that took longer than
// its timeout; the event waiting for it is decided again later.
var errGitTimeout = errors.New("timed out")

// defaultGitTimeout bounds one git ls-remote when git_timeout is unset.
const defaultGitTimeout = time.Minute

// Heads runs git ls-remote --heads url. The lookup ends at the timeout
// with every process it started: git runs its transports (git remote-http,
// ssh) as children that would keep the output pipe open, so git runs in a
// process group of its own, which is killed as a whole.
func (g *gitHeads) Heads(ctx context.Context, url string) (map[string]string, error) {
	if strings.HasPrefix(url, "-") {
		return nil, fmt.Errorf("git url %q: must not start with '-'", url)
	}
	timeout := cmp.Or(g.timeout, defaultGitTimeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("git ls-remote %s: %w after %s (gerrit.git_timeout)", url, errGitTimeout, timeout))
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
	cmd.Stderr = &transport.LimitedWriter{W: &stderr, N: 4096}
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

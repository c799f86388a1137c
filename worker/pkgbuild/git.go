package pkgbuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/worker/executor"
)

// commitRE matches a full SHA-1 or SHA-256 object name.
var commitRE = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// refRE matches refs the worker agrees to fetch: no option injection, no
// refspec syntax.
var refRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// badSourceError is a source that cannot be built as given: a missing
// commit, a malformed ref, a tree escaping its directory. It is the
// source's fault and retrying elsewhere does not help.
type badSourceError struct {
	Msg string
}

func (e *badSourceError) Error() string { return e.Msg }

func badSource(format string, args ...any) error {
	return &badSourceError{Msg: fmt.Sprintf(format, args...)}
}

// gitCache keeps one bare repository per source URL under dir.
type gitCache struct {
	dir       string
	timeout   time.Duration
	protocols string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newGitCache(dir string, timeout time.Duration, protocols []string) *gitCache {
	return &gitCache{dir: dir, timeout: timeout, protocols: strings.Join(protocols, ":"), locks: map[string]*sync.Mutex{}}
}

func (g *gitCache) lock(path string) func() {
	g.mu.Lock()
	l, ok := g.locks[path]
	if !ok {
		l = &sync.Mutex{}
		g.locks[path] = l
	}
	g.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// repoDir names the cache directory of a URL.
func (g *gitCache) repoDir(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(g.dir, hex.EncodeToString(sum[:12])+".git")
}

// git runs git in dir; its stderr goes to log and into the error.
func (g *gitCache) git(ctx context.Context, dir string, log io.Writer, stdout io.Writer, args ...string) error {
	return g.gitStdin(ctx, dir, nil, log, stdout, args...)
}

// gitStdin is git with stdin.
func (g *gitCache) gitStdin(ctx context.Context, dir string, stdin io.Reader, log io.Writer, stdout io.Writer, args ...string) error {
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/true",
		"GIT_CONFIG_NOSYSTEM=1",
		"LC_ALL=C",
		"GIT_ALLOW_PROTOCOL="+g.protocols,
	)
	var stderr bytes.Buffer
	if log != nil {
		cmd.Stderr = io.MultiWriter(&stderr, log)
	} else {
		cmd.Stderr = &stderr
	}
	cmd.Stdin, cmd.Stdout = stdin, stdout
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		if msg != "" {
			return fmt.Errorf("git %s: %w: %s", args[0], err, msg)
		}
		return fmt.Errorf("git %s: %w", args[0], err)
	}
	return nil
}

// hasCommit reports whether the repository holds commit.
func (g *gitCache) hasCommit(ctx context.Context, dir, commit string) bool {
	return g.git(ctx, dir, nil, io.Discard, "cat-file", "-e", commit+"^{commit}") == nil
}

// Fetch makes sure the cache holds src.Commit and returns the bare
// repository's path. A missing commit or a malformed source is a
// *badSourceError; an unreachable remote is any other error.
func (g *gitCache) Fetch(ctx context.Context, src executor.Source, log io.Writer) (string, error) {
	if !commitRE.MatchString(src.Commit) {
		return "", badSource("source %s: commit %q is not a full hexadecimal commit id; give the 40-character commit", src.URL, src.Commit)
	}
	if src.Ref != "" && (!refRE.MatchString(src.Ref) || strings.Contains(src.Ref, "..")) {
		return "", badSource("source %s: ref %q is not a valid git ref name", src.URL, src.Ref)
	}
	if src.URL == "" || strings.HasPrefix(src.URL, "-") || strings.ContainsAny(src.URL, "\n\r") {
		return "", badSource("source URL %q is not a git URL", src.URL)
	}
	if p := urlProtocol(src.URL); !slices.Contains(strings.Split(g.protocols, ":"), p) {
		return "", badSource("source URL %s uses the %s transport, which this worker does not allow (build.git_protocols: %s); use one of those", src.URL, p, strings.ReplaceAll(g.protocols, ":", ", "))
	}
	dir := g.repoDir(src.URL)
	defer g.lock(dir)()
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(g.dir, 0o755); err != nil {
			return "", fmt.Errorf("git cache %s: %w", g.dir, err)
		}
		tmp, err := os.MkdirTemp(g.dir, ".init-")
		if err != nil {
			return "", fmt.Errorf("git cache %s: %w", g.dir, err)
		}
		if err := g.git(ctx, tmp, nil, io.Discard, "init", "--quiet", "--bare", "."); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("init cache for %s: %w", src.URL, err)
		}
		os.RemoveAll(dir) // a half-made directory from an earlier crash
		if err := os.Rename(tmp, dir); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("git cache %s: %w", dir, err)
		}
	}
	if g.hasCommit(ctx, dir, src.Commit) {
		fmt.Fprintf(log, "kiln: %s: commit %s already in the worker's cache\n", src.URL, src.Commit)
		return dir, nil
	}
	fmt.Fprintf(log, "kiln: fetching %s %s\n", src.URL, src.Commit)
	// By commit first: servers that allow it send exactly what is needed.
	byCommit := g.git(ctx, dir, log, io.Discard, "fetch", "--quiet", "--no-tags", "--", src.URL,
		"+"+src.Commit+":refs/kiln/"+src.Commit)
	if byCommit == nil && g.hasCommit(ctx, dir, src.Commit) {
		return dir, nil
	}
	// Then by ref, or every branch and tag, which any server allows.
	refspecs := []string{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
	if src.Ref != "" {
		refspecs = []string{"+" + src.Ref + ":refs/kiln/ref"}
	}
	args := append([]string{"fetch", "--quiet", "--no-tags", "--", src.URL}, refspecs...)
	if err := g.git(ctx, dir, log, io.Discard, args...); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("fetch %s: %w", src.URL, ctx.Err())
		}
		if src.Ref != "" && strings.Contains(err.Error(), "couldn't find remote ref") {
			return "", badSource("source %s: ref %q does not exist there; check the ref", src.URL, src.Ref)
		}
		return "", fmt.Errorf("fetch %s: %w", src.URL, err)
	}
	if !g.hasCommit(ctx, dir, src.Commit) {
		where := "any branch or tag"
		if src.Ref != "" {
			where = "ref " + src.Ref
		}
		return "", badSource("source %s: commit %s not found (fetched %s); push the commit or correct the source", src.URL, src.Commit, where)
	}
	return dir, nil
}

// Archive writes `git archive` of commit as tar to w.
func (g *gitCache) Archive(ctx context.Context, dir, commit string, w io.Writer) error {
	if err := g.git(ctx, dir, nil, w, "archive", "--format=tar", commit); err != nil {
		return fmt.Errorf("archive %s: %w", commit, err)
	}
	return nil
}

// CommitTime returns the committer time of commit.
func (g *gitCache) CommitTime(ctx context.Context, dir, commit string) (time.Time, error) {
	var out bytes.Buffer
	if err := g.git(ctx, dir, nil, &out, "show", "-s", "--format=%ct", commit); err != nil {
		return time.Time{}, fmt.Errorf("commit time of %s: %w", commit, err)
	}
	var sec int64
	if _, err := fmt.Sscan(strings.TrimSpace(out.String()), &sec); err != nil {
		return time.Time{}, fmt.Errorf("commit time of %s: %q: %w", commit, out.String(), err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// urlProtocol names the git transport a URL uses, as GIT_ALLOW_PROTOCOL
// does: scheme://, scp-like host:path (ssh), or a local path (file).
func urlProtocol(url string) string {
	if i := strings.Index(url, "://"); i > 0 {
		return strings.ToLower(url[:i])
	}
	if i := strings.Index(url, "::"); i > 0 {
		return strings.ToLower(url[:i]) // remote helpers such as ext::
	}
	colon, slash := strings.IndexByte(url, ':'), strings.IndexByte(url, '/')
	if colon > 0 && (slash < 0 || colon < slash) {
		return "ssh"
	}
	return "file"
}

// isBadSource reports whether err is the source's fault.
func isBadSource(err error) (*badSourceError, bool) {
	var b *badSourceError
	ok := errors.As(err, &b)
	return b, ok
}

// pristineTarBranch is the branch pristine-tar keeps its deltas on.
const pristineTarBranch = "refs/heads/pristine-tar"

// FetchOptional fetches ref of src.URL into local (both full ref names)
// in the cached repository dir, and returns the commit it points to, or
// "" when the remote has no such ref.
func (g *gitCache) FetchOptional(ctx context.Context, dir string, src executor.Source, ref, local string, log io.Writer) (string, error) {
	defer g.lock(dir)()
	err := g.git(ctx, dir, nil, io.Discard, "fetch", "--quiet", "--no-tags", "--", src.URL, "+"+ref+":"+local)
	if err != nil && strings.Contains(err.Error(), "couldn't find remote ref") {
		// A ref fetched earlier and since deleted must not linger.
		_ = g.git(ctx, dir, nil, io.Discard, "update-ref", "-d", local)
		return "", nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("fetch %s %s: %w", src.URL, ref, ctx.Err())
		}
		return "", fmt.Errorf("fetch %s %s: %w", src.URL, ref, err)
	}
	var out bytes.Buffer
	if err := g.git(ctx, dir, nil, &out, "rev-parse", "--verify", "--quiet", local+"^{commit}"); err != nil {
		return "", badSource("source %s: %s is not a commit", src.URL, ref)
	}
	return strings.TrimSpace(out.String()), nil
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

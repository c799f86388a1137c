package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// localSource resolves a --source that names a local repository (a path,
// relative or absolute, or a file:// URL) to an absolute file:// URL, so
// that a worker never looks for it in its own directory. A path that does
// not exist or is not a git repository is bad usage. ok is false for a
// remote URL, which is left as it is.
func localSource(ctx context.Context, url string) (resolved string, ok bool, err error) {
	p, isFile := strings.CutPrefix(url, "file://")
	if !isFile {
		if strings.Contains(url, "://") || strings.Contains(url, "::") {
			return url, false, nil
		}
		colon, slash := strings.IndexByte(url, ':'), strings.IndexByte(url, '/')
		if colon > 0 && (slash < 0 || colon < slash) {
			return url, false, nil // scp-like host:path
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", true, usage("--source %q: %v", url, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", true, usage("--source %q: %s does not exist: give the path of a git repository or a URL", url, abs)
	}
	if err != nil {
		return "", true, usage("--source %q: %v", url, err)
	}
	if !st.IsDir() {
		return "", true, usage("--source %q: %s is not a directory, so not a git repository", url, abs)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	top, err := exec.CommandContext(cctx, "git", "-C", abs, "rev-parse", "--absolute-git-dir").Output()
	if err != nil || strings.TrimSpace(string(top)) == "" {
		return "", true, usage("--source %q: %s is not a git repository (git rev-parse found none)", url, abs)
	}
	return "file://" + abs, true, nil
}

// lsRemoteFailed classifies a failed git ls-remote of a remote URL: git
// says so when the repository does not exist (bad usage); anything else
// (DNS, refused connections, timeouts) is the infrastructure's.
func lsRemoteFailed(url, rev string, err error, stderr string) error {
	msg := fmt.Errorf("git ls-remote %s %s: %v: %s", url, rev, err, strings.TrimSpace(stderr))
	for _, s := range []string{"does not appear to be a git repository", "Repository not found", "not found"} {
		if strings.Contains(stderr, s) {
			return usage("--source %s: not a git repository (%v)", url, msg)
		}
	}
	return infra(msg)
}

package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/testenv"
)

// A local --source is resolved on the client to an absolute file URL, so
// a worker never looks for it in its own directory; a path that does not
// exist or is not a git repository is bad usage (exit 2), not an
// infrastructure failure a pipeline would retry.
func TestLocalSources(t *testing.T) {
	testenv.Tool(t, "git")
	ctx := context.Background()
	repo := t.TempDir()
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"-c", "user.name=T", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "one"}} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	cwd, _ := os.Getwd()
	rel, err := filepath.Rel(cwd, repo)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := ResolveSources(ctx, []string{rel + "@main"})
	if err != nil {
		t.Fatalf("relative path: %v", err)
	}
	if got := srcs[0].GetUrl(); got != "file://"+repo || len(srcs[0].GetCommit()) != 40 {
		t.Fatalf("relative %s resolved to %s@%s, want file://%s at a commit", rel, got, srcs[0].GetCommit(), repo)
	}
	notGit := t.TempDir()
	for name, c := range map[string]struct{ src, want string }{
		"missing":       {filepath.Join(repo, "nope") + "@main", "does not exist"},
		"missing rel":   {"repos/hello@main", "does not exist"},
		"not a repo":    {notGit + "@main", "not a git repository"},
		"missing file":  {"file://" + filepath.Join(repo, "nope") + "@main", "does not exist"},
		"missing ref":   {repo + "@nosuch", `no branch or tag "nosuch"`},
		"commit in dir": {notGit + "@" + strings.Repeat("a", 40), "not a git repository"},
	} {
		_, err := ResolveSources(ctx, []string{c.src})
		var ee *cmdline.ExitError
		if !errors.As(err, &ee) || ee.Code != cmdline.ExitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want exit 2 saying %q", name, err, c.want)
		}
	}
}

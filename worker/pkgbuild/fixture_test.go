package pkgbuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/executor"
)

// gitServer serves test repositories with a real `git daemon` on loopback.
type gitServer struct {
	base string
	port int
}

// newGitServer starts git daemon on a free loopback port for the test.
func newGitServer(t testing.TB) *gitServer {
	t.Helper()
	testenv.Tool(t, "git")
	base := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	// git-daemon itself, not the git wrapper, so that killing it stops it.
	cmd := exec.Command(filepath.Join(strings.TrimSpace(string(execPath)), "git-daemon"), "--export-all", "--reuseaddr", "--informative-errors",
		"--base-path="+base, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), base)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start git daemon: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("git daemon did not listen on port %d: %s", port, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &gitServer{base: base, port: port}
}

// url names a repository served by s.
func (s *gitServer) url(name string) string {
	return fmt.Sprintf("git://127.0.0.1:%d/%s", s.port, name)
}

// repo creates repository name from testdata/<from> (when not empty),
// applies edit to the working tree, commits and returns the commit.
func (s *gitServer) repo(t testing.TB, name, from string, edit func(dir string)) string {
	t.Helper()
	dir := filepath.Join(s.base, name)
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		runGit(t, dir, "init", "--quiet", "--initial-branch=main")
	}
	if from != "" {
		copyDir(t, filepath.Join("testdata", from), dir)
	}
	if edit != nil {
		edit(dir)
	}
	runGit(t, dir, "add", "--all")
	runGit(t, dir, "commit", "--quiet", "--allow-empty", "-m", "test commit")
	return strings.TrimSpace(runGit(t, dir, "rev-parse", "HEAD"))
}

func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Kiln Tests", "-c", "user.email=tests@kiln.invalid"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_DATE=2026-11-02T10:00:00Z", "GIT_COMMITTER_DATE=2026-11-02T10:00:00Z",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
	}
	return string(out)
}

// copyDir copies a testdata tree (files, dirs, executable bits).
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// hostSandbox is a fake executor.Sandbox that runs steps on the host, in
// the job's work dir, unless handle answers for the step. For unit tests
// only: nothing is isolated.
type hostSandbox struct {
	workDir string
	// hang, when set, names a command that runs until the context ends,
	// run directly or exec'd by a step's script.
	hang   string
	handle func(workDir string, step executor.Step, log io.Writer) (executor.StepResult, bool)

	mu     sync.Mutex
	steps  []executor.Step
	closed bool
}

func (s *hostSandbox) Exec(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error) {
	s.mu.Lock()
	s.steps = append(s.steps, step)
	s.mu.Unlock()
	if s.hang != "" && (step.Argv[0] == s.hang || strings.Contains(strings.Join(step.Argv, " "), "exec "+s.hang+" ")) {
		<-ctx.Done()
		return executor.StepResult{}, fmt.Errorf("exec %s: %w", s.hang, ctx.Err())
	}
	if s.handle != nil {
		if r, ok := s.handle(s.workDir, step, log); ok {
			return r, nil
		}
	}
	dir := step.Dir
	if dir == "" {
		dir = executor.SandboxWorkDir
	}
	rel, ok := strings.CutPrefix(dir, executor.SandboxWorkDir)
	if !ok {
		return executor.StepResult{}, fmt.Errorf("step dir %q is outside %s", dir, executor.SandboxWorkDir)
	}
	// Absolute paths in the buildroot name the work dir on the host.
	argv := make([]string, len(step.Argv))
	for i, a := range step.Argv {
		argv[i] = strings.ReplaceAll(a, executor.SandboxWorkDir+"/", s.workDir+"/")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(s.workDir, rel)
	cmd.Env = append(os.Environ(), step.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return executor.StepResult{ExitCode: ee.ExitCode()}, nil
	}
	if err != nil {
		return executor.StepResult{}, err
	}
	return executor.StepResult{}, nil
}

func (s *hostSandbox) ChrootDigest() string { return "sha256:fakechroot" }

func (s *hostSandbox) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// fakeOpener hands out hostSandboxes, or fails with err.
type fakeOpener struct {
	err    error
	hang   string
	handle func(workDir string, step executor.Step, log io.Writer) (executor.StepResult, bool)

	mu     sync.Mutex
	opened []*hostSandbox
}

func (o *fakeOpener) Open(ctx context.Context, target, workDir string) (executor.Sandbox, error) {
	if o.err != nil {
		return nil, o.err
	}
	sb := &hostSandbox{workDir: workDir, handle: o.handle, hang: o.hang}
	o.mu.Lock()
	o.opened = append(o.opened, sb)
	o.mu.Unlock()
	return sb, nil
}

// skipRootSteps answers phase 1 (root, network) without touching the host,
// listing two installed packages as phase 1 does.
func skipRootSteps(workDir string, step executor.Step, log io.Writer) (executor.StepResult, bool) {
	if !step.Root {
		return executor.StepResult{}, false
	}
	fmt.Fprintln(log, "fake: phase 1 skipped on the host")
	if strings.Contains(strings.Join(step.Argv, " "), "dnf") {
		// As in a buildroot without dnf.
		os.WriteFile(filepath.Join(workDir, stateDir, noDepsMarker), nil, 0o644)
	}
	os.WriteFile(filepath.Join(workDir, stateDir, installedFile), []byte("make\t4.3-4.1\tamd64\nlibc6\t2.36-9\tamd64\n"), 0o644)
	return executor.StepResult{}, true
}

// runTar lists a tarball with the system's tar.
func runTar(dir, name string) (string, error) {
	cmd := exec.Command("tar", "-tzf", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	return string(out), err
}

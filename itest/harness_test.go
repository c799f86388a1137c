// Package itest runs Kiln's binaries as real processes on loopback and
// checks what users see: exit codes, logs, artifacts, and what survives a
// killed process.
package itest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/internal/tlsconfig"

	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-itest-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range []string{"coordinator", "worker", "publisher", "mirror"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/kiln-build/kiln/"+b)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a started binary whose output goes to a file.
type proc struct {
	cmd *exec.Cmd
	log string
}

func start(t *testing.T, name, logName string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), logName+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	path := bin(name)
	if _, err := os.Stat(path); err != nil {
		path = name // a system tool such as git
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		p.kill()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log ---\n%s", logName, tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop on SIGTERM", p.cmd.Path)
		p.kill()
	}
}

type cluster struct {
	t *testing.T
	// clientTLS, when set, is what the CLI and the test's client present.
	clientTLS *tlsconfig.Files
	addr      string
	httpAddr  string
	state     string
	coord     *proc
	client    pb.CoordinatorServiceClient
}

func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, addr: freeAddr(t), httpAddr: freeAddr(t), state: t.TempDir()}
	c.startCoordinator(extra...)
	c.connect()
	return c
}

// connect makes the cluster's client for its coordinator address.
func (c *cluster) connect() {
	creds := insecure.NewCredentials()
	if c.clientTLS != nil {
		tc, err := tlsconfig.Client(*c.clientTLS)
		if err != nil {
			c.t.Fatal(err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	c.client = pb.NewCoordinatorServiceClient(conn)
}

func (c *cluster) startCoordinator(extra ...string) {
	cfg := filepath.Join(c.state, "coordinator.yaml")
	os.WriteFile(cfg, []byte("heartbeat_interval: 1s\nlost_after: 4s\nretry_cap: 3\n"), 0o644)
	args := append([]string{"serve", "--dev", "--config", cfg, "--state-dir", c.state, "--listen", c.addr, "--http-listen", c.httpAddr}, extra...)
	c.coord = start(c.t, "coordinator", "coordinator", args...)
	c.waitListening(c.addr)
}

func (c *cluster) waitListening(addr string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("nothing listens on %s", addr)
}

func (c *cluster) worker(name, labels string, slots int) *proc {
	return start(c.t, "worker", name, "run", "--dev", "--coordinator", c.addr, "--name", name, "--labels", labels,
		"--slots", fmt.Sprint(slots), "--work-dir", filepath.Join(c.t.TempDir(), name))
}

// run runs a command and returns stdout, stderr and exit code.
func run(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	return runEnv(t, nil, name, args...)
}

// runEnv is run with extra environment variables.
func runEnv(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	return runEnvTimeout(t, 2*time.Minute, env, name, args...)
}

// runEnvTimeout is runEnv with a limit of d.
func runEnvTimeout(t *testing.T, d time.Duration, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// cli runs the coordinator CLI against the cluster and returns stdout,
// stderr and exit code.
func (c *cluster) cli(args ...string) (string, string, int) {
	c.t.Helper()
	return c.cliTimeout(2*time.Minute, args...)
}

func (c *cluster) waitJobs(ids []string, timeout time.Duration) map[string]*pb.Job {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	out := map[string]*pb.Job{}
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if _, done := out[id]; done {
				continue
			}
			r, err := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
			if err != nil {
				continue
			}
			switch r.GetJob().GetState() {
			case pb.JobState_JOB_STATE_QUEUED, pb.JobState_JOB_STATE_RUNNING:
			default:
				out[id] = r.GetJob()
			}
		}
		if len(out) == len(ids) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	var pending []string
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			pending = append(pending, id)
		}
	}
	c.t.Fatalf("jobs not finished after %s: %s", timeout, strings.Join(pending, ","))
	return nil
}

func (c *cluster) submit(spec *pb.JobSpec) string {
	c.t.Helper()
	r, err := c.client.SubmitJob(context.Background(), &pb.SubmitJobRequest{Spec: spec})
	if err != nil {
		c.t.Fatalf("submit: %v", err)
	}
	return r.GetJob().GetId()
}

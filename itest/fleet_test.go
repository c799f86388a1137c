package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/protocol"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

func cmdJob(labels map[string]string, script string, globs ...string) *pb.JobSpec {
	return &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: labels, Command: []string{"sh", "-c", script}, ArtifactGlobs: globs}
}

func TestThirtyJobsWithAWorkerKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	w1 := c.worker("w1", "os=linux", 2)
	c.worker("w2", "os=linux", 2)
	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, c.submit(cmdJob(map[string]string{"os": "linux"},
			fmt.Sprintf("mkdir -p out && echo job-%d-$KILN_JOB_ID > out/result.txt && sleep 0.4", i), "out/*")))
	}
	// Kill w1 while it is running jobs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := c.client.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
		if err == nil {
			busy := false
			for _, w := range r.GetWorkers() {
				if w.GetName() == "w1" && len(w.GetRunningJobs()) > 0 {
					busy = true
				}
			}
			if busy {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("w1 never ran a job")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w1.kill()

	done := c.waitJobs(ids, 2*time.Minute)
	requeued := 0
	for i, id := range ids {
		j := done[id]
		if j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("job %s: %s %s", id, j.GetState(), j.GetReason())
			continue
		}
		if j.GetAttempt() > 1 {
			requeued++
			if j.GetWorker() != "w2" {
				t.Errorf("job %s re-ran on %s", id, j.GetWorker())
			}
		}
		// Exactly one result was accepted.
		logText := c.logOf(id)
		if n := strings.Count(logText, "finished: succeeded"); n != 1 {
			t.Errorf("job %s finished %d times:\n%s", id, n, logText)
		}
		// The artifact matches its digest and content.
		if len(j.GetArtifacts()) != 1 {
			t.Errorf("job %s artifacts %v", id, j.GetArtifacts())
			continue
		}
		a := j.GetArtifacts()[0]
		data := c.fetch(id, a.GetName())
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != a.GetSha256() || string(data) != fmt.Sprintf("job-%d-%s\n", i, id) {
			t.Errorf("job %s artifact %q does not match digest %s", id, data, a.GetSha256())
		}
	}
	if requeued == 0 {
		t.Error("no job was re-queued after w1 was killed")
	}
	r, _ := c.client.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
	for _, w := range r.GetWorkers() {
		if w.GetName() == "w1" && w.GetState() != pb.WorkerState_WORKER_STATE_LOST {
			t.Errorf("w1 state %s, want lost", w.GetState())
		}
	}
}

func (c *cluster) logOf(id string) string {
	c.t.Helper()
	s, err := c.client.StreamJobLog(context.Background(), &pb.StreamJobLogRequest{Id: id})
	if err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			c.t.Fatal(err)
		}
		b.Write(m.GetData())
	}
}

func (c *cluster) fetch(id, name string) []byte {
	c.t.Helper()
	s, err := c.client.GetArtifact(context.Background(), &pb.GetArtifactRequest{JobId: id, Name: name})
	if err != nil {
		c.t.Fatal(err)
	}
	var out []byte
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, m.GetChunk()...)
	}
}

func TestCoordinatorRestartLosesNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, c.submit(cmdJob(map[string]string{"pool": "later"}, "echo run-"+fmt.Sprint(i))))
	}
	// A running job survives too: its worker re-attaches after the restart.
	c.worker("long", "pool=long", 1)
	long := c.submit(cmdJob(map[string]string{"pool": "long"}, "sleep 3; echo long-done"))
	c.waitState(long, pb.JobState_JOB_STATE_RUNNING)

	c.coord.kill() // SIGKILL: no chance to flush anything
	c.startCoordinator()
	for _, id := range ids {
		r, err := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
		if err != nil || r.GetJob().GetState() != pb.JobState_JOB_STATE_QUEUED {
			t.Fatalf("job %s after restart: %v %v", id, r.GetJob().GetState(), err)
		}
	}
	c.worker("w1", "pool=later", 2)
	done := c.waitJobs(append(ids, long), 3*time.Minute)
	for id, j := range done {
		if j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
			t.Errorf("job %s: %s %s", id, j.GetState(), j.GetReason())
		}
	}
	if a := done[long].GetAttempt(); a != 1 {
		t.Errorf("running job was re-run (attempt %d) instead of re-attached", a)
	}
	if l := c.logOf(long); !strings.Contains(l, "long-done") {
		t.Errorf("log of re-attached job lacks its output:\n%s", l)
	}
}

func (c *cluster) waitState(id string, want pb.JobState) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r, err := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: id})
		if err == nil && r.GetJob().GetState() == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("job %s never reached %s", id, want)
}

func TestCLIRunExitCodesAndLogs(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.worker("w1", "os=linux", 1)
	out, errOut, code := c.cli("run", "--labels", "os=linux", "--wait", "--", "sh", "-c", "echo compiling; echo broken >&2; exit 7")
	if code != 1 || !strings.Contains(out, "compiling") || !strings.Contains(out, "broken") || !strings.Contains(errOut, "exit status 7") {
		t.Fatalf("failing job: code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	out, _, code = c.cli("run", "--labels", "os=linux", "--wait", "--artifacts", "*.txt", "--", "sh", "-c", "echo ok > r.txt; echo fine")
	if code != 0 || !strings.Contains(out, "fine") || !strings.Contains(out, "artifact r.txt") {
		t.Fatalf("passing job: code %d\n%s", code, out)
	}
	_, errOut, code = c.cli("run", "--labels", "os=linux", "--wait")
	if code != 2 || !strings.Contains(errOut, "no command") {
		t.Fatalf("no command: code %d %s", code, errOut)
	}
	_, errOut, code = c.cli("run", "--server", "127.0.0.1:1", "--labels", "os=linux", "--wait", "--", "true")
	if code != 3 {
		t.Fatalf("unreachable coordinator: code %d %s", code, errOut)
	}
	_, errOut, code = c.cli("run", "--server", "192.0.2.1:7420", "--", "true")
	if code != 2 || !strings.Contains(errOut, "loopback") {
		t.Fatalf("plaintext to a remote address: code %d %s", code, errOut)
	}
	out, _, code = c.cli("jobs", "list", "--json")
	if code != 0 || !strings.Contains(out, `"state": "JOB_STATE_FAILED"`) {
		t.Fatalf("jobs list --json: %d %s", code, out)
	}
}

func TestWaitingReasonWhenNoWorkerMatches(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.worker("w1", "target=bookworm", 1)
	id := c.submit(cmdJob(map[string]string{"target": "centos7"}, "true"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, _ := c.cli("jobs", "show", id)
		if strings.Contains(out, "no worker has label target=centos7") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs show never said why:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The same when following it from the CLI: the reason is printed while
	// waiting; once it is, cancel the job so the wait ends with exit 1.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errOut := &watchWriter{want: "waiting: no worker has label target=centos7", seen: make(chan struct{})}
	cmd := exec.CommandContext(ctx, bin("coordinator"), "jobs", "logs", id, "--follow")
	cmd.Env = append(os.Environ(), "KILN_SERVER="+c.addr)
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-errOut.seen:
		if _, err := c.client.CancelJob(ctx, &pb.CancelJobRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(errOut.String(), errOut.want) {
		t.Fatalf("follow: %d %s", code, errOut.String())
	}
}

// watchWriter keeps what is written and closes seen once it holds want.
type watchWriter struct {
	want string
	seen chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestBadInputIsRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	bad := []struct {
		name string
		spec *pb.JobSpec
		msg  string
	}{
		{"no spec", nil, "spec is required"},
		{"no command", &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND}, "without a command"},
		{"no kind", &pb.JobSpec{Command: []string{"true"}}, "kind"},
		{"bad label", &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Command: []string{"true"}, Labels: map[string]string{"a b": "c"}}, `label "a b"`},
		{"escaping glob", &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Command: []string{"true"}, ArtifactGlobs: []string{"../etc/*"}}, "escapes"},
		{"absolute glob", &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Command: []string{"true"}, ArtifactGlobs: []string{"/etc/passwd"}}, "absolute"},
		{"short commit", &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_PACKAGE_BUILD, PackageBuild: &pb.PackageBuild{Release: "r", Target: "t", Package: "p",
			Sources: []*pb.Source{{Url: "git://x/y", Commit: "abc", Role: pb.SourceRole_SOURCE_ROLE_COMBINED}}}}, "full 40-hex commit"},
	}
	for _, b := range bad {
		_, err := c.client.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: b.spec})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("%s: %v, want InvalidArgument containing %q", b.name, err, b.msg)
		}
	}
	// A worker that uploads content not matching its digest, or a name
	// escaping its work dir, is refused.
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wc := wpb.NewWorkerServiceClient(conn)
	reg, err := wc.Register(ctx, &wpb.RegisterRequest{Name: "fake", Labels: map[string]string{"fake": "1"}, Slots: 1, ProtocolVersion: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	id := c.submit(cmdJob(map[string]string{"fake": "1"}, "true"))
	pull, err := wc.PullJob(ctx, &wpb.PullJobRequest{SessionId: reg.GetSessionId(), WaitSeconds: 5})
	if err != nil || pull.GetAssignment().GetJobId() != id {
		t.Fatalf("pull: %v %v", pull, err)
	}
	upload := func(name, sum string, size int64, data string) error {
		s, err := wc.UploadArtifact(ctx)
		if err != nil {
			return err
		}
		s.Send(&wpb.UploadArtifactRequest{Header: &wpb.ArtifactHeader{SessionId: reg.GetSessionId(), JobId: id, Attempt: 1,
			Artifact: &pb.Artifact{Name: name, Sha256: sum, Size: size}}})
		s.Send(&wpb.UploadArtifactRequest{Chunk: []byte(data)})
		_, err = s.CloseAndRecv()
		return err
	}
	good := sha256.Sum256([]byte("hello"))
	goodSum := hex.EncodeToString(good[:])
	other := sha256.Sum256([]byte("other"))
	cases := []struct {
		name, art, sum string
		size           int64
		msg            string
	}{
		{"wrong digest", "a.txt", hex.EncodeToString(other[:]), 5, "content has sha256"},
		{"wrong size", "a.txt", goodSum, 4, "received 5 bytes"},
		{"escaping name", "../../etc/passwd", goodSum, 5, "escapes"},
		{"absolute name", "/etc/passwd", goodSum, 5, "absolute"},
	}
	for _, tc := range cases {
		err := upload(tc.art, tc.sum, tc.size, "hello")
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Completing with an artifact that never arrived is refused; the good
	// upload then completes.
	_, err = wc.CompleteJob(ctx, &wpb.CompleteJobRequest{SessionId: reg.GetSessionId(), JobId: id, Attempt: 1,
		Artifacts: []*pb.Artifact{{Name: "a.txt", Sha256: hex.EncodeToString(other[:]), Size: 5}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("complete with missing artifact: %v", err)
	}
	if err := upload("a.txt", goodSum, 5, "hello"); err != nil {
		t.Fatal(err)
	}
	art := []*pb.Artifact{{Name: "a.txt", Sha256: goodSum, Size: 5}}
	if _, err := wc.CompleteJob(ctx, &wpb.CompleteJobRequest{SessionId: reg.GetSessionId(), JobId: id, Attempt: 1, Artifacts: art}); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.CompleteJob(ctx, &wpb.CompleteJobRequest{SessionId: reg.GetSessionId(), JobId: id, Attempt: 1, Artifacts: art}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second result: %v, want FailedPrecondition", err)
	}
	if got := string(c.fetch(id, "a.txt")); got != "hello" {
		t.Errorf("artifact %q", got)
	}
}

func TestSymlinkArtifactIsNotCollected(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.worker("w1", "os=linux", 1)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("do not upload"), 0o600)
	out, _, code := c.cli("run", "--labels", "os=linux", "--wait", "--artifacts", "*", "--", "sh", "-c", "ln -s "+secret+" leak; echo fine > ok.txt")
	if code != 0 || !strings.Contains(out, "artifact leak refused: it is a symlink") || !strings.Contains(out, "artifact ok.txt") {
		t.Fatalf("code %d\n%s", code, out)
	}
}

func TestWorkerGracefulShutdownFinishesJob(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	w := c.worker("w1", "os=linux", 1)
	id := c.submit(cmdJob(map[string]string{"os": "linux"}, "sleep 2; echo finished-late"))
	c.waitState(id, pb.JobState_JOB_STATE_RUNNING)
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	j := c.waitJobs([]string{id}, time.Minute)[id]
	if j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED || j.GetAttempt() != 1 {
		t.Fatalf("job after graceful shutdown: %s attempt %d %s", j.GetState(), j.GetAttempt(), j.GetReason())
	}
	w.stop(t)
	r, _ := c.client.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
	if len(r.GetWorkers()) != 1 || r.GetWorkers()[0].GetState() != pb.WorkerState_WORKER_STATE_OFFLINE {
		t.Fatalf("workers %v", r.GetWorkers())
	}
}

func TestDrainAndSupersede(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.worker("w1", "os=linux", 1)
	waitWorker := func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			r, _ := c.client.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
			if len(r.GetWorkers()) == 1 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("worker never registered")
	}
	waitWorker()
	out, _, code := c.cli("workers", "drain", "w1")
	if code != 0 || !strings.Contains(out, "worker w1 draining") {
		t.Fatalf("drain: %d %s", code, out)
	}
	older := c.submit(&pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: map[string]string{"os": "linux"}, Command: []string{"true"}, SupersedeKey: "change-1"})
	newer := c.submit(&pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: map[string]string{"os": "linux"}, Command: []string{"true"}, SupersedeKey: "change-1"})
	r, _ := c.client.GetJob(context.Background(), &pb.GetJobRequest{Id: newer})
	if !strings.Contains(r.GetJob().GetWaitingReason(), "draining: w1") {
		t.Fatalf("waiting reason %q", r.GetJob().GetWaitingReason())
	}
	if _, _, code := c.cli("workers", "undrain", "w1"); code != 0 {
		t.Fatal("undrain failed")
	}
	done := c.waitJobs([]string{older, newer}, 30*time.Second)
	if done[older].GetState() != pb.JobState_JOB_STATE_CANCELED || !strings.Contains(done[older].GetReason(), "superseded by job "+newer) {
		t.Errorf("older: %s %s", done[older].GetState(), done[older].GetReason())
	}
	if done[newer].GetState() != pb.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("newer: %s", done[newer].GetState())
	}
}

func TestWorkerShutdownHandsBackLongJob(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "w1.yaml")
	os.WriteFile(cfg, []byte("shutdown_grace: 1s\n"), 0o644)
	w1 := start(t, "worker", "w1", "run", "--dev", "--config", cfg, "--coordinator", c.addr, "--name", "w1", "--labels", "pool=a", "--work-dir", filepath.Join(dir, "w1"))
	marker := filepath.Join(dir, "marker")
	id := c.submit(cmdJob(map[string]string{"pool": "a"}, "if [ -e "+marker+" ]; then echo second-attempt; else touch "+marker+"; sleep 60; fi"))
	c.waitState(id, pb.JobState_JOB_STATE_RUNNING)
	start := time.Now()
	w1.stop(t)
	// The job would sleep 60 s: a worker that waited for it would take that.
	if d := time.Since(start); d > 45*time.Second {
		t.Errorf("worker took %s to stop with a 1s grace", d)
	}
	c.worker("w2", "pool=a", 1)
	j := c.waitJobs([]string{id}, time.Minute)[id]
	if j.GetState() != pb.JobState_JOB_STATE_SUCCEEDED || j.GetAttempt() != 2 || j.GetWorker() != "w2" {
		t.Fatalf("handed-back job: %s attempt %d on %s: %s", j.GetState(), j.GetAttempt(), j.GetWorker(), j.GetReason())
	}
	if l := c.logOf(id); !strings.Contains(l, "second-attempt") || !strings.Contains(l, "shut down before finishing") {
		t.Fatalf("log:\n%s", l)
	}
}

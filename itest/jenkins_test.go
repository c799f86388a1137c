package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/internal/protocol"
	"github.com/kiln-build/kiln/internal/testenv"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// TestJenkinsExitCodes goes through every row of issue 13's table with the
// real coordinator, publisher and CLI binaries, as a Jenkins pipeline
// calls them, and checks the exit code and what the pipeline's console
// says. The package builds themselves are made by a stand-in worker
// speaking the worker protocol (no buildroot needed): what is under test
// is what the coordinator and the CLI do around them.
func TestJenkinsExitCodes(t *testing.T) {
	for _, tool := range []string{"git", "gpg", "dpkg-deb"} {
		testenv.Tool(t, tool)
	}
	dir := t.TempDir()
	repos := filepath.Join(dir, "repos")
	hello := filepath.Join(repos, "hello")
	os.MkdirAll(hello, 0o755)
	g := &gitServer{}
	g.git(t, hello, "init", "-q", "-b", "main")
	g.git(t, hello, "-c", "user.name=T", "-c", "user.email=t@kiln.invalid", "commit", "-q", "--allow-empty", "-m", "one")
	notGit := filepath.Join(dir, "plain")
	os.MkdirAll(notGit, 0o755)

	// A publisher with one repository, rel-bookworm-amd64.
	gnupg := filepath.Join(dir, "gnupg")
	os.MkdirAll(gnupg, 0o700)
	gpg := func(args ...string) []byte {
		out, err := exec.Command("gpg", append([]string{"--batch", "--quiet", "--homedir", gnupg}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg("--passphrase", "", "--quick-gen-key", "Kiln Test <repo@kiln.invalid>", "ed25519", "sign", "never")
	os.WriteFile(filepath.Join(dir, "key.asc"), gpg("--armor", "--export-secret-keys"), 0o600)
	pubAddr := freeAddr(t)
	pubCfg := filepath.Join(dir, "publisher.yaml")
	os.WriteFile(pubCfg, []byte(fmt.Sprintf(`root: %s
signing:
  key_file: %s
repositories:
  - name: rel-bookworm-amd64
    format: deb
    suite: bookworm
serve:
  listen: %s
  dev: true
`, filepath.Join(dir, "publisher"), filepath.Join(dir, "key.asc"), pubAddr)), 0o644)
	publisher := start(t, "publisher", "publisher", "serve", "--config", pubCfg)
	c := &cluster{t: t, addr: freeAddr(t), httpAddr: freeAddr(t), state: t.TempDir()}
	c.waitListening(pubAddr)

	// The coordinator: release rel has three targets; no worker serves
	// bookworm-arm64, and the publisher has no repository for trixie-amd64.
	coordCfg := filepath.Join(dir, "coordinator.yaml")
	os.WriteFile(coordCfg, []byte(fmt.Sprintf(`heartbeat_interval: 1s
lost_after: 10s
queue_timeout: 6s
releases:
  rel:
    deb_suffix: "+rel{revision}"
    targets:
      bookworm-amd64: deb
      bookworm-arm64: deb
      trixie-amd64: deb
publisher:
  address: %s
  dev: true
  retry_interval: 300ms
`, pubAddr)), 0o644)
	c.coord = start(t, "coordinator", "coordinator", "serve", "--dev", "--config", coordCfg, "--state-dir", c.state, "--listen", c.addr, "--http-listen", c.httpAddr)
	c.waitListening(c.addr)
	c.connect()
	startFakeBuilder(t, c.addr, map[string][]byte{"hello": makeDeb(t, dir, "hello"), "broken": []byte("this is not a Debian package\n")})

	build := func(args ...string) (string, string, int) {
		t.Helper()
		return c.cli(append([]string{"build", "--release", "rel", "--target", "bookworm-amd64", "--package", "hello", "--source", hello + "@main"}, args...)...)
	}
	expect := func(row string, code, want int, errOut string, says ...string) {
		t.Helper()
		if code != want {
			t.Errorf("%s: exit %d, want %d\n%s", row, code, want, errOut)
			return
		}
		for _, s := range says {
			if !strings.Contains(errOut, s) {
				t.Errorf("%s: the console does not say %q:\n%s", row, s, errOut)
			}
		}
	}

	// Row 1: a typo in --release is refused at submit, naming the releases.
	_, errOut, code := build("--release", "prob", "--publish", "--wait")
	expect("unknown release", code, 2, errOut, `release "prob" is not configured`, "use one of rel")

	// Row 2: a target the release does not have is refused, naming its
	// targets; a configured target no worker serves waits until --timeout,
	// then exits 3 with the reason, and the server's queue_timeout ends it.
	_, errOut, code = build("--target", "bookworm-i386", "--wait")
	expect("unknown target", code, 2, errOut, `target "bookworm-i386" is not a target of release rel`, "bookworm-amd64, bookworm-arm64, trixie-amd64")
	started := time.Now()
	_, errOut, code = build("--target", "bookworm-arm64", "--wait", "--timeout", "2s")
	expect("no worker, --timeout", code, 3, errOut, "gave up waiting", "after 2s", "no worker has label target=bookworm-arm64")
	if d := time.Since(started); d > 30*time.Second {
		t.Errorf("--timeout 2s took %s", d)
	}
	stuck := jobID(t, errOut)
	_, errOut, code = c.cli("jobs", "logs", stuck, "--follow")
	expect("queue_timeout", code, 3, errOut, "job "+stuck+" error: no worker has label target=bookworm-arm64 for 6s")

	// Row 3: a --source path that does not exist, or is not a git
	// repository, is bad usage.
	_, errOut, code = c.cli("build", "--release", "rel", "--target", "bookworm-amd64", "--package", "hello", "--source", filepath.Join(dir, "nope")+"@main")
	expect("missing source", code, 2, errOut, "does not exist")
	_, errOut, code = c.cli("build", "--release", "rel", "--target", "bookworm-amd64", "--package", "hello", "--source", notGit+"@main")
	expect("not a repository", code, 2, errOut, "not a git repository")

	// Row 4: a relative --source is resolved on the client; the build and
	// its publish succeed.
	out, errOut, code := c.cliIn(dir, "build", "--release", "rel", "--target", "bookworm-amd64", "--package", "hello", "--source", "repos/hello@main", "--publish", "--wait")
	expect("relative source", code, 0, errOut, "publish: published", "published at")
	if !strings.Contains(out, "fake build of hello") {
		t.Errorf("relative source: the log was not streamed:\n%s", out)
	}
	first := jobID(t, errOut)
	show, _, _ := c.cli("jobs", "show", first, "--json")
	if !strings.Contains(show, `"url": "file://`+hello+`"`) {
		t.Errorf("the relative source was not sent as an absolute file URL:\n%s", show)
	}

	// Row 7: --wait on a deduplicated request names the job it reuses,
	// its result and where it was published, without replaying its log.
	out, errOut, code = build("--publish", "--wait")
	expect("deduplicated", code, 0, errOut, "already built by job "+first, "reusing job "+first, "coordinator jobs logs "+first,
		"job "+first+" succeeded; published at ")
	if strings.Contains(out, "fake build of hello") {
		t.Errorf("deduplicated: the earlier job's log was replayed:\n%s", out)
	}

	// Row 6: a publish that can never succeed ends with the reason: exit 1
	// when the publisher refused the package, 3 when it has no repository
	// for it; jobs list and jobs show say so.
	_, errOut, code = c.cli("build", "--release", "rel", "--target", "bookworm-amd64", "--package", "broken", "--source", hello+"@main", "--publish", "--wait")
	expect("refused package", code, 1, errOut, "the publisher refused the package")
	refused := jobID(t, errOut)
	_, errOut, code = build("--target", "trixie-amd64", "--publish", "--wait")
	expect("unknown repository", code, 3, errOut, "not published", `repository "rel-trixie-amd64"`, "not found")
	unknownRepo := jobID(t, errOut)
	list, _, code := c.cli("jobs", "list", "--release", "rel")
	for _, w := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^` + refused + `\s+succeeded\s.*\srefused\s`),
		regexp.MustCompile(`(?m)^` + unknownRepo + `\s+succeeded\s.*\sfailed\s`),
		regexp.MustCompile(`(?m)^` + first + `\s+succeeded\s.*\spublished\s`),
	} {
		if code != 0 || !w.MatchString(list) {
			t.Errorf("jobs list does not match %s:\n%s", w, list)
		}
	}
	show, _, _ = c.cli("jobs", "show", unknownRepo)
	if !regexp.MustCompile(`publish:\s+failed`).MatchString(show) || !strings.Contains(show, "rel-trixie-amd64") {
		t.Errorf("jobs show of the failed publish:\n%s", show)
	}
	// Filters and pages run in the coordinator.
	list, _, _ = c.cli("jobs", "list", "--package", "broken", "--json")
	if strings.Count(list, `"id":`) != 1 || !strings.Contains(list, `"id": "`+refused+`"`) {
		t.Errorf("jobs list --package broken:\n%s", list)
	}
	list, errOut, _ = c.cli("jobs", "list", "--release", "rel", "--state", "succeeded", "--limit", "1")
	token := regexp.MustCompile(`--page-token (\S+)`).FindStringSubmatch(errOut)
	if token == nil || !strings.Contains(list, unknownRepo) {
		t.Fatalf("jobs list --limit 1: no next page offered:\n%s\n%s", list, errOut)
	}
	list, _, _ = c.cli("jobs", "list", "--release", "rel", "--state", "succeeded", "--limit", "1", "--page-token", token[1])
	if !regexp.MustCompile(`(?m)^` + refused + `\s`).MatchString(list) {
		t.Errorf("the second page does not hold job %s:\n%s", refused, list)
	}

	// Row 5: the publisher is down, so a build's publish is pending and
	// retried; cancelling the succeeded job stops the publish and says so.
	publisher.stop(t)
	_, errOut, code = build("--force", "--publish")
	if code != 0 {
		t.Fatalf("forced build: %d %s", code, errOut)
	}
	pending := jobID(t, errOut)
	deadline := time.Now().Add(time.Minute)
	for {
		show, _, _ = c.cli("jobs", "show", pending)
		if regexp.MustCompile(`publish:\s+pending`).MatchString(show) && strings.Contains(show, "attempt") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the publish never became pending while the publisher was down:\n%s", show)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, errOut, code = c.cli("jobs", "cancel", pending)
	if code != 0 || !strings.Contains(out, "job "+pending+" succeeded; its pending publish was stopped") {
		t.Fatalf("jobs cancel: %d\n%s%s", code, out, errOut)
	}
	time.Sleep(time.Second) // three retry intervals: a retry would have written "pending" again
	show, _, _ = c.cli("jobs", "show", pending)
	if !regexp.MustCompile(`publish:\s+canceled`).MatchString(show) {
		t.Errorf("after cancel:\n%s", show)
	}
	_, errOut, code = c.cli("jobs", "logs", pending, "--follow")
	expect("follow a cancelled publish", code, 1, errOut, "publish was cancelled")
}

// cliIn runs the CLI in a directory.
func (c *cluster) cliIn(dir string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin("coordinator"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KILN_SERVER="+c.addr)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// makeDeb builds a small binary package with dpkg-deb.
func makeDeb(t *testing.T, dir, name string) []byte {
	t.Helper()
	root := filepath.Join(dir, "deb-"+name)
	os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/share/doc", name), 0o755)
	os.WriteFile(filepath.Join(root, "usr/share/doc", name, "README"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(fmt.Sprintf("Package: %s\nVersion: 1.0\nArchitecture: amd64\nMaintainer: Kiln Tests <tests@kiln.invalid>\nDescription: test package\n", name)), 0o644)
	deb := filepath.Join(dir, name+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v %s", err, out)
	}
	return mustRead(t, deb)
}

// startFakeBuilder registers a stand-in worker for targets bookworm-amd64
// and trixie-amd64 that "builds" each package build by logging a line and
// uploading debs[package] as PACKAGE_1.0_amd64.deb.
func startFakeBuilder(t *testing.T, addr string, debs map[string][]byte) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	wc := wpb.NewWorkerServiceClient(conn)
	reg, err := wc.Register(ctx, &wpb.RegisterRequest{Name: "fake-builder", Labels: map[string]string{"target": "bookworm-amd64|trixie-amd64"}, Slots: 1, ProtocolVersion: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	sid := reg.GetSessionId()
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; conn.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = wc.Heartbeat(ctx, &wpb.HeartbeatRequest{SessionId: sid})
			r, err := wc.PullJob(ctx, &wpb.PullJobRequest{SessionId: sid, WaitSeconds: 1})
			if err != nil || r.GetAssignment() == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			a := r.GetAssignment()
			b := a.GetSpec().GetPackageBuild()
			if err := fakeBuild(ctx, wc, sid, a, b, debs[b.GetPackage()]); err != nil && ctx.Err() == nil {
				t.Errorf("fake build of job %s: %v", a.GetJobId(), err)
			}
		}
	}()
}

func fakeBuild(ctx context.Context, wc wpb.WorkerServiceClient, sid string, a *wpb.Assignment, b *pb.PackageBuild, deb []byte) error {
	ls, err := wc.AppendLog(ctx)
	if err != nil {
		return err
	}
	ls.Send(&wpb.AppendLogRequest{SessionId: sid, JobId: a.GetJobId(), Attempt: a.GetAttempt(),
		Data: fmt.Appendf(nil, "fake build of %s from %s\n", b.GetPackage(), b.GetSources()[0].GetUrl())})
	if _, err := ls.CloseAndRecv(); err != nil {
		return err
	}
	sum := sha256.Sum256(deb)
	art := &pb.Artifact{Name: "out/" + b.GetPackage() + "_1.0_amd64.deb", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(deb))}
	us, err := wc.UploadArtifact(ctx)
	if err != nil {
		return err
	}
	us.Send(&wpb.UploadArtifactRequest{Header: &wpb.ArtifactHeader{SessionId: sid, JobId: a.GetJobId(), Attempt: a.GetAttempt(), Artifact: art}})
	us.Send(&wpb.UploadArtifactRequest{Chunk: deb})
	if _, err := us.CloseAndRecv(); err != nil {
		return err
	}
	_, err = wc.CompleteJob(ctx, &wpb.CompleteJobRequest{SessionId: sid, JobId: a.GetJobId(), Attempt: a.GetAttempt(), Artifacts: []*pb.Artifact{art}})
	return err
}

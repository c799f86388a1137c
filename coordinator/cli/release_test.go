package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/leaderconn"
	"github.com/kiln-build/kiln/internal/testenv"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// releaseServer is a coordinator's gRPC API on loopback over a real fleet,
// with a worker session the test completes builds with.
type releaseServer struct {
	addr    string
	f       *fleet.Fleet
	session string
}

func startReleaseServer(t *testing.T) *releaseServer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f, err := fleet.New(ctx, fleet.Config{StateDir: dir, LostAfter: time.Minute,
		Releases: map[string]fleet.Release{"mos-9.0": {DebSuffix: "~mos9.0+{revision}", Targets: map[string]string{"bookworm-amd64": "deb"}}}},
		st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterCoordinatorServiceServer(gs, api.NewClientServer(f, api.ClientOptions{Releases: job.Releases{"mos-9.0": {"bookworm-amd64": "deb"}}}))
	pb.RegisterReleaseServiceServer(gs, api.NewReleaseServer(fleet.NewReleases(f)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	sess, _, err := f.Register(ctx, "w1", map[string]string{"target": "bookworm-amd64", "sealed-target": "bookworm-amd64", "sealed-release": "mos-9.0"}, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &releaseServer{addr: ln.Addr().String(), f: f, session: sess}
}

// build runs one attempt of the next assigned job to success with the
// files filesFor gives as artifacts and a record that installed installs.
func (s *releaseServer) build(t *testing.T, filesFor func(*job.Job) map[string]string, installs ...string) *job.Job {
	t.Helper()
	ctx := context.Background()
	j, err := s.f.Pull(ctx, s.session, 10*time.Second)
	if err != nil || j == nil {
		t.Errorf("pull: %v %v", j, err)
		return nil
	}
	files := filesFor(j)
	var arts []job.Artifact
	for name, content := range files {
		sum := sha256.Sum256([]byte(content))
		a := job.Artifact{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))}
		if err := s.f.PutArtifact(s.session, j.ID, j.Attempt, a, strings.NewReader(content)); err != nil {
			t.Error(err)
		}
		arts = append(arts, a)
	}
	rec := &job.Record{Sources: j.Spec.Build.Sources, Version: "1.0-1" + j.Spec.Build.VersionSuffix, Artifacts: arts}
	for _, n := range installs {
		rec.Installed = append(rec.Installed, job.Package{Name: n, Version: "1"})
	}
	if err := s.f.Complete(ctx, s.session, j.ID, j.Attempt, scheduler.Outcome{Artifacts: arts, Record: rec}); err != nil {
		t.Error(err)
	}
	return j
}

func (s *releaseServer) cli(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := Execute(context.Background(), append(append([]string{"release"}, args...), "--server", s.addr), IO{Out: &out, Err: &errb})
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var ee *cmdline.ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

// The release commands end to end against a coordinator's API on loopback:
// an unknown release is bad usage; seal shows who and when; verify --wait
// prints each package's result as its rebuild ends, writes a diffoscope
// report for the differing file, and exits 1; show then lists the results.
func TestReleaseCommands(t *testing.T) {
	t.Parallel()
	testenv.Tool(t, "diffoscope")
	ctx := context.Background()
	s := startReleaseServer(t)
	if _, _, err := s.cli("seal", "mos-8.0"); exitCode(err) != cmdline.ExitUsage || !strings.Contains(err.Error(), `"mos-8.0"`) {
		t.Fatalf("seal of an unknown release: %v (exit %d), want exit 2 naming it", err, exitCode(err))
	}
	if _, _, err := s.cli("show", "mos-8.0"); exitCode(err) != cmdline.ExitUsage {
		t.Fatalf("show of an unknown release: %v, want exit 2", err)
	}
	out, _, err := s.cli("seal", "mos-9.0")
	if err != nil || !regexp.MustCompile(`^release mos-9.0 sealed by cli on .* at 20\d\d-`).MatchString(out) {
		t.Fatalf("seal: %q %v", out, err)
	}

	// Two packages, app build-depending on libfoo's libfoo-dev.
	cl := pb.NewCoordinatorServiceClient(mustDial(t, s.addr))
	libfoo := map[string]string{"out/libfoo-dev_1.0-1~mos9.0+1_amd64.deb": "libfoo-dev", "base/gcc_12_amd64.deb": "gcc"}
	app := map[string]string{"out/app_1.0-1~mos9.0+1_amd64.deb": "app bytes\n", "base/gcc_12_amd64.deb": "gcc"}
	for _, p := range []struct {
		name     string
		files    map[string]string
		installs []string
	}{{"app", app, []string{"gcc", "libfoo-dev"}}, {"libfoo", libfoo, []string{"gcc"}}} {
		resp, err := cl.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_PACKAGE_BUILD,
			PackageBuild: &pb.PackageBuild{Release: "mos-9.0", Target: "bookworm-amd64", Package: p.name, Publish: true,
				Sources: []*pb.Source{{Url: "https://git.example.org/" + p.name, Commit: strings.Repeat("c", 40), Role: pb.SourceRole_SOURCE_ROLE_COMBINED}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetJob().GetSpec().GetPackageBuild().GetSealed() {
			t.Fatalf("build of sealed mos-9.0 not sealed: %v", resp.GetJob().GetSpec().GetPackageBuild())
		}
		s.build(t, func(*job.Job) map[string]string { return p.files }, p.installs...)
		if err := s.f.SetPublish(ctx, resp.GetJob().GetId(), "published"); err != nil {
			t.Fatal(err)
		}
	}

	// The worker rebuilds libfoo identically, and app (which must come
	// after libfoo) with different bytes.
	done := make(chan []string, 1)
	go func() {
		var order []string
		for range 2 {
			j := s.build(t, func(j *job.Job) map[string]string {
				if j.Spec.Build.Package == "app" {
					return map[string]string{"out/app_1.0-1~mos9.0+1_amd64.deb": "app bytes, built at another time\n"}
				}
				return libfoo
			})
			if j == nil {
				break
			}
			order = append(order, j.Spec.Build.Package)
		}
		done <- order
	}()
	diffDir := t.TempDir()
	out, errOut, err := s.cli("verify", "mos-9.0", "--wait", "--diffoscope-dir", diffDir)
	t.Logf("verify stderr:\n%s", errOut)
	if exitCode(err) != cmdline.ExitFailed {
		t.Fatalf("verify: %v (exit %d), want exit 1\n%s", err, exitCode(err), out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "libfoo 1.0-1~mos9.0+1 identical (") ||
		!strings.HasPrefix(lines[1], "app 1.0-1~mos9.0+1 different (") {
		t.Fatalf("verify printed %q, want libfoo identical then app different", out)
	}
	if !strings.Contains(lines[1], "differs: out/app_1.0-1~mos9.0+1_amd64.deb;") {
		t.Fatalf("app's line %q: want only the app package named as differing (base/* are inputs)", lines[1])
	}
	report := regexp.MustCompile(`diffoscope report: (\S+)\)`).FindStringSubmatch(lines[1])
	if report == nil {
		t.Fatalf("no diffoscope report named in %q", lines[1])
	}
	text, err := os.ReadFile(report[1])
	if err != nil || !bytes.Contains(text, []byte("built at another time")) {
		t.Fatalf("diffoscope report %s: %v\n%s", report[1], err, text)
	}

	if order := <-done; strings.Join(order, " ") != "libfoo app" {
		t.Fatalf("rebuilt %v, want libfoo then app", order)
	}
	out, _, err = s.cli("show", "mos-9.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sealed:   sealed by cli on ", "base:     1 packages, 3 bytes", "app ", "different (verification 1,", "libfoo ", "identical (verification 1,"} {
		if !strings.Contains(out, want) {
			t.Fatalf("show lacks %q:\n%s", want, out)
		}
	}
	if out, _, err := s.cli("unseal", "mos-9.0", "--json"); err != nil || !strings.Contains(out, `"release": "mos-9.0"`) || strings.Contains(out, `"sealed": true`) {
		t.Fatalf("unseal --json: %q %v", out, err)
	}
}

func mustDial(t *testing.T, addr string) *leaderconn.Conn {
	t.Helper()
	c := Conn{Server: addr}
	conn, err := c.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// release seal says which queued builds it re-marked and which running
// ones started before it, in text and in JSON.
func TestSealSaysWhatItDidToBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startReleaseServer(t)
	submit := func(pkg string) string {
		j, _, err := s.f.Submit(ctx, job.Spec{Kind: job.PackageBuild, Build: &job.Build{Release: "mos-9.0", Target: "bookworm-amd64", Package: pkg,
			Sources: []job.Source{{URL: "https://git.example.org/" + pkg, Commit: strings.Repeat("c", 40), Role: "combined"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	running := submit("running")
	if j, err := s.f.Pull(ctx, s.session, 0); err != nil || j == nil || j.ID != running {
		t.Fatalf("pull: %+v %v, want %s", j, err, running)
	}
	queued := []string{submit("a"), submit("b")}
	out, _, err := s.cli("seal", "mos-9.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seal printed:\n%s", out)
	for _, want := range []string{
		"queued builds re-marked to build sealed, from the release alone: 2 (jobs " + queued[0] + ", " + queued[1] + ")\n",
		"running builds started before the seal: 1 (job " + running + "): they build from the upstream mirror (a retry after an infrastructure failure builds sealed); rebuild them",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("seal printed\n%s\nwant %q", out, want)
		}
	}
	out, _, err = s.cli("unseal", "mos-9.0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Remarked []string `json:"remarked_job_ids"`
		Running  []string `json:"running_job_ids"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("unseal --json: %v\n%s", err, out)
	}
	if strings.Join(resp.Remarked, " ") != strings.Join(queued, " ") || len(resp.Running) != 0 {
		t.Fatalf("unseal --json %+v, want %v re-marked and none running (the running build is unsealed)\n%s", resp, queued, out)
	}
	// Unsealing it again changes nothing, and says so rather than
	// counting builds it did not touch.
	out, _, err = s.cli("unseal", "mos-9.0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "release mos-9.0 was already unsealed by ") || !strings.HasSuffix(out, ": nothing changed\n") || strings.Contains(out, "re-marked") {
		t.Fatalf("unseal of an unsealed release printed\n%s\nwant that it was already unsealed and nothing changed", out)
	}
}

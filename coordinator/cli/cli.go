// Package cli is the coordinator's command line client: what Jenkins
// pipelines and people run to submit jobs, follow them and manage workers.
// It turns flags into requests; exit codes tell a pipeline what happened:
// 0 success, 1 the job failed, 2 bad usage, 3 the infrastructure failed.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/label"
	"github.com/kiln-build/kiln/internal/leaderconn"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

func usage(format string, a ...any) error { return cmdline.Usage(format, a...) }

func infra(err error) error { return cmdline.Infra(err) }

// Conn holds the connection flags every client command takes. The client
// has no config file: its settings are these flags and KILN_SERVER,
// KILN_TLS_CERT, KILN_TLS_KEY and KILN_TLS_CA.
type Conn struct {
	Server  string `help:"coordinator address; several separated by commas (a leader and its standbys): the one that leads is used" default:"127.0.0.1:7420" placeholder:"ADDR" setting:"" envprefix:"KILN_"`
	TLSCert string `name:"tls-cert" help:"client certificate; none means plaintext, loopback only" placeholder:"FILE" setting:"" envprefix:"KILN_"`
	TLSKey  string `name:"tls-key" help:"client key" placeholder:"FILE" setting:"" envprefix:"KILN_"`
	TLSCA   string `name:"tls-ca" help:"CA that signed the coordinator's certificate" placeholder:"FILE" setting:"" envprefix:"KILN_"`
}

// Dial connects to the coordinator (the one that leads, of several): TLS
// with a client certificate, or plaintext when no certificate is given and
// the addresses are loopback.
func (c *Conn) Dial() (*leaderconn.Conn, error) {
	files := tlsconfig.Files{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA}
	addrs := leaderconn.Split(c.Server)
	if len(addrs) == 0 {
		return nil, usage("--server %q names no coordinator: give HOST:PORT, or several separated by commas", c.Server)
	}
	var creds credentials.TransportCredentials
	if files.Empty() {
		for _, a := range addrs {
			if err := tlsconfig.CheckLoopback(a); err != nil {
				return nil, usage("%v (give --tls-cert, --tls-key and --tls-ca)", err)
			}
		}
		creds = insecure.NewCredentials()
	} else {
		tc, err := tlsconfig.Client(files)
		if err != nil {
			return nil, usage("%v", err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := leaderconn.New(addrs, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, infra(err)
	}
	return conn, nil
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its whitespace on purpose; scripts get a stable form.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func stateName(s pb.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// runCmd submits a command job: `coordinator run`.
type runCmd struct {
	Conn
	Labels       string        `help:"labels a worker must have, k=v,k=v" placeholder:"K=V,..."`
	Artifacts    []string      `help:"glob, relative to the job's work dir, of files to collect (repeatable)" sep:"none" placeholder:"GLOB"`
	Env          []string      `help:"KEY=VALUE for the command (repeatable)" sep:"none" placeholder:"KEY=VALUE"`
	Priority     int32         `help:"higher runs first" placeholder:"N"`
	Group        string        `help:"fairness group (e.g. a release)" placeholder:"GROUP"`
	SupersedeKey string        `help:"a newer job with the same key cancels this one" placeholder:"KEY"`
	Timeout      time.Duration `help:"hard time limit (default: the coordinator's)" placeholder:"D"`
	Wait         bool          `help:"stream the log and exit with the job's outcome: 0 succeeded, 1 failed, 3 infrastructure"`
	JSON         bool          `name:"json" help:"print the job as JSON"`
	Command      []string      `arg:"" optional:"" passthrough:"" help:"the command and its arguments, after --" placeholder:"COMMAND"`
	Request
}

// Run submits the job.
func (c *runCmd) Run(ctx context.Context, o IO) error {
	// The parser passes everything from the first argument on, -- too.
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return usage("no command: give it after --, e.g. coordinator run --labels os=linux -- make test")
	}
	l, err := label.Parse(c.Labels)
	if err != nil {
		return usage("--labels: %v", err)
	}
	spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: l, Command: c.Command, Env: c.Env, ArtifactGlobs: c.Artifacts,
		Priority: c.Priority, FairnessGroup: c.Group, SupersedeKey: c.SupersedeKey, TimeoutSeconds: int64(c.Timeout.Seconds()), Origin: origin()}
	return submit(ctx, c.Conn, c.Request, spec, c.Wait, 0, c.JSON, o)
}

func origin() string {
	if u := os.Getenv("BUILD_URL"); u != "" {
		return "jenkins " + u
	}
	h, _ := os.Hostname()
	return "cli on " + h
}

func submit(ctx context.Context, c Conn, r Request, spec *pb.JobSpec, wait bool, waitFor time.Duration, asJSON bool, o IO) error {
	id, err := r.id()
	if err != nil {
		return err
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	resp, err := cl.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec, RequestId: id})
	if err != nil {
		return rpcErr("submit job", err)
	}
	j := resp.GetJob()
	if resp.GetRepeated() {
		fmt.Fprintf(o.Err, "request id %s already submitted as job %s (%s); not queued again\n", id, j.GetId(), stateName(j.GetState()))
	} else if resp.GetDeduplicated() {
		fmt.Fprintf(o.Err, "build key %s already built by job %s (%s); not run again (use --force to rebuild)\n", short(j.GetBuildKey()), j.GetId(), stateName(j.GetState()))
		if wait {
			// The earlier job's log is not replayed: it is one command away.
			fmt.Fprintf(o.Err, "reusing job %s; its log: coordinator jobs logs %s\n", j.GetId(), j.GetId())
			return followFor(ctx, cl, j.GetId(), waitFor, followOpts{asJSON: asJSON, quiet: true}, o)
		}
	} else {
		fmt.Fprintf(o.Err, "job %s queued\n", j.GetId())
	}
	if asJSON && !wait {
		return printJSON(o.Out, resp)
	}
	if !wait {
		fmt.Fprintln(o.Out, j.GetId())
		return nil
	}
	return followFor(ctx, cl, j.GetId(), waitFor, followOpts{asJSON: asJSON}, o)
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// follow streams a job's log to o.Out until it ends and turns its outcome
// into an exit code. It survives a coordinator restart by resuming from the
// last offset.
func follow(ctx context.Context, cl pb.CoordinatorServiceClient, id string, opts followOpts, o IO) error {
	asJSON := opts.asJSON
	var offset int64
	var final *pb.Job
	backoff := 200 * time.Millisecond
	lastWaiting := ""
	deadline := time.Time{}
	for final == nil {
		if g, err := cl.GetJob(ctx, &pb.GetJobRequest{Id: id}); err == nil {
			if w := g.GetJob().GetWaitingReason(); w != "" && w != lastWaiting {
				fmt.Fprintf(o.Err, "job %s waiting: %s\n", id, w)
				lastWaiting = w
			}
		}
		stream, err := cl.StreamJobLog(ctx, &pb.StreamJobLogRequest{Id: id, Offset: offset, Follow: true})
		if err == nil {
			for {
				m, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				if len(m.GetData()) > 0 {
					if !asJSON && !opts.quiet {
						o.Out.Write(m.GetData())
					}
					offset += int64(len(m.GetData()))
					deadline = time.Time{}
				}
				if m.GetJob() != nil {
					final = m.GetJob()
					break
				}
			}
		}
		if final != nil {
			break
		}
		if ctx.Err() != nil {
			return infra(ctx.Err())
		}
		if err != nil && !errors.Is(err, io.EOF) {
			if deadline.IsZero() {
				deadline = time.Now().Add(5 * time.Minute)
			}
			if time.Now().After(deadline) {
				return infra(fmt.Errorf("lost the coordinator while following job %s: %v", id, err))
			}
			time.Sleep(backoff)
			if backoff < 5*time.Second {
				backoff *= 2
			}
		}
	}
	if final.GetState() == pb.JobState_JOB_STATE_SUCCEEDED && final.GetSpec().GetPackageBuild().GetPublish() {
		var err error
		if final, err = waitPublish(ctx, cl, final, o); err != nil {
			return err
		}
	}
	if asJSON {
		printJSON(o.Out, final)
	}
	return outcome(final, o)
}

// waitPublish waits until the publisher confirmed (or refused) a build: the
// build is complete only then. A package the publisher refused is the
// build's fault (exit 1), as is a publish cancelled by a user; a publisher
// that cannot take it is the infrastructure's (exit 3).
func waitPublish(ctx context.Context, cl pb.CoordinatorServiceClient, j *pb.Job, o IO) (*pb.Job, error) {
	last := ""
	for {
		st := j.GetPublishState()
		if st != last && st != "" {
			fmt.Fprintf(o.Err, "job %s publish: %s\n", j.GetId(), st)
			last = st
		}
		p := j.GetPublish()
		switch p.GetState() {
		case pb.PublishState_PUBLISH_STATE_PUBLISHED:
			return j, nil
		case pb.PublishState_PUBLISH_STATE_REFUSED:
			return nil, cmdline.Failed(fmt.Errorf("job %s built but the publisher refused the package: %s", j.GetId(), p.GetReason()))
		case pb.PublishState_PUBLISH_STATE_CANCELED:
			return nil, cmdline.Failed(fmt.Errorf("job %s built but its publish was cancelled: %s", j.GetId(), p.GetReason()))
		case pb.PublishState_PUBLISH_STATE_FAILED:
			return nil, infra(fmt.Errorf("job %s built but not published: %s", j.GetId(), p.GetReason()))
		}
		select {
		case <-ctx.Done():
			return nil, infra(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
		r, err := cl.GetJob(ctx, &pb.GetJobRequest{Id: j.GetId()})
		if err != nil {
			continue
		}
		j = r.GetJob()
	}
}

func outcome(j *pb.Job, o IO) error {
	msg := fmt.Sprintf("job %s %s", j.GetId(), stateName(j.GetState()))
	if r := j.GetReason(); r != "" {
		msg += ": " + r
	}
	if d := j.GetDifferingArtifacts(); len(d) > 0 {
		msg += "; artifacts differ from job " + j.GetRebuildOf() + ": " + strings.Join(d, ", ")
	}
	if p := j.GetPublish(); p.GetState() == pb.PublishState_PUBLISH_STATE_PUBLISHED {
		msg += "; published at " + p.GetLocation()
	}
	switch j.GetState() {
	case pb.JobState_JOB_STATE_SUCCEEDED:
		if len(j.GetDifferingArtifacts()) > 0 {
			return cmdline.Failed(errors.New(msg))
		}
		if j.GetRebuildOf() != "" && j.GetRecord() != nil {
			msg += "; byte-identical to job " + j.GetRebuildOf()
		}
		fmt.Fprintln(o.Err, msg)
		return nil
	case pb.JobState_JOB_STATE_FAILED, pb.JobState_JOB_STATE_CANCELED:
		return cmdline.Failed(errors.New(msg))
	default:
		return infra(errors.New(msg))
	}
}

func rpcErr(what string, err error) error {
	if grpcerr.Classify(err).CallerFault() {
		return usage("%s: %s", what, grpcerr.Message(err))
	}
	return infra(fmt.Errorf("%s: %w", what, err))
}

// buildCmd submits a package build: `coordinator build`.
type buildCmd struct {
	Conn
	Release     string        `help:"release, e.g. mos-9.0" placeholder:"R"`
	Target      string        `help:"target, e.g. bookworm-amd64" placeholder:"T"`
	Package     string        `help:"source package name" placeholder:"P"`
	Recipe      string        `help:"build recipe name (part of the build key)" placeholder:"NAME"`
	Source      []string      `help:"REPO@REV[#role]: git URL and commit, branch or tag; one source holds code and packaging, two are code then packaging (repeatable)" sep:"none" placeholder:"REPO@REV"`
	Wait        bool          `help:"stream the log and exit with the outcome: 0 succeeded, 1 failed, 3 infrastructure"`
	Force       bool          `help:"build even if this build key already succeeded (a rebuild with a new revision)"`
	Publish     bool          `help:"publish the artifacts when the build succeeds"`
	Timeout     time.Duration `help:"with --wait: give up waiting after this long (exit 3, saying why the job waits); 0 waits until it ends" placeholder:"D"`
	Priority    int32         `help:"higher runs first (merge builds 100, review builds 50)" placeholder:"N"`
	JSON        bool          `name:"json" help:"print JSON"`
	Profiles    string        `help:"Debian build profiles, comma-separated, e.g. nocheck,nodoc (part of the build key)" placeholder:"LIST"`
	BuildOption []string      `help:"a DEB_BUILD_OPTIONS entry, e.g. parallel=4 (repeatable; part of the build key)" sep:"none" placeholder:"OPTION"`
	Request
}

// Run submits the build.
func (c *buildCmd) Run(ctx context.Context, o IO) error {
	release, target, pkg, recipe, sources := &c.Release, &c.Target, &c.Package, &c.Recipe, c.Source
	wait, force, publish, waitFor, prio, asJSON, profiles, options := &c.Wait, &c.Force, &c.Publish, &c.Timeout, &c.Priority, &c.JSON, &c.Profiles, c.BuildOption
	if *release == "" || *target == "" || *pkg == "" || len(sources) == 0 {
		return usage("--release, --target, --package and at least one --source are required")
	}
	if len(sources) > 2 {
		return usage("%d sources: give one (code and packaging) or two (code, then packaging)", len(sources))
	}
	srcs, err := ResolveSources(ctx, sources)
	if err != nil {
		return err
	}
	spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_PACKAGE_BUILD, Force: *force, Priority: *prio, Origin: origin(),
		Labels: map[string]string{"target": *target}, FairnessGroup: *release,
		PackageBuild: &pb.PackageBuild{Release: *release, Target: *target, Package: *pkg, Sources: srcs, Recipe: *recipe, Publish: *publish,
			BuildProfiles: splitList(*profiles), BuildOptions: options}}
	return submit(ctx, c.Conn, c.Request, spec, *wait, *waitFor, *asJSON, o)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ResolveSources turns REPO@REV[#role] into sources at exact commits,
// resolving branch and tag names with git ls-remote.
func ResolveSources(ctx context.Context, in []string) ([]*pb.Source, error) {
	var out []*pb.Source
	for i, s := range in {
		role := ""
		if k := strings.LastIndex(s, "#"); k > 0 {
			s, role = s[:k], s[k+1:]
		}
		k := strings.LastIndex(s, "@")
		if k <= 0 || k == len(s)-1 {
			return nil, usage("--source %q: use REPO@REV, e.g. https://git.example/hello.git@master", s)
		}
		url, rev := s[:k], s[k+1:]
		if role == "" {
			switch {
			case len(in) == 1:
				role = "combined"
			case i == 0:
				role = "code"
			default:
				role = "packaging"
			}
		}
		r, ok := map[string]pb.SourceRole{"combined": pb.SourceRole_SOURCE_ROLE_COMBINED, "code": pb.SourceRole_SOURCE_ROLE_CODE, "packaging": pb.SourceRole_SOURCE_ROLE_PACKAGING}[role]
		if !ok {
			return nil, usage("--source role %q: use combined, code or packaging", role)
		}
		if local, ok, err := localSource(ctx, url); err != nil {
			return nil, err
		} else if ok {
			url = local
		}
		commit := rev
		ref := ""
		if len(rev) != 40 || strings.Trim(rev, "0123456789abcdef") != "" {
			c, err := lsRemote(ctx, url, rev)
			if err != nil {
				return nil, err
			}
			commit, ref = c, rev
		}
		out = append(out, &pb.Source{Url: url, Commit: commit, Ref: ref, Role: r})
	}
	return out, nil
}

func lsRemote(ctx context.Context, url, rev string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, "git", "ls-remote", "--", url, rev).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", lsRemoteFailed(url, rev, err, string(ee.Stderr))
		}
		return "", infra(fmt.Errorf("git ls-remote %s %s: %w", url, rev, err))
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && (f[1] == rev || f[1] == "refs/heads/"+rev || f[1] == "refs/tags/"+rev) {
			return f[0], nil
		}
	}
	return "", usage("--source %s@%s: no branch or tag %q in that repository; give a full 40-hex commit or an existing ref", url, rev, rev)
}

// rebuildCmd rebuilds a finished package build: `coordinator rebuild`.
type rebuildCmd struct {
	Conn
	Verify  bool          `help:"rebuild from the build record (same commits, same build-dependency versions) and compare artifacts byte for byte; implies --wait"`
	Wait    bool          `help:"stream the log and exit with the outcome"`
	Timeout time.Duration `help:"with --wait: give up waiting after this long (exit 3); 0 waits until it ends" placeholder:"D"`
	JSON    bool          `name:"json" help:"print JSON"`
	ID      string        `arg:"" optional:"" name:"job-id" help:"the job to rebuild"`
}

// Run submits the rebuild.
func (c *rebuildCmd) Run(ctx context.Context, o IO) error {
	verify, wait, waitFor, asJSON := &c.Verify, &c.Wait, &c.Timeout, &c.JSON
	if c.ID == "" {
		return usage("give one job id")
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	resp, err := cl.RebuildJob(ctx, &pb.RebuildJobRequest{Id: c.ID, Verify: *verify})
	if err != nil {
		return rpcErr("rebuild", err)
	}
	fmt.Fprintf(o.Err, "job %s queued, rebuilding job %s\n", resp.GetJob().GetId(), c.ID)
	if !*wait && !*verify {
		if *asJSON {
			return printJSON(o.Out, resp)
		}
		fmt.Fprintln(o.Out, resp.GetJob().GetId())
		return nil
	}
	return followFor(ctx, cl, resp.GetJob().GetId(), *waitFor, followOpts{asJSON: *asJSON}, o)
}

// certsCmd is `coordinator certs`: a CA and certificates for a small
// installation, each with the role the coordinator enforces.
type certsCmd struct {
	Dir  string   `help:"directory holding ca.pem and ca-key.pem (made on first use)" placeholder:"DIR"`
	Name string   `help:"certificate name, e.g. coordinator, worker-1, jenkins, publisher; a worker's is its worker name" placeholder:"NAME"`
	Role string   `help:"what the holder may do: worker (WorkerService only), client (read and submit), admin (everything), publisher or coordinator (a server's own certificate, nothing on the coordinator)" placeholder:"ROLE"`
	Host []string `help:"DNS name or IP the certificate is valid for (repeatable)" sep:"none" placeholder:"HOST"`
}

// Run makes the CA (once) and the certificate.
func (c *certsCmd) Run(o IO) error {
	dir, name, roleName, hosts := &c.Dir, &c.Name, &c.Role, c.Host
	if *dir == "" || *name == "" || *roleName == "" {
		return usage("--dir, --name and --role are required")
	}
	role, err := tlsconfig.ParseRole(*roleName)
	if err != nil {
		return usage("%v", err)
	}
	if err := tlsconfig.MakeCA(*dir); err != nil {
		return infra(fmt.Errorf("make CA: %w", err))
	}
	if err := tlsconfig.Issue(*dir, *name, role, hosts); err != nil {
		return infra(fmt.Errorf("issue certificate: %w", err))
	}
	fmt.Fprintf(o.Out, "%s\n%s\n%s\n", filepath.Join(*dir, *name+".pem"), filepath.Join(*dir, *name+"-key.pem"), filepath.Join(*dir, "ca.pem"))
	return nil
}

// Encode is a helper for --json output of plain values.
func Encode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

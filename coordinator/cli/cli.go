// Package cli is the coordinator's command line client: what Jenkins
// pipelines and people run to submit jobs, follow them and manage workers.
// It turns flags into requests; exit codes tell a pipeline what happened:
// 0 success, 1 the job failed, 2 bad usage, 3 the infrastructure failed.
package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/label"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

func usage(format string, a ...any) error { return cmdline.Usage(format, a...) }

func infra(err error) error { return cmdline.Infra(err) }

// Conn holds the connection flags every client command takes. The client
// has no config file: its settings are these flags and KILN_SERVER,
// KILN_TLS_CERT, KILN_TLS_KEY and KILN_TLS_CA.
type Conn struct {
	Server  string `help:"coordinator address" default:"127.0.0.1:7420" placeholder:"ADDR" setting:"" envprefix:"KILN_"`
	TLSCert string `name:"tls-cert" help:"client certificate; none means plaintext, loopback only" placeholder:"FILE" setting:"" envprefix:"KILN_"`
	TLSKey  string `name:"tls-key" help:"client key" placeholder:"FILE" setting:"" envprefix:"KILN_"`
	TLSCA   string `name:"tls-ca" help:"CA that signed the coordinator's certificate" placeholder:"FILE" setting:"" envprefix:"KILN_"`
}

// Dial connects to the coordinator: TLS with a client certificate, or
// plaintext when no certificate is given and the address is loopback.
func (c *Conn) Dial() (*grpc.ClientConn, error) {
	files := tlsconfig.Files{Cert: c.TLSCert, Key: c.TLSKey, CA: c.TLSCA}
	var creds credentials.TransportCredentials
	if files.Empty() {
		if err := tlsconfig.CheckLoopback(c.Server); err != nil {
			return nil, usage("%v (give --tls-cert, --tls-key and --tls-ca)", err)
		}
		creds = insecure.NewCredentials()
	} else {
		tc, err := tlsconfig.Client(files)
		if err != nil {
			return nil, usage("%v", err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(c.Server, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, infra(fmt.Errorf("connect to coordinator %s: %w", c.Server, err))
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
	return submit(ctx, c.Conn, spec, c.Wait, 0, c.JSON, o)
}

func origin() string {
	if u := os.Getenv("BUILD_URL"); u != "" {
		return "jenkins " + u
	}
	h, _ := os.Hostname()
	return "cli on " + h
}

func submit(ctx context.Context, c Conn, spec *pb.JobSpec, wait bool, waitFor time.Duration, asJSON bool, o IO) error {
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	resp, err := cl.SubmitJob(ctx, &pb.SubmitJobRequest{Spec: spec})
	if err != nil {
		return rpcErr("submit job", err)
	}
	j := resp.GetJob()
	if resp.GetDeduplicated() {
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
	return submit(ctx, c.Conn, spec, *wait, *waitFor, *asJSON, o)
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

// jobsCmd is `coordinator jobs list|show|logs|cancel`.
type jobsCmd struct {
	List   jobsListCmd   `cmd:"" help:"List jobs, newest first, a page at a time."`
	Show   jobsShowCmd   `cmd:"" help:"Show a job: state, reason, sources, build record, artifacts, publish state."`
	Logs   jobsLogsCmd   `cmd:"" help:"Print a job's log; with --follow stream it until the job ends and exit with its outcome."`
	Cancel jobsCancelCmd `cmd:"" help:"Cancel a job, or the pending publish of a succeeded build."`
}

// jobID is the job a jobs command acts on.
type jobID struct {
	ID string `arg:"" optional:"" name:"id" help:"the job"`
}

func (j jobID) check(sub string) error {
	if j.ID == "" {
		return usage("jobs %s: give one job id", sub)
	}
	return nil
}

type jobsListCmd struct {
	Conn
	JSON      bool     `name:"json" help:"print JSON"`
	State     []string `help:"only jobs in this state: queued, running, succeeded, failed, error, canceled (repeatable)" sep:"none" placeholder:"S"`
	Release   string   `help:"only package builds of this release" placeholder:"R"`
	Package   string   `help:"only package builds of this source package" placeholder:"P"`
	Origin    string   `help:"only jobs whose origin contains this text (jenkins, gerrit, a build URL)" placeholder:"TEXT"`
	Change    int64    `help:"only the review builds of this Gerrit change (all its patch sets)" placeholder:"N"`
	Limit     int      `help:"at most this many (a page)" default:"50" placeholder:"N"`
	PageToken string   `help:"the next page: the token the previous page printed" placeholder:"T"`
}

// Run lists the jobs.
func (c *jobsListCmd) Run(ctx context.Context, o IO) error {
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	req := &pb.ListJobsRequest{Limit: int32(c.Limit), Release: c.Release, Package: c.Package, Origin: c.Origin, Change: c.Change, PageToken: c.PageToken}
	for _, s := range c.State {
		st, err := job.ParseState(s)
		if err != nil {
			return usage("--state: %v", err)
		}
		req.States = append(req.States, pb.JobState(st))
	}
	resp, err := cl.ListJobs(ctx, req)
	if err != nil {
		return rpcErr("list jobs", err)
	}
	if c.JSON {
		return printJSON(o.Out, resp)
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tKIND\tWORKER\tWHAT\tPUBLISH\tDETAIL")
	for _, j := range resp.GetJobs() {
		detail := j.GetReason()
		if j.GetWaitingReason() != "" {
			detail = "waiting: " + j.GetWaitingReason()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.GetId(), stateName(j.GetState()), kind(j), j.GetWorker(), what(j), publishName(j), detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t := resp.GetNextPageToken(); t != "" {
		fmt.Fprintf(o.Err, "more jobs: add --page-token %s\n", t)
	}
	return nil
}

type jobsShowCmd struct {
	Conn
	JSON bool `name:"json" help:"print JSON"`
	jobID
}

// Run shows the job.
func (c *jobsShowCmd) Run(ctx context.Context, o IO) error {
	if err := c.check("show"); err != nil {
		return err
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewCoordinatorServiceClient(conn).GetJob(ctx, &pb.GetJobRequest{Id: c.ID})
	if err != nil {
		return rpcErr("show job", err)
	}
	if c.JSON {
		return printJSON(o.Out, resp.GetJob())
	}
	show(o.Out, resp.GetJob())
	return nil
}

type jobsLogsCmd struct {
	Conn
	JSON    bool          `name:"json" help:"print JSON"`
	Follow  bool          `help:"keep streaming until the job ends, then exit with its outcome"`
	Timeout time.Duration `help:"with --follow: give up after this long (exit 3, saying why the job waits); 0 waits until it ends" placeholder:"D"`
	jobID
}

// Run prints or follows the log.
func (c *jobsLogsCmd) Run(ctx context.Context, o IO) error {
	if err := c.check("logs"); err != nil {
		return err
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	if c.Follow {
		return followFor(ctx, cl, c.ID, c.Timeout, followOpts{}, o)
	}
	stream, err := cl.StreamJobLog(ctx, &pb.StreamJobLogRequest{Id: c.ID})
	if err != nil {
		return rpcErr("logs", err)
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return rpcErr("logs", err)
		}
		o.Out.Write(m.GetData())
	}
}

type jobsCancelCmd struct {
	Conn
	JSON bool `name:"json" help:"print JSON"`
	jobID
}

// Run cancels the job.
func (c *jobsCancelCmd) Run(ctx context.Context, o IO) error {
	if err := c.check("cancel"); err != nil {
		return err
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewCoordinatorServiceClient(conn).CancelJob(ctx, &pb.CancelJobRequest{Id: c.ID, Reason: "cancelled from the command line"})
	if err != nil {
		return rpcErr("cancel job", err)
	}
	if c.JSON {
		return printJSON(o.Out, resp.GetJob())
	}
	j := resp.GetJob()
	if p := j.GetPublish(); p.GetState() == pb.PublishState_PUBLISH_STATE_CANCELED {
		fmt.Fprintf(o.Out, "job %s %s; its pending publish was stopped: %s\n", j.GetId(), stateName(j.GetState()), p.GetReason())
		return nil
	}
	fmt.Fprintf(o.Out, "job %s %s\n", j.GetId(), stateName(j.GetState()))
	return nil
}

func kind(j *pb.Job) string {
	if j.GetSpec().GetPackageBuild() != nil {
		return "build"
	}
	return "command"
}

func what(j *pb.Job) string {
	if b := j.GetSpec().GetPackageBuild(); b != nil {
		return fmt.Sprintf("%s %s/%s rev %d", b.GetPackage(), b.GetRelease(), b.GetTarget(), b.GetRevision())
	}
	s := strings.Join(strings.Fields(strings.Join(j.GetSpec().GetCommand(), " ")), " ")
	if len(s) > 50 {
		s = s[:47] + "..."
	}
	return s
}

func show(w io.Writer, j *pb.Job) {
	p := func(k string, v any) {
		if s := fmt.Sprint(v); s != "" && s != "0" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", s)
		}
	}
	p("job", j.GetId())
	p("state", stateName(j.GetState()))
	p("kind", kind(j))
	p("labels", label.String(j.GetSpec().GetLabels()))
	if c := j.GetSpec().GetCommand(); len(c) > 0 {
		p("command", strings.Join(c, " "))
	}
	if b := j.GetSpec().GetPackageBuild(); b != nil {
		p("release", b.GetRelease())
		p("target", b.GetTarget())
		p("package", b.GetPackage())
		p("revision", b.GetRevision())
		p("version suffix", b.GetVersionSuffix())
		if b.GetSealed() {
			p("sealed", "yes: built from the release alone")
		}
		for _, s := range b.GetSources() {
			p("source", fmt.Sprintf("%s@%s (%s)", s.GetUrl(), s.GetCommit(), strings.ToLower(strings.TrimPrefix(s.GetRole().String(), "SOURCE_ROLE_"))))
		}
		p("build key", j.GetBuildKey())
	}
	if j.GetRebuild() {
		p("rebuild", "yes")
	}
	p("rebuild of", j.GetRebuildOf())
	p("priority", j.GetSpec().GetPriority())
	p("origin", j.GetSpec().GetOrigin())
	p("attempt", j.GetAttempt())
	p("worker", j.GetWorker())
	if j.GetState() == pb.JobState_JOB_STATE_FAILED || j.GetState() == pb.JobState_JOB_STATE_SUCCEEDED {
		fmt.Fprintf(w, "%-14s %d\n", "exit code:", j.GetExitCode())
	}
	p("reason", j.GetReason())
	p("waiting", j.GetWaitingReason())
	p("publish", publishName(j))
	if r := j.GetPublish().GetReason(); r != "" {
		p("publish why", r)
	}
	if t := j.GetCreatedAt(); t != nil {
		p("created", t.AsTime().Format(time.RFC3339))
	}
	if t := j.GetStartedAt(); t != nil {
		p("started", t.AsTime().Format(time.RFC3339))
	}
	if t := j.GetFinishedAt(); t != nil {
		p("finished", t.AsTime().Format(time.RFC3339))
	}
	for _, a := range j.GetArtifacts() {
		fmt.Fprintf(w, "%-14s %s sha256:%s %d bytes\n", "artifact:", a.GetName(), a.GetSha256(), a.GetSize())
	}
	if d := j.GetDifferingArtifacts(); len(d) > 0 {
		p("differs", strings.Join(d, ", "))
	}
	if r := j.GetRecord(); r != nil {
		fmt.Fprintln(w, "build record:")
		fmt.Fprintf(w, "  version:       %s\n", r.GetVersion())
		fmt.Fprintf(w, "  chroot:        %s\n", r.GetChrootDigest())
		if l := r.GetSourceLayout(); l != "" {
			fmt.Fprintf(w, "  layout:        %s\n", l)
		}
		for _, s := range r.GetSources() {
			fmt.Fprintf(w, "  source:        %s@%s\n", s.GetUrl(), s.GetCommit())
		}
		for _, c := range r.GetCommands() {
			fmt.Fprintf(w, "  command:       %s\n", c)
		}
		fmt.Fprintf(w, "  installed:     %d packages\n", len(r.GetInstalled()))
		for _, ip := range r.GetInstalled() {
			fmt.Fprintf(w, "    %s=%s %s\n", ip.GetName(), ip.GetVersion(), ip.GetArchitecture())
		}
	}
}

// artifactsCmd is `coordinator artifacts get ID --dest DIR`.
type artifactsCmd struct {
	Get artifactsGetCmd `cmd:"" help:"Fetch a job's artifacts, checking each one's sha256."`
}

type artifactsGetCmd struct {
	Conn
	Dest string `help:"directory to write into (names keep their relative paths)" default:"." placeholder:"DIR"`
	Name string `help:"only this artifact" placeholder:"NAME"`
	JSON bool   `name:"json" help:"print the fetched artifacts as JSON"`
	ID   string `arg:"" optional:"" name:"job-id" help:"the job"`
}

// Run fetches the artifacts.
func (c *artifactsGetCmd) Run(ctx context.Context, o IO) error {
	dest, name, asJSON := &c.Dest, &c.Name, &c.JSON
	if c.ID == "" {
		return usage("give one job id")
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	g, err := cl.GetJob(ctx, &pb.GetJobRequest{Id: c.ID})
	if err != nil {
		return rpcErr("get job", err)
	}
	var got []*pb.Artifact
	for _, a := range g.GetJob().GetArtifacts() {
		if *name != "" && a.GetName() != *name {
			continue
		}
		if err := fetch(ctx, cl, c.ID, a, *dest); err != nil {
			return err
		}
		got = append(got, a)
		if !*asJSON {
			fmt.Fprintf(o.Out, "%s\n", filepath.Join(*dest, filepath.FromSlash(a.GetName())))
		}
	}
	if *name != "" && len(got) == 0 {
		return usage("job %s has no artifact %q", c.ID, *name)
	}
	if *asJSON {
		return printJSON(o.Out, &pb.ListJobsResponse{Jobs: []*pb.Job{{Id: c.ID, Artifacts: got}}})
	}
	return nil
}

func fetch(ctx context.Context, cl pb.CoordinatorServiceClient, id string, a *pb.Artifact, dest string) error {
	if err := job.CleanRelative(a.GetName()); err != nil {
		return infra(fmt.Errorf("artifact name %q from the coordinator: %v", a.GetName(), err))
	}
	path := filepath.Join(dest, filepath.FromSlash(a.GetName()))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return infra(err)
	}
	stream, err := cl.GetArtifact(ctx, &pb.GetArtifactRequest{JobId: id, Name: a.GetName()})
	if err != nil {
		return rpcErr("get artifact", err)
	}
	tmp := path + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return infra(err)
	}
	defer os.Remove(tmp)
	h := sha256.New()
	var n int64
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return rpcErr("get artifact", err)
		}
		f.Write(m.GetChunk())
		h.Write(m.GetChunk())
		n += int64(len(m.GetChunk()))
	}
	if err := f.Close(); err != nil {
		return infra(err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != a.GetSha256() || n != a.GetSize() {
		return infra(fmt.Errorf("artifact %s: got sha256 %s (%d bytes), want %s (%d bytes)", a.GetName(), sum, n, a.GetSha256(), a.GetSize()))
	}
	return infra(os.Rename(tmp, path))
}

// workersCmd is `coordinator workers list|drain NAME|undrain NAME`.
type workersCmd struct {
	List    workersListCmd  `cmd:"" help:"List the workers: state, slots, running jobs, labels."`
	Drain   workersDrainCmd `cmd:"" help:"Drain a worker: it finishes its jobs and takes no new ones (survives a coordinator restart)."`
	Undrain workersDrainCmd `cmd:"" help:"Let a drained worker take jobs again."`
}

type workersListCmd struct {
	Conn
	JSON bool `name:"json" help:"print JSON"`
}

type workersDrainCmd struct {
	Conn
	JSON bool   `name:"json" help:"print JSON"`
	Name string `arg:"" optional:"" help:"the worker"`
}

// Run lists the workers.
func (c *workersListCmd) Run(ctx context.Context, o IO) error {
	return workers(ctx, c.Conn, "list", "", c.JSON, o)
}

// Run drains or undrains the worker.
func (c *workersDrainCmd) Run(ctx context.Context, o IO, k *kong.Context) error {
	return workers(ctx, c.Conn, k.Selected().Name, c.Name, c.JSON, o)
}

func workers(ctx context.Context, c Conn, sub, name string, jsonOut bool, o IO) error {
	asJSON := &jsonOut
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	if sub == "list" {
		resp, err := cl.ListWorkers(ctx, &pb.ListWorkersRequest{})
		if err != nil {
			return rpcErr("list workers", err)
		}
		if *asJSON {
			return printJSON(o.Out, resp)
		}
		tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tSLOTS\tRUNNING\tLABELS")
		for _, w := range resp.GetWorkers() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", w.GetName(), strings.ToLower(strings.TrimPrefix(w.GetState().String(), "WORKER_STATE_")),
				w.GetSlots(), len(w.GetRunningJobs()), label.String(w.GetLabels()))
		}
		return tw.Flush()
	}
	if name == "" {
		return usage("workers %s: give one worker name", sub)
	}
	resp, err := cl.DrainWorker(ctx, &pb.DrainWorkerRequest{Name: name, Undrain: sub == "undrain"})
	if err != nil {
		return rpcErr(sub, err)
	}
	if *asJSON {
		return printJSON(o.Out, resp.GetWorker())
	}
	fmt.Fprintf(o.Out, "worker %s %s\n", resp.GetWorker().GetName(), strings.ToLower(strings.TrimPrefix(resp.GetWorker().GetState().String(), "WORKER_STATE_")))
	return nil
}

// eventsCmd is `coordinator events list`.
type eventsCmd struct {
	List eventsListCmd `cmd:"" help:"List the Gerrit events, what was done with each and why, and the jobs queued."`
}

type eventsListCmd struct {
	Conn
	JSON  bool `name:"json" help:"print JSON"`
	Limit int  `help:"at most this many (up to 10000)" default:"50" placeholder:"N"`
	All   bool `help:"show the noise too: events Kiln has no use for, with the reason"`
}

// Run lists the events.
func (c *eventsListCmd) Run(ctx context.Context, o IO) error {
	asJSON, limit, all := &c.JSON, &c.Limit, &c.All
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := pb.NewCoordinatorServiceClient(conn).ListEvents(ctx, &pb.ListEventsRequest{Limit: int32(*limit), All: *all})
	if err != nil {
		return rpcErr("list events", err)
	}
	if *asJSON {
		return printJSON(o.Out, resp)
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tTYPE\tPROJECT\tBRANCH\tCHANGE\tACTION\tREASON\tJOBS")
	for _, e := range resp.GetEvents() {
		ch := ""
		if e.GetChange() > 0 {
			ch = fmt.Sprintf("%d/%d", e.GetChange(), e.GetPatchSet())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), e.GetReceivedAt().AsTime().Format(time.RFC3339), e.GetType(),
			e.GetProject(), e.GetBranch(), ch, e.GetAction(), e.GetReason(), strings.Join(e.GetJobIds(), ","))
	}
	return tw.Flush()
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

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
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/label"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitUsage   = 2
	ExitInfra   = 3
	ExitUnknown = 4
)

// ExitError carries an exit code with its message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func usage(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

func infra(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: ExitInfra, Err: err}
}

// Conn holds the connection flags every client command takes.
type Conn struct {
	Server string
	TLS    tlsconfig.Files
}

func (c *Conn) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Server, "server", envOr("KILN_SERVER", "127.0.0.1:7420"), "coordinator address (env KILN_SERVER)")
	fs.StringVar(&c.TLS.Cert, "tls-cert", os.Getenv("KILN_TLS_CERT"), "client certificate (env KILN_TLS_CERT); none means plaintext, loopback only")
	fs.StringVar(&c.TLS.Key, "tls-key", os.Getenv("KILN_TLS_KEY"), "client key (env KILN_TLS_KEY)")
	fs.StringVar(&c.TLS.CA, "tls-ca", os.Getenv("KILN_TLS_CA"), "CA that signed the coordinator's certificate (env KILN_TLS_CA)")
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// Dial connects to the coordinator: TLS with a client certificate, or
// plaintext when no certificate is given and the address is loopback.
func (c *Conn) Dial() (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if c.TLS.Empty() {
		if err := tlsconfig.CheckLoopback(c.Server); err != nil {
			return nil, usage("%v (give --tls-cert, --tls-key and --tls-ca)", err)
		}
		creds = insecure.NewCredentials()
	} else {
		tc, err := tlsconfig.Client(c.TLS)
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

// IO is where a command writes.
type IO struct {
	Out, Err io.Writer
}

func newFlagSet(name, synopsis string, o IO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(o.Err)
	fs.Usage = func() {
		fmt.Fprintf(o.Err, "usage: %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &ExitError{Code: ExitOK, Err: flag.ErrHelp}
		}
		return usage("%v", err)
	}
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

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

// Run submits a command job: `coordinator run`.
func Run(ctx context.Context, args []string, o IO) error {
	fs := newFlagSet("run", "coordinator run [flags] -- COMMAND [ARGS...]", o)
	var c Conn
	c.flags(fs)
	labels := fs.String("labels", "", "labels a worker must have, k=v,k=v")
	var globs, env multi
	fs.Var(&globs, "artifacts", "glob, relative to the job's work dir, of files to collect (repeatable)")
	fs.Var(&env, "env", "KEY=VALUE for the command (repeatable)")
	prio := fs.Int("priority", 0, "higher runs first")
	group := fs.String("group", "", "fairness group (e.g. a release)")
	supersede := fs.String("supersede-key", "", "a newer job with the same key cancels this one")
	timeout := fs.Duration("timeout", 0, "hard time limit (default: the coordinator's)")
	wait := fs.Bool("wait", false, "stream the log and exit with the job's outcome: 0 succeeded, 1 failed, 3 infrastructure")
	asJSON := fs.Bool("json", false, "print the job as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usage("no command: give it after --, e.g. coordinator run --labels os=linux -- make test")
	}
	l, err := label.Parse(*labels)
	if err != nil {
		return usage("--labels: %v", err)
	}
	spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_COMMAND, Labels: l, Command: fs.Args(), Env: env, ArtifactGlobs: globs,
		Priority: int32(*prio), FairnessGroup: *group, SupersedeKey: *supersede, TimeoutSeconds: int64(timeout.Seconds()), Origin: origin()}
	return submit(ctx, c, spec, *wait, 0, *asJSON, o)
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
			return nil, &ExitError{Code: ExitFailed, Err: fmt.Errorf("job %s built but the publisher refused the package: %s", j.GetId(), p.GetReason())}
		case pb.PublishState_PUBLISH_STATE_CANCELED:
			return nil, &ExitError{Code: ExitFailed, Err: fmt.Errorf("job %s built but its publish was cancelled: %s", j.GetId(), p.GetReason())}
		case pb.PublishState_PUBLISH_STATE_FAILED:
			return nil, &ExitError{Code: ExitInfra, Err: fmt.Errorf("job %s built but not published: %s", j.GetId(), p.GetReason())}
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
			return &ExitError{Code: ExitFailed, Err: errors.New(msg)}
		}
		if j.GetRebuildOf() != "" && j.GetRecord() != nil {
			msg += "; byte-identical to job " + j.GetRebuildOf()
		}
		fmt.Fprintln(o.Err, msg)
		return nil
	case pb.JobState_JOB_STATE_FAILED, pb.JobState_JOB_STATE_CANCELED:
		return &ExitError{Code: ExitFailed, Err: errors.New(msg)}
	default:
		return &ExitError{Code: ExitInfra, Err: errors.New(msg)}
	}
}

func rpcErr(what string, err error) error {
	if grpcerr.Classify(err).CallerFault() {
		return usage("%s: %s", what, grpcerr.Message(err))
	}
	return infra(fmt.Errorf("%s: %w", what, err))
}

// Build submits a package build: `coordinator build`.
func Build(ctx context.Context, args []string, o IO) error {
	fs := newFlagSet("build", "coordinator build --release R --target T --package P --source REPO@REV [--source REPO@REV] [flags]", o)
	var c Conn
	c.flags(fs)
	release := fs.String("release", "", "release, e.g. mos-9.0")
	target := fs.String("target", "", "target, e.g. bookworm-amd64")
	pkg := fs.String("package", "", "source package name")
	recipe := fs.String("recipe", "", "build recipe name (part of the build key)")
	var sources multi
	fs.Var(&sources, "source", "REPO@REV[#role]: git URL and commit, branch or tag; one source holds code and packaging, two are code then packaging (repeatable)")
	wait := fs.Bool("wait", false, "stream the log and exit with the outcome: 0 succeeded, 1 failed, 3 infrastructure")
	force := fs.Bool("force", false, "build even if this build key already succeeded (a rebuild with a new revision)")
	publish := fs.Bool("publish", false, "publish the artifacts when the build succeeds")
	waitFor := fs.Duration("timeout", 0, "with --wait: give up waiting after this long (exit 3, saying why the job waits); 0 waits until it ends")
	prio := fs.Int("priority", 0, "higher runs first (merge builds 100, review builds 50)")
	asJSON := fs.Bool("json", false, "print JSON")
	profiles := fs.String("profiles", "", "Debian build profiles, comma-separated, e.g. nocheck,nodoc (part of the build key)")
	var options multi
	fs.Var(&options, "build-option", "a DEB_BUILD_OPTIONS entry, e.g. parallel=4 (repeatable; part of the build key)")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
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
	spec := &pb.JobSpec{Kind: pb.JobKind_JOB_KIND_PACKAGE_BUILD, Force: *force, Priority: int32(*prio), Origin: origin(),
		Labels: map[string]string{"target": *target}, FairnessGroup: *release,
		PackageBuild: &pb.PackageBuild{Release: *release, Target: *target, Package: *pkg, Sources: srcs, Recipe: *recipe, Publish: *publish,
			BuildProfiles: splitList(*profiles), BuildOptions: options}}
	return submit(ctx, c, spec, *wait, *waitFor, *asJSON, o)
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

// Rebuild rebuilds a finished package build: `coordinator rebuild`.
func Rebuild(ctx context.Context, args []string, o IO) error {
	fs := newFlagSet("rebuild", "coordinator rebuild [--verify] [--wait] JOB_ID", o)
	var c Conn
	c.flags(fs)
	verify := fs.Bool("verify", false, "rebuild from the build record (same commits, same build-dependency versions) and compare artifacts byte for byte; implies --wait")
	wait := fs.Bool("wait", false, "stream the log and exit with the outcome")
	waitFor := fs.Duration("timeout", 0, "with --wait: give up waiting after this long (exit 3); 0 waits until it ends")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usage("give one job id")
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	resp, err := cl.RebuildJob(ctx, &pb.RebuildJobRequest{Id: fs.Arg(0), Verify: *verify})
	if err != nil {
		return rpcErr("rebuild", err)
	}
	fmt.Fprintf(o.Err, "job %s queued, rebuilding job %s\n", resp.GetJob().GetId(), fs.Arg(0))
	if !*wait && !*verify {
		if *asJSON {
			return printJSON(o.Out, resp)
		}
		fmt.Fprintln(o.Out, resp.GetJob().GetId())
		return nil
	}
	return followFor(ctx, cl, resp.GetJob().GetId(), *waitFor, followOpts{asJSON: *asJSON}, o)
}

// Jobs is `coordinator jobs list|show|logs|cancel`.
func Jobs(ctx context.Context, args []string, o IO) error {
	if len(args) == 0 {
		return usage("usage: coordinator jobs list|show ID|logs ID [--follow]|cancel ID")
	}
	sub, args := args[0], args[1:]
	synopsis := "coordinator jobs " + sub + " [flags] ID"
	if sub == "list" {
		synopsis = "coordinator jobs list [--state S]... [--release R] [--package P] [--origin TEXT] [--limit N] [--page-token T] [--json]"
	}
	fs := newFlagSet("jobs "+sub, synopsis, o)
	var c Conn
	c.flags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var states multi
	limit := 0
	followF := false
	var waitFor time.Duration
	var release, pkg, originF, pageToken string
	switch sub {
	case "list":
		fs.Var(&states, "state", "only jobs in this state: queued, running, succeeded, failed, error, canceled (repeatable)")
		fs.StringVar(&release, "release", "", "only package builds of this release")
		fs.StringVar(&pkg, "package", "", "only package builds of this source package")
		fs.StringVar(&originF, "origin", "", "only jobs whose origin contains this text (jenkins, gerrit, a build URL)")
		fs.IntVar(&limit, "limit", 50, "at most this many (a page)")
		fs.StringVar(&pageToken, "page-token", "", "the next page: the token the previous page printed")
	case "logs":
		fs.BoolVar(&followF, "follow", false, "keep streaming until the job ends, then exit with its outcome")
		fs.DurationVar(&waitFor, "timeout", 0, "with --follow: give up after this long (exit 3, saying why the job waits); 0 waits until it ends")
	case "show", "cancel":
	default:
		return usage("jobs %q: use list, show, logs or cancel", sub)
	}
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
	if sub != "list" && fs.NArg() != 1 {
		return usage("jobs %s: give one job id", sub)
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	switch sub {
	case "list":
		req := &pb.ListJobsRequest{Limit: int32(limit), Release: release, Package: pkg, Origin: originF, PageToken: pageToken}
		for _, s := range states {
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
		if *asJSON {
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
	case "show":
		resp, err := cl.GetJob(ctx, &pb.GetJobRequest{Id: fs.Arg(0)})
		if err != nil {
			return rpcErr("show job", err)
		}
		if *asJSON {
			return printJSON(o.Out, resp.GetJob())
		}
		show(o.Out, resp.GetJob())
		return nil
	case "logs":
		if followF {
			return followFor(ctx, cl, fs.Arg(0), waitFor, followOpts{}, o)
		}
		stream, err := cl.StreamJobLog(ctx, &pb.StreamJobLogRequest{Id: fs.Arg(0)})
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
	case "cancel":
		resp, err := cl.CancelJob(ctx, &pb.CancelJobRequest{Id: fs.Arg(0), Reason: "cancelled from the command line"})
		if err != nil {
			return rpcErr("cancel job", err)
		}
		if *asJSON {
			return printJSON(o.Out, resp.GetJob())
		}
		j := resp.GetJob()
		if p := j.GetPublish(); p.GetState() == pb.PublishState_PUBLISH_STATE_CANCELED {
			fmt.Fprintf(o.Out, "job %s %s; its pending publish was stopped: %s\n", j.GetId(), stateName(j.GetState()), p.GetReason())
			return nil
		}
		fmt.Fprintf(o.Out, "job %s %s\n", j.GetId(), stateName(j.GetState()))
	}
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

// Artifacts is `coordinator artifacts get ID --dest DIR`.
func Artifacts(ctx context.Context, args []string, o IO) error {
	if len(args) == 0 || args[0] != "get" {
		return usage("usage: coordinator artifacts get JOB_ID --dest DIR [--name NAME]")
	}
	fs := newFlagSet("artifacts get", "coordinator artifacts get JOB_ID --dest DIR [--name NAME]", o)
	var c Conn
	c.flags(fs)
	dest := fs.String("dest", ".", "directory to write into (names keep their relative paths)")
	name := fs.String("name", "", "only this artifact")
	asJSON := fs.Bool("json", false, "print the fetched artifacts as JSON")
	if err := parse(fs, reorder(fs, args[1:])); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usage("give one job id")
	}
	conn, err := c.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := pb.NewCoordinatorServiceClient(conn)
	g, err := cl.GetJob(ctx, &pb.GetJobRequest{Id: fs.Arg(0)})
	if err != nil {
		return rpcErr("get job", err)
	}
	var got []*pb.Artifact
	for _, a := range g.GetJob().GetArtifacts() {
		if *name != "" && a.GetName() != *name {
			continue
		}
		if err := fetch(ctx, cl, fs.Arg(0), a, *dest); err != nil {
			return err
		}
		got = append(got, a)
		if !*asJSON {
			fmt.Fprintf(o.Out, "%s\n", filepath.Join(*dest, filepath.FromSlash(a.GetName())))
		}
	}
	if *name != "" && len(got) == 0 {
		return usage("job %s has no artifact %q", fs.Arg(0), *name)
	}
	if *asJSON {
		return printJSON(o.Out, &pb.ListJobsResponse{Jobs: []*pb.Job{{Id: fs.Arg(0), Artifacts: got}}})
	}
	return nil
}

// reorder moves flags before positional arguments so that
// `artifacts get 12 --dest d` works as people type it.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, pos...)
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

// Workers is `coordinator workers list|drain NAME|undrain NAME`.
func Workers(ctx context.Context, args []string, o IO) error {
	if len(args) == 0 {
		return usage("usage: coordinator workers list|drain NAME|undrain NAME")
	}
	sub, args := args[0], args[1:]
	if sub != "list" && sub != "drain" && sub != "undrain" {
		return usage("workers %q: use list, drain or undrain", sub)
	}
	fs := newFlagSet("workers "+sub, "coordinator workers "+sub+" [flags] [NAME]", o)
	var c Conn
	c.flags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return err
	}
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
	if fs.NArg() != 1 {
		return usage("workers %s: give one worker name", sub)
	}
	resp, err := cl.DrainWorker(ctx, &pb.DrainWorkerRequest{Name: fs.Arg(0), Undrain: sub == "undrain"})
	if err != nil {
		return rpcErr(sub, err)
	}
	if *asJSON {
		return printJSON(o.Out, resp.GetWorker())
	}
	fmt.Fprintf(o.Out, "worker %s %s\n", resp.GetWorker().GetName(), strings.ToLower(strings.TrimPrefix(resp.GetWorker().GetState().String(), "WORKER_STATE_")))
	return nil
}

// Events is `coordinator events list`.
func Events(ctx context.Context, args []string, o IO) error {
	if len(args) == 0 || args[0] != "list" {
		return usage("usage: coordinator events list [--limit N] [--all] [--json]")
	}
	fs := newFlagSet("events list", "coordinator events list [flags]", o)
	var c Conn
	c.flags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 50, "at most this many (up to 10000)")
	all := fs.Bool("all", false, "show the noise too: events Kiln has no use for, with the reason")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
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

// Certs is `coordinator certs`: a CA and certificates for a small
// installation, each with the role the coordinator enforces.
func Certs(_ context.Context, args []string, o IO) error {
	fs := newFlagSet("certs", "coordinator certs --dir DIR --name NAME --role worker|client|admin|publisher|coordinator [--host HOST]...", o)
	dir := fs.String("dir", "", "directory holding ca.pem and ca-key.pem (made on first use)")
	name := fs.String("name", "", "certificate name, e.g. coordinator, worker-1, jenkins, publisher; a worker's is its worker name")
	roleName := fs.String("role", "", "what the holder may do: worker (WorkerService only), client (read and submit), admin (everything), publisher or coordinator (a server's own certificate, nothing on the coordinator)")
	var hosts multi
	fs.Var(&hosts, "host", "DNS name or IP the certificate is valid for (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
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

package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

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

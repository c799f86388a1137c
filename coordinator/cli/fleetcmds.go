package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/internal/label"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

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

package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/publish"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/internal/chunks"
	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/protocol"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// toStatus maps the coordinator's errors to gRPC statuses: the one place
// that does, for both of its services. The kinds, and how they travel, are
// grpcerr's.
func toStatus(err error) error {
	return grpcerr.Status(err, kindOf)
}

func kindOf(err error) grpcerr.Kind {
	switch {
	case errors.Is(err, fleet.ErrInvalid), errors.Is(err, job.ErrRefused):
		return grpcerr.BadRequest
	case errors.Is(err, fleet.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return grpcerr.NotFound
	case errors.Is(err, fleet.ErrNoSpace):
		return grpcerr.Exhausted
	case store.IsDeposed(err):
		// Another coordinator leads: this one answers as a standby.
		return grpcerr.Standby
	case errors.Is(err, fleet.ErrTooLarge):
		return grpcerr.TooLarge
	case errors.Is(err, scheduler.ErrNameInUse):
		return grpcerr.Conflict
	case errors.Is(err, scheduler.ErrUnknownSession):
		return grpcerr.UnknownSession
	case errors.Is(err, scheduler.ErrStale):
		return grpcerr.StaleAttempt
	case errors.Is(err, fleet.ErrRefused):
		return grpcerr.Precondition
	case errors.Is(err, protocol.ErrVersion):
		return grpcerr.ProtocolVersion
	}
	return grpcerr.Unknown
}

func invalid(format string, a ...any) error {
	return grpcerr.New(grpcerr.BadRequest, format, a...)
}

// Event is a Gerrit event as ListEvents shows it.
type Event struct {
	ID                    int64
	Server, Type, Project string
	Branch, Revision      string
	Change, PatchSet      int64
	ReceivedAt            time.Time
	Action, Reason        string
	JobIDs                []string
}

// EventLister lists Gerrit events; nil when Gerrit intake is off.
type EventLister interface {
	// ListEvents returns the newest events; with all, the noise too.
	ListEvents(ctx context.Context, limit int, all bool) ([]Event, error)
}

// PublishCanceler stops pending publishes; nil when no publisher is
// configured.
type PublishCanceler interface {
	Cancel(ctx context.Context, jobID, reason string) error
}

// ClientOptions is what the client API checks requests against and the
// optional subsystems it drives.
type ClientOptions struct {
	// Releases are the configured releases: a package build of another
	// release or target is refused before it is queued.
	Releases job.Releases
	Events   EventLister
	Publish  PublishCanceler
}

// ClientServer implements CoordinatorService.
type ClientServer struct {
	pb.UnimplementedCoordinatorServiceServer
	f      *fleet.Fleet
	events EventLister
	opts   ClientOptions
}

// NewClientServer makes the client API.
func NewClientServer(f *fleet.Fleet, opts ClientOptions) *ClientServer {
	return &ClientServer{f: f, events: opts.Events, opts: opts}
}

// SubmitJob implements CoordinatorService. A package build is checked
// completely before it is queued: the spec itself, then the release,
// target, package name and sources against the configuration. A
// submission repeated with its request id gets its first job back.
func (s *ClientServer) SubmitJob(ctx context.Context, req *pb.SubmitJobRequest) (*pb.SubmitJobResponse, error) {
	if req.GetSpec() == nil {
		return nil, invalid("spec is required")
	}
	spec := SpecFromPB(req.GetSpec())
	if err := spec.Validate(); err != nil {
		return nil, invalid("%v", err)
	}
	if spec.Build != nil {
		if err := s.opts.Releases.Check(spec.Build); err != nil {
			return nil, toStatus(err)
		}
	}
	j, dedup, repeated, err := s.f.SubmitRequest(ctx, spec, req.GetRequestId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitJobResponse{Job: JobToPB(j, ""), Deduplicated: dedup, Repeated: repeated}, nil
}

// GetJob implements CoordinatorService.
func (s *ClientServer) GetJob(ctx context.Context, req *pb.GetJobRequest) (*pb.GetJobResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("job id is required")
	}
	j, waiting, err := s.f.Get(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetJobResponse{Job: JobToPB(j, waiting)}, nil
}

// ListJobs implements CoordinatorService: one page of the jobs matching
// the filters, filtered and paged by the store.
func (s *ClientServer) ListJobs(ctx context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	f := store.Filter{Release: req.GetRelease(), Package: req.GetPackage(), Origin: req.GetOrigin(), Change: req.GetChange()}
	if f.Change < 0 {
		return nil, invalid("change %d: give a Gerrit change number, or 0 for any", f.Change)
	}
	for _, st := range req.GetStates() {
		js, ok := stateFromPB(st)
		if !ok {
			return nil, invalid("job state %v is not a state to filter on", st)
		}
		f.States = append(f.States, js)
	}
	f.Limit = int(req.GetLimit())
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 10000 {
		return nil, invalid("limit %d: at most 10000", f.Limit)
	}
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			return nil, invalid("page_token %q: pass the next_page_token of the previous response", t)
		}
		f.Before = n
	}
	jobs, next, err := s.f.Store().Query(ctx, f)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListJobsResponse{}
	if next > 0 {
		out.NextPageToken = strconv.FormatInt(next, 10)
	}
	for _, j := range jobs {
		if l := s.f.Scheduler().Live(j.ID); l != nil {
			j = l
		}
		waiting := ""
		if j.State == job.Queued {
			waiting = s.f.Scheduler().WaitingReason(j.ID)
		}
		out.Jobs = append(out.Jobs, JobToPB(j, waiting))
	}
	return out, nil
}

// CancelJob implements CoordinatorService.
func (s *ClientServer) CancelJob(ctx context.Context, req *pb.CancelJobRequest) (*pb.CancelJobResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("job id is required")
	}
	j, err := s.f.Cancel(ctx, req.GetId(), req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	if st, _, _ := publish.Parse(j.Publish); j.State == job.Succeeded && st == publish.StatePending && s.opts.Publish != nil {
		reason := req.GetReason()
		if reason == "" {
			reason = "cancelled by user"
		}
		if err := s.opts.Publish.Cancel(ctx, j.ID, reason); err != nil {
			return nil, toStatus(err)
		}
		if j, _, err = s.f.Get(ctx, j.ID); err != nil {
			return nil, toStatus(err)
		}
	}
	return &pb.CancelJobResponse{Job: JobToPB(j, "")}, nil
}

// StreamJobLog implements CoordinatorService.
func (s *ClientServer) StreamJobLog(req *pb.StreamJobLogRequest, stream grpc.ServerStreamingServer[pb.StreamJobLogResponse]) error {
	if req.GetId() == "" || req.GetOffset() < 0 {
		return invalid("job id is required and offset must not be negative")
	}
	j, err := s.f.StreamLog(stream.Context(), req.GetId(), req.GetOffset(), req.GetFollow(), func(b []byte) error {
		return stream.Send(&pb.StreamJobLogResponse{Data: b})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&pb.StreamJobLogResponse{Job: JobToPB(j, "")})
}

// GetArtifact implements CoordinatorService.
func (s *ClientServer) GetArtifact(req *pb.GetArtifactRequest, stream grpc.ServerStreamingServer[pb.GetArtifactResponse]) error {
	fh, a, err := s.f.OpenArtifact(stream.Context(), req.GetJobId(), req.GetName())
	if err != nil {
		return toStatus(err)
	}
	defer fh.Close()
	if err := stream.Send(&pb.GetArtifactResponse{Artifact: &pb.Artifact{Name: a.Name, Sha256: a.SHA256, Size: a.Size}}); err != nil {
		return err
	}
	return toStatus(chunks.Send(fh, func(b []byte) error { return stream.Send(&pb.GetArtifactResponse{Chunk: b}) }))
}

// ListWorkers implements CoordinatorService.
func (s *ClientServer) ListWorkers(ctx context.Context, _ *pb.ListWorkersRequest) (*pb.ListWorkersResponse, error) {
	out := &pb.ListWorkersResponse{}
	for _, w := range s.f.Workers() {
		out.Workers = append(out.Workers, workerToPB(w))
	}
	return out, nil
}

// DrainWorker implements CoordinatorService.
func (s *ClientServer) DrainWorker(ctx context.Context, req *pb.DrainWorkerRequest) (*pb.DrainWorkerResponse, error) {
	w, err := s.f.Drain(ctx, req.GetName(), !req.GetUndrain())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DrainWorkerResponse{Worker: workerToPB(w)}, nil
}

// RebuildJob implements CoordinatorService.
func (s *ClientServer) RebuildJob(ctx context.Context, req *pb.RebuildJobRequest) (*pb.RebuildJobResponse, error) {
	j, err := s.f.Rebuild(ctx, req.GetId(), req.GetVerify())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RebuildJobResponse{Job: JobToPB(j, "")}, nil
}

// ListEvents implements CoordinatorService.
func (s *ClientServer) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	if s.events == nil {
		return nil, grpcerr.New(grpcerr.Precondition, "Gerrit intake is not configured (gerrit: section of the coordinator's config)")
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = 100
	}
	if limit > 10000 {
		return nil, invalid("limit %d: at most 10000", limit)
	}
	evs, err := s.events.ListEvents(ctx, limit, req.GetAll())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListEventsResponse{}
	for _, e := range evs {
		out.Events = append(out.Events, &pb.Event{Id: e.ID, Server: e.Server, Type: e.Type, Project: e.Project, Branch: e.Branch,
			Change: e.Change, PatchSet: e.PatchSet, Revision: e.Revision, ReceivedAt: timestamppb.New(e.ReceivedAt),
			Action: e.Action, Reason: e.Reason, JobIds: e.JobIDs})
	}
	return out, nil
}

// WorkerServer implements WorkerService.
type WorkerServer struct {
	wpb.UnimplementedWorkerServiceServer
	f *fleet.Fleet
	// tokens maps worker names to bearer tokens; nil disables the check
	// (development mode).
	tokens            map[string]string
	heartbeatInterval time.Duration
}

// NewWorkerServer makes the worker API.
func NewWorkerServer(f *fleet.Fleet, tokens map[string]string, heartbeat time.Duration) *WorkerServer {
	return &WorkerServer{f: f, tokens: tokens, heartbeatInterval: heartbeat}
}

func (s *WorkerServer) checkToken(ctx context.Context, name string) error {
	if s.tokens == nil {
		return nil
	}
	want, ok := s.tokens[name]
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get("authorization"); len(v) > 0 {
		got = strings.TrimPrefix(v[0], "Bearer ")
	}
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return grpcerr.New(grpcerr.BadToken, "worker %q: missing or wrong bearer token (see worker_tokens in the coordinator's config)", name)
	}
	return nil
}

func running(in []*wpb.RunningJob) []scheduler.RunningJob {
	out := make([]scheduler.RunningJob, 0, len(in))
	for _, r := range in {
		out = append(out, scheduler.RunningJob{JobID: r.GetJobId(), Attempt: int(r.GetAttempt())})
	}
	return out
}

func runningToPB(in []scheduler.RunningJob) []*wpb.RunningJob {
	var out []*wpb.RunningJob
	for _, r := range in {
		out = append(out, &wpb.RunningJob{JobId: r.JobID, Attempt: int32(r.Attempt)})
	}
	return out
}

// Register implements WorkerService.
func (s *WorkerServer) Register(ctx context.Context, req *wpb.RegisterRequest) (*wpb.RegisterResponse, error) {
	if err := s.checkToken(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if err := protocol.Check(req.GetProtocolVersion()); err != nil {
		return nil, toStatus(fmt.Errorf("worker %q: %w", req.GetName(), err))
	}
	p := scheduler.Peer{Instance: req.GetInstance()}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		p.Addr = pr.Addr.String()
	}
	id, abandon, err := s.f.RegisterAs(ctx, p, req.GetName(), req.GetLabels(), int(req.GetSlots()), running(req.GetRunning()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &wpb.RegisterResponse{SessionId: id, HeartbeatIntervalSeconds: int32(s.heartbeatInterval / time.Second), Abandon: runningToPB(abandon)}, nil
}

// ownSession refuses a call on a session that another worker registered:
// with certificates, a worker's calls are bound to its certificate's name,
// not only to the session id. Without TLS (--dev) there is no name to
// bind. An unknown session is left to the call, which says so.
func (s *WorkerServer) ownSession(ctx context.Context, session string) error {
	c, err := CallerOf(ctx)
	if err != nil {
		return nil
	}
	if w, ok := s.f.SessionWorker(session); ok && w != c.Name {
		return grpcerr.New(grpcerr.Denied, "worker certificate %q may not act on worker %q's session", c.Name, w)
	}
	return nil
}

// Heartbeat implements WorkerService.
func (s *WorkerServer) Heartbeat(ctx context.Context, req *wpb.HeartbeatRequest) (*wpb.HeartbeatResponse, error) {
	if err := s.ownSession(ctx, req.GetSessionId()); err != nil {
		return nil, err
	}
	if l := req.GetLabels(); l != nil {
		if err := s.f.SetLabels(req.GetSessionId(), l.GetLabels()); err != nil {
			return nil, toStatus(err)
		}
	}
	cancel, drain, err := s.f.Heartbeat(ctx, req.GetSessionId(), running(req.GetRunning()), req.GetDraining())
	if err != nil {
		return nil, toStatus(err)
	}
	return &wpb.HeartbeatResponse{Cancel: runningToPB(cancel), Drain: drain}, nil
}

// PullJob implements WorkerService.
func (s *WorkerServer) PullJob(ctx context.Context, req *wpb.PullJobRequest) (*wpb.PullJobResponse, error) {
	wait := time.Duration(req.GetWaitSeconds()) * time.Second
	if wait > time.Minute {
		wait = time.Minute
	}
	if err := s.ownSession(ctx, req.GetSessionId()); err != nil {
		return nil, err
	}
	j, err := s.f.Pull(ctx, req.GetSessionId(), wait)
	if err != nil {
		return nil, toStatus(err)
	}
	if j == nil {
		return &wpb.PullJobResponse{}, nil
	}
	return &wpb.PullJobResponse{Assignment: &wpb.Assignment{JobId: j.ID, Attempt: int32(j.Attempt), Spec: SpecToPB(j.Spec),
		TimeoutSeconds: int64(j.Spec.Timeout / time.Second)}}, nil
}

// AppendLog implements WorkerService.
func (s *WorkerServer) AppendLog(stream grpc.ClientStreamingServer[wpb.AppendLogRequest, wpb.AppendLogResponse]) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&wpb.AppendLogResponse{})
		}
		if err != nil {
			return err
		}
		if err := s.ownSession(stream.Context(), m.GetSessionId()); err != nil {
			return err
		}
		if err := s.f.AppendLog(m.GetSessionId(), m.GetJobId(), int(m.GetAttempt()), m.GetData()); err != nil {
			return toStatus(err)
		}
	}
}

// UploadArtifact implements WorkerService.
func (s *WorkerServer) UploadArtifact(stream grpc.ClientStreamingServer[wpb.UploadArtifactRequest, wpb.UploadArtifactResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil || h.GetArtifact() == nil {
		return invalid("the first upload message must carry the artifact header")
	}
	r := chunks.Reader(first.GetChunk(), func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if m.GetHeader() != nil {
			return nil, fmt.Errorf("%w: a second header in one upload", fleet.ErrInvalid)
		}
		return m.GetChunk(), nil
	})
	if err := s.ownSession(stream.Context(), h.GetSessionId()); err != nil {
		return err
	}
	a := h.GetArtifact()
	art := job.Artifact{Name: a.GetName(), SHA256: a.GetSha256(), Size: a.GetSize()}
	// Held already (a base file every build uploads): answer before the
	// body, which ends the stream for the sender.
	has, err := s.f.HasArtifact(h.GetSessionId(), h.GetJobId(), int(h.GetAttempt()), art)
	if err != nil {
		return toStatus(err)
	}
	if has {
		return stream.SendAndClose(&wpb.UploadArtifactResponse{Existed: true})
	}
	if err := s.f.PutArtifact(h.GetSessionId(), h.GetJobId(), int(h.GetAttempt()), art, r); err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&wpb.UploadArtifactResponse{})
}

// CompleteJob implements WorkerService.
func (s *WorkerServer) CompleteJob(ctx context.Context, req *wpb.CompleteJobRequest) (*wpb.CompleteJobResponse, error) {
	if err := s.ownSession(ctx, req.GetSessionId()); err != nil {
		return nil, err
	}
	err := s.f.Complete(ctx, req.GetSessionId(), req.GetJobId(), int(req.GetAttempt()), scheduler.Outcome{
		ExitCode: int(req.GetExitCode()), Failed: req.GetFailed(), InfraErr: req.GetInfrastructureError(),
		Reason: req.GetReason(), Artifacts: ArtifactsFromPB(req.GetArtifacts()), Record: RecordFromPB(req.GetRecord()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &wpb.CompleteJobResponse{}, nil
}

// Goodbye implements WorkerService.
func (s *WorkerServer) Goodbye(ctx context.Context, req *wpb.GoodbyeRequest) (*wpb.GoodbyeResponse, error) {
	if err := s.ownSession(ctx, req.GetSessionId()); err != nil {
		return nil, err
	}
	return &wpb.GoodbyeResponse{}, toStatus(s.f.Goodbye(ctx, req.GetSessionId()))
}

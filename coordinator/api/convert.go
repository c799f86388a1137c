// Package api serves the coordinator's gRPC services: CoordinatorService
// for clients and WorkerService for workers. It converts between the wire
// types and the domain types at the edge and maps errors to gRPC codes in
// one place.
package api

import (
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/publish"
	"github.com/kiln-build/kiln/coordinator/scheduler"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

var roleToPB = map[string]pb.SourceRole{"combined": pb.SourceRole_SOURCE_ROLE_COMBINED, "code": pb.SourceRole_SOURCE_ROLE_CODE, "packaging": pb.SourceRole_SOURCE_ROLE_PACKAGING}

func roleFromPB(r pb.SourceRole) string {
	for k, v := range roleToPB {
		if v == r {
			return k
		}
	}
	return ""
}

// SourcesFromPB converts sources.
func SourcesFromPB(in []*pb.Source) []job.Source {
	var out []job.Source
	for _, s := range in {
		out = append(out, job.Source{URL: s.GetUrl(), Commit: s.GetCommit(), Ref: s.GetRef(), Role: roleFromPB(s.GetRole())})
	}
	return out
}

// SourcesToPB converts sources.
func SourcesToPB(in []job.Source) []*pb.Source {
	var out []*pb.Source
	for _, s := range in {
		out = append(out, &pb.Source{Url: s.URL, Commit: s.Commit, Ref: s.Ref, Role: roleToPB[s.Role]})
	}
	return out
}

func packagesFromPB(in []*pb.InstalledPackage) []job.Package {
	var out []job.Package
	for _, p := range in {
		out = append(out, job.Package{Name: p.GetName(), Version: p.GetVersion(), Architecture: p.GetArchitecture()})
	}
	return out
}

func packagesToPB(in []job.Package) []*pb.InstalledPackage {
	var out []*pb.InstalledPackage
	for _, p := range in {
		out = append(out, &pb.InstalledPackage{Name: p.Name, Version: p.Version, Architecture: p.Architecture})
	}
	return out
}

// SpecFromPB converts a client's job spec.
func SpecFromPB(s *pb.JobSpec) job.Spec {
	out := job.Spec{
		Labels: s.GetLabels(), Command: s.GetCommand(), Env: s.GetEnv(), ArtifactGlobs: s.GetArtifactGlobs(),
		Priority: s.GetPriority(), FairnessGroup: s.GetFairnessGroup(), SupersedeKey: s.GetSupersedeKey(),
		Force: s.GetForce(), Timeout: seconds(s.GetTimeoutSeconds()), Origin: s.GetOrigin(),
	}
	switch s.GetKind() {
	case pb.JobKind_JOB_KIND_COMMAND:
		out.Kind = job.Command
	case pb.JobKind_JOB_KIND_PACKAGE_BUILD:
		out.Kind = job.PackageBuild
	default:
		out.Kind = job.Kind(s.GetKind()) // unknown: Validate names the number sent
	}
	if b := s.GetPackageBuild(); b != nil {
		out.Build = &job.Build{
			Release: b.GetRelease(), Target: b.GetTarget(), Package: b.GetPackage(), Sources: SourcesFromPB(b.GetSources()),
			Recipe: b.GetRecipe(), Publish: b.GetPublish(), Revision: b.GetRevision(), VersionSuffix: b.GetVersionSuffix(),
			Pinned: packagesFromPB(b.GetPinnedPackages()), Sealed: b.GetSealed(), Profiles: b.GetBuildProfiles(), Options: b.GetBuildOptions(),
		}
	}
	return out
}

// seconds converts a count of seconds, saturating rather than wrapping
// around when it does not fit a Duration.
func seconds(n int64) time.Duration {
	const most = int64(math.MaxInt64 / time.Second)
	switch {
	case n > most:
		return math.MaxInt64
	case n < -most:
		return math.MinInt64
	}
	return time.Duration(n) * time.Second
}

// SpecToPB converts a job spec.
func SpecToPB(s job.Spec) *pb.JobSpec {
	out := &pb.JobSpec{
		Labels: s.Labels, Command: s.Command, Env: s.Env, ArtifactGlobs: s.ArtifactGlobs, Priority: s.Priority,
		FairnessGroup: s.FairnessGroup, SupersedeKey: s.SupersedeKey, Force: s.Force,
		TimeoutSeconds: int64(s.Timeout / time.Second), Origin: s.Origin,
	}
	switch s.Kind {
	case job.Command:
		out.Kind = pb.JobKind_JOB_KIND_COMMAND
	case job.PackageBuild:
		out.Kind = pb.JobKind_JOB_KIND_PACKAGE_BUILD
	}
	if b := s.Build; b != nil {
		out.PackageBuild = &pb.PackageBuild{
			Release: b.Release, Target: b.Target, Package: b.Package, Sources: SourcesToPB(b.Sources), Recipe: b.Recipe,
			Publish: b.Publish, Revision: b.Revision, VersionSuffix: b.VersionSuffix, PinnedPackages: packagesToPB(b.Pinned),
			Sealed: b.Sealed, BuildProfiles: b.Profiles, BuildOptions: b.Options,
		}
	}
	return out
}

// ArtifactsFromPB converts artifacts.
func ArtifactsFromPB(in []*pb.Artifact) []job.Artifact {
	var out []job.Artifact
	for _, a := range in {
		out = append(out, job.Artifact{Name: a.GetName(), SHA256: a.GetSha256(), Size: a.GetSize()})
	}
	return out
}

func artifactsToPB(in []job.Artifact) []*pb.Artifact {
	var out []*pb.Artifact
	for _, a := range in {
		out = append(out, &pb.Artifact{Name: a.Name, Sha256: a.SHA256, Size: a.Size})
	}
	return out
}

// RecordFromPB converts a build record.
func RecordFromPB(r *pb.BuildRecord) *job.Record {
	if r == nil {
		return nil
	}
	return &job.Record{Sources: SourcesFromPB(r.GetSources()), ChrootDigest: r.GetChrootDigest(),
		Installed: packagesFromPB(r.GetInstalled()), Commands: r.GetCommands(), Artifacts: ArtifactsFromPB(r.GetArtifacts()),
		Version: r.GetVersion(), SourceLayout: r.GetSourceLayout()}
}

func recordToPB(r *job.Record) *pb.BuildRecord {
	if r == nil {
		return nil
	}
	return &pb.BuildRecord{Sources: SourcesToPB(r.Sources), ChrootDigest: r.ChrootDigest, Installed: packagesToPB(r.Installed),
		Commands: r.Commands, Artifacts: artifactsToPB(r.Artifacts), Version: r.Version, SourceLayout: r.SourceLayout}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var stateToPB = map[job.State]pb.JobState{
	job.Queued: pb.JobState_JOB_STATE_QUEUED, job.Running: pb.JobState_JOB_STATE_RUNNING,
	job.Succeeded: pb.JobState_JOB_STATE_SUCCEEDED, job.Failed: pb.JobState_JOB_STATE_FAILED,
	job.Error: pb.JobState_JOB_STATE_ERROR, job.Canceled: pb.JobState_JOB_STATE_CANCELED,
}

func stateFromPB(s pb.JobState) (job.State, bool) {
	for k, v := range stateToPB {
		if v == s {
			return k, true
		}
	}
	return 0, false
}

// JobToPB converts a job.
func JobToPB(j *job.Job, waiting string) *pb.Job {
	return &pb.Job{
		Id: j.ID, Spec: SpecToPB(j.Spec), State: stateToPB[j.State], BuildKey: j.BuildKey, Rebuild: j.Rebuild,
		Attempt: int32(j.Attempt), Worker: j.Worker, ExitCode: int32(j.ExitCode), Reason: j.Reason, WaitingReason: waiting,
		Artifacts: artifactsToPB(j.Artifacts), Record: recordToPB(j.Record), CreatedAt: ts(j.CreatedAt),
		StartedAt: ts(j.StartedAt), FinishedAt: ts(j.FinishedAt), RebuildOf: j.RebuildOf,
		DifferingArtifacts: j.Differing, PublishState: j.Publish, Publish: publishToPB(j.Publish),
	}
}

var publishStateToPB = map[string]pb.PublishState{
	publish.StatePending: pb.PublishState_PUBLISH_STATE_PENDING, publish.StatePublished: pb.PublishState_PUBLISH_STATE_PUBLISHED,
	publish.StateRefused: pb.PublishState_PUBLISH_STATE_REFUSED, publish.StateFailed: pb.PublishState_PUBLISH_STATE_FAILED,
	publish.StateCanceled: pb.PublishState_PUBLISH_STATE_CANCELED,
}

func publishToPB(s string) *pb.JobPublish {
	st, loc, reason := publish.Parse(s)
	if st == "" {
		return nil
	}
	return &pb.JobPublish{State: publishStateToPB[st], Location: loc, Reason: reason}
}

var workerStateToPB = map[scheduler.WorkerState]pb.WorkerState{
	scheduler.WorkerOnline: pb.WorkerState_WORKER_STATE_ONLINE, scheduler.WorkerDraining: pb.WorkerState_WORKER_STATE_DRAINING,
	scheduler.WorkerLost: pb.WorkerState_WORKER_STATE_LOST, scheduler.WorkerOffline: pb.WorkerState_WORKER_STATE_OFFLINE,
}

func workerToPB(w scheduler.WorkerInfo) *pb.Worker {
	return &pb.Worker{Name: w.Name, Labels: w.Labels, Slots: int32(w.Slots), State: workerStateToPB[w.State],
		RunningJobs: w.Running, LastSeen: ts(w.LastSeen)}
}

package api

import (
	"context"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/store"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// ReleaseServer implements ReleaseService.
type ReleaseServer struct {
	pb.UnimplementedReleaseServiceServer
	r *fleet.Releases
}

// NewReleaseServer makes the release API.
func NewReleaseServer(r *fleet.Releases) *ReleaseServer { return &ReleaseServer{r: r} }

// requester names who asks: the client certificate's common name when the
// client presented one, then what the client says about itself.
func requester(ctx context.Context, said string) string {
	said = strings.TrimSpace(said)
	if len(said) > 256 {
		said = said[:256]
	}
	cn := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
	}
	switch {
	case cn != "" && said != "":
		return cn + " (" + said + ")"
	case cn != "":
		return cn
	case said != "":
		return said
	}
	return "unknown client"
}

func sealToPB(s store.Seal) *pb.SealState {
	return &pb.SealState{Sealed: s.Sealed, ChangedBy: s.By, ChangedAt: ts(s.At)}
}

var resultToPB = map[string]pb.VerificationResult{
	store.VerifyWaiting: pb.VerificationResult_VERIFICATION_RESULT_WAITING, store.VerifyRunning: pb.VerificationResult_VERIFICATION_RESULT_RUNNING,
	store.VerifyIdentical: pb.VerificationResult_VERIFICATION_RESULT_IDENTICAL, store.VerifyDifferent: pb.VerificationResult_VERIFICATION_RESULT_DIFFERENT,
	store.VerifyFailed: pb.VerificationResult_VERIFICATION_RESULT_FAILED, store.VerifyError: pb.VerificationResult_VERIFICATION_RESULT_ERROR,
}

func itemToPB(items []store.VerifyItem, it store.VerifyItem) *pb.VerificationItem {
	out := &pb.VerificationItem{VerificationId: it.VerificationID, Package: it.Package, Target: it.Target, JobId: it.JobID,
		Version: it.Version, RebuildJobId: it.RebuildJobID, Result: resultToPB[it.Result], DifferingArtifacts: it.Differing,
		Detail: it.Detail, FinishedAt: ts(it.FinishedAt)}
	for _, i := range it.After {
		if i >= 0 && i < len(items) {
			out.After = append(out.After, items[i].Package+"/"+items[i].Target)
		}
	}
	return out
}

func verificationToPB(v *store.Verification) *pb.Verification {
	out := &pb.Verification{Id: v.ID, Release: v.Release, RequestedBy: v.RequestedBy, CreatedAt: ts(v.CreatedAt), Done: true}
	for _, it := range v.Items {
		out.Items = append(out.Items, itemToPB(v.Items, it))
		if !it.Final() {
			out.Done = false
		}
	}
	return out
}

// SealRelease implements ReleaseService.
func (s *ReleaseServer) SealRelease(ctx context.Context, req *pb.SealReleaseRequest) (*pb.SealReleaseResponse, error) {
	if req.GetRelease() == "" {
		return nil, invalid("release is required")
	}
	st, err := s.r.Seal(ctx, req.GetRelease(), !req.GetUnseal(), requester(ctx, req.GetRequestedBy()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SealReleaseResponse{Release: req.GetRelease(), Seal: sealToPB(st.Seal),
		RemarkedJobIds: st.Remarked, FailedJobIds: st.Failed, RunningJobIds: st.Running, Changed: st.Changed}, nil
}

// GetRelease implements ReleaseService.
func (s *ReleaseServer) GetRelease(ctx context.Context, req *pb.GetReleaseRequest) (*pb.GetReleaseResponse, error) {
	if req.GetRelease() == "" {
		return nil, invalid("release is required")
	}
	info, err := s.r.Show(ctx, req.GetRelease())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.Release{Name: info.Name, Configured: info.Configured, Seal: sealToPB(info.Seal),
		Base: &pb.BaseSize{Packages: info.BasePackages, Bytes: info.BaseBytes}}
	for _, p := range info.Packages {
		rp := &pb.ReleasePackage{Package: p.Package, Target: p.Target, JobId: p.Job.ID, Revision: p.Job.Spec.Build.Revision,
			PublishState: p.Job.Publish, Binaries: p.Binaries}
		if p.Job.Record != nil {
			rp.Version = p.Job.Record.Version
		}
		if p.Last != nil {
			rp.LastVerification = itemToPB(nil, *p.Last)
		}
		out.Packages = append(out.Packages, rp)
	}
	return &pb.GetReleaseResponse{Release: out}, nil
}

// VerifyRelease implements ReleaseService.
func (s *ReleaseServer) VerifyRelease(ctx context.Context, req *pb.VerifyReleaseRequest) (*pb.VerifyReleaseResponse, error) {
	if req.GetRelease() == "" {
		return nil, invalid("release is required")
	}
	v, err := s.r.Verify(ctx, req.GetRelease(), req.GetPackages(), requester(ctx, req.GetRequestedBy()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.VerifyReleaseResponse{Verification: verificationToPB(v)}, nil
}

// GetVerification implements ReleaseService.
func (s *ReleaseServer) GetVerification(ctx context.Context, req *pb.GetVerificationRequest) (*pb.GetVerificationResponse, error) {
	if req.GetId() <= 0 {
		return nil, invalid("verification id %d: give the id VerifyRelease returned", req.GetId())
	}
	v, err := s.r.Verification(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetVerificationResponse{Verification: verificationToPB(v)}, nil
}

package api

import (
	"context"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// Who may call what, by the role in the caller's client certificate
// (tlsconfig.RoleOf). Workers call the WorkerService only; clients (Jenkins,
// people) read, submit, cancel and rebuild; admins also drain and undrain
// workers and seal and unseal releases. The publisher's and the
// coordinator's own certificates may call nothing here. A method missing
// from the table is refused to every role.
var (
	workerOnly  = []tlsconfig.Role{tlsconfig.RoleWorker}
	clientRoles = []tlsconfig.Role{tlsconfig.RoleClient, tlsconfig.RoleAdmin}
	adminOnly   = []tlsconfig.Role{tlsconfig.RoleAdmin}
	anyRole     = tlsconfig.Roles

	allowed = map[string][]tlsconfig.Role{
		pb.CoordinatorService_SubmitJob_FullMethodName:    clientRoles,
		pb.CoordinatorService_GetJob_FullMethodName:       clientRoles,
		pb.CoordinatorService_ListJobs_FullMethodName:     clientRoles,
		pb.CoordinatorService_CancelJob_FullMethodName:    clientRoles,
		pb.CoordinatorService_StreamJobLog_FullMethodName: clientRoles,
		pb.CoordinatorService_GetArtifact_FullMethodName:  clientRoles,
		pb.CoordinatorService_ListWorkers_FullMethodName:  clientRoles,
		pb.CoordinatorService_RebuildJob_FullMethodName:   clientRoles,
		pb.CoordinatorService_ListEvents_FullMethodName:   clientRoles,
		pb.CoordinatorService_DrainWorker_FullMethodName:  adminOnly,

		pb.ReleaseService_GetRelease_FullMethodName:      clientRoles,
		pb.ReleaseService_VerifyRelease_FullMethodName:   clientRoles,
		pb.ReleaseService_GetVerification_FullMethodName: clientRoles,
		pb.ReleaseService_SealRelease_FullMethodName:     adminOnly,

		wpb.WorkerService_Register_FullMethodName:       workerOnly,
		wpb.WorkerService_Heartbeat_FullMethodName:      workerOnly,
		wpb.WorkerService_PullJob_FullMethodName:        workerOnly,
		wpb.WorkerService_AppendLog_FullMethodName:      workerOnly,
		wpb.WorkerService_UploadArtifact_FullMethodName: workerOnly,
		wpb.WorkerService_CompleteJob_FullMethodName:    workerOnly,
		wpb.WorkerService_Goodbye_FullMethodName:        workerOnly,

		// Health answers whoever holds a certificate of the CA.
		"/grpc.health.v1.Health/Check": anyRole,
		"/grpc.health.v1.Health/Watch": anyRole,
		"/grpc.health.v1.Health/List":  anyRole,
	}
)

// Caller is who calls: the client certificate's common name and role.
type Caller struct {
	Name string
	Role tlsconfig.Role
}

// CallerOf reads the caller from a request's context: a verified client
// certificate on a TLS connection. It fails with Unauthenticated without
// one, and with PermissionDenied when the certificate has no role.
func CallerOf(ctx context.Context) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, grpcerr.New(grpcerr.Unauthenticated, "no peer: a client certificate is required")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Caller{}, grpcerr.New(grpcerr.Unauthenticated, "no verified client certificate: connect with TLS and a certificate made by `coordinator certs --role`")
	}
	return callerOfCert(ti.State.VerifiedChains[0][0])
}

func callerOfCert(cert *x509.Certificate) (Caller, error) {
	role, err := tlsconfig.RoleOf(cert)
	if err != nil {
		return Caller{}, grpcerr.New(grpcerr.Denied, "%w", err)
	}
	return Caller{Name: cert.Subject.CommonName, Role: role}, nil
}

// Authorize applies to the holder of cert the rule the interceptors apply
// to a gRPC call of method (a full method name such as
// CoordinatorService_CancelJob_FullMethodName), for what changes the fleet
// outside gRPC: the web pages' actions. It fails with a PermissionDenied
// status saying which role may call method.
func Authorize(cert *x509.Certificate, method string) error {
	c, err := callerOfCert(cert)
	if err != nil {
		return err
	}
	return authorize(c, method, nil)
}

// authorize checks that the caller's role may call method and, for a
// worker's registration, that the worker registers under its
// certificate's name: the bearer token stays a second factor.
func authorize(c Caller, method string, req any) error {
	roles, ok := allowed[method]
	if !ok {
		return grpcerr.New(grpcerr.Denied, "%s is not open to any certificate role", method)
	}
	if !roleIn(c.Role, roles) {
		return grpcerr.New(grpcerr.Denied, "certificate %q has role %s, which may not call %s (allowed: %s)",
			c.Name, c.Role, method, roleList(roles))
	}
	if r, ok := req.(*wpb.RegisterRequest); ok && r.GetName() != c.Name {
		return grpcerr.New(grpcerr.Denied, "worker certificate %q may register only as worker %q, not as %q: give the worker a certificate made with `coordinator certs --name %s --role worker`",
			c.Name, c.Name, r.GetName(), r.GetName())
	}
	return nil
}

func roleIn(r tlsconfig.Role, in []tlsconfig.Role) bool {
	for _, x := range in {
		if x == r {
			return true
		}
	}
	return false
}

func roleList(rs []tlsconfig.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// UnaryAuth is the unary interceptor that enforces the roles; it also
// redacts job environment values for every role but admin.
func UnaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, err := CallerOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := authorize(c, info.FullMethod, req); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	if err == nil && c.Role != tlsconfig.RoleAdmin {
		redactJobs(resp)
	}
	return resp, err
}

// StreamAuth is the stream interceptor that enforces the roles.
func StreamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, err := CallerOf(ss.Context())
	if err != nil {
		return err
	}
	if err := authorize(c, info.FullMethod, nil); err != nil {
		return err
	}
	if c.Role != tlsconfig.RoleAdmin {
		ss = redactingStream{ss}
	}
	return handler(srv, ss)
}

type redactingStream struct{ grpc.ServerStream }

func (s redactingStream) SendMsg(m any) error {
	redactJobs(m)
	return s.ServerStream.SendMsg(m)
}

// Redacted replaces a job environment value shown to a role that does not
// need it.
const Redacted = "(redacted)"

// redactJobs replaces the values of the environment of the jobs in a
// response, keeping the names: a job's environment may hold credentials
// that only the job and the admins are to see.
func redactJobs(m any) {
	if r, ok := m.(interface{ GetJob() *pb.Job }); ok {
		redactJob(r.GetJob())
	}
	if r, ok := m.(interface{ GetJobs() []*pb.Job }); ok {
		for _, j := range r.GetJobs() {
			redactJob(j)
		}
	}
}

func redactJob(j *pb.Job) {
	if j == nil || j.GetSpec() == nil {
		return
	}
	// A new slice: the response may share the job's own, which the
	// scheduler keeps and hands to the worker.
	env := make([]string, len(j.GetSpec().GetEnv()))
	for i, kv := range j.GetSpec().GetEnv() {
		name, _, _ := strings.Cut(kv, "=")
		env[i] = name + "=" + Redacted
	}
	j.Spec.Env = env
}

// Package serve is the publisher's gRPC service for the coordinator:
// verified artifact uploads and idempotent publish requests, over TLS with
// the coordinator's client certificate pinned (plaintext only in the
// development mode, on loopback).
package serve

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/kiln-build/kiln/internal/grpcerr"
	"github.com/kiln-build/kiln/internal/opshttp"
	"github.com/kiln-build/kiln/internal/refusal"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	publisherv1 "github.com/kiln-build/kiln/proto/kiln/publisher/v1"
	"github.com/kiln-build/kiln/publisher/deb"
	"github.com/kiln-build/kiln/publisher/repo"
	"github.com/kiln-build/kiln/publisher/rpm"
)

// DefaultMaxUpload bounds one uploaded artifact.
const DefaultMaxUpload = 2 << 30

// Config configures the service.
type Config struct {
	Listen string          `yaml:"listen"`
	TLS    tlsconfig.Files `yaml:"tls"`
	// ClientCertSHA256 pins the coordinator's client certificate by the
	// SHA-256 of its DER encoding (hex, colons allowed).
	ClientCertSHA256 []string `yaml:"client_cert_sha256"`
	// ClientSubjects pins it by subject common name.
	ClientSubjects []string `yaml:"client_subjects"`
	// Dev serves plaintext, on a loopback address only.
	Dev bool `yaml:"dev"`
	// MaxUploadBytes bounds one artifact; 0 means DefaultMaxUpload.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// HTTPListen serves /metrics and /healthz over plain HTTP; empty
	// disables it.
	HTTPListen string `yaml:"http_listen"`
	// GCInterval is how often stored files that no package or snapshot
	// references are removed (as "publisher gc" does); 0 means
	// DefaultGCInterval, a negative value never.
	GCInterval time.Duration `yaml:"gc_interval"`
}

// DefaultGCInterval is how often serve collects unreferenced stored files.
const DefaultGCInterval = 24 * time.Hour

// Validate checks the configuration before anything starts.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("serve: no listen address: set --listen or listen in the serve section")
	}
	if c.Dev {
		return tlsconfig.CheckLoopback(c.Listen)
	}
	if c.TLS.Cert == "" || c.TLS.Key == "" || c.TLS.CA == "" {
		return errors.New("serve: TLS needs tls cert, key and ca files (the CA that signed the coordinator's client certificate); plaintext only with --dev on 127.0.0.1")
	}
	if len(c.ClientCertSHA256) == 0 && len(c.ClientSubjects) == 0 {
		return errors.New("serve: pin the coordinator's client certificate with client_cert_sha256 (or client_subjects), so that only the coordinator can publish")
	}
	for _, p := range c.ClientCertSHA256 {
		if _, err := normPin(p); err != nil {
			return err
		}
	}
	if c.MaxUploadBytes < 0 {
		return fmt.Errorf("serve: max_upload_bytes %d is negative", c.MaxUploadBytes)
	}
	return nil
}

func normPin(p string) (string, error) {
	n := strings.ToLower(strings.ReplaceAll(p, ":", ""))
	if len(n) != 64 || strings.Trim(n, "0123456789abcdef") != "" {
		return "", fmt.Errorf("serve: client certificate pin %q is not a SHA-256 in hex (openssl x509 -noout -fingerprint -sha256 shows it)", p)
	}
	return n, nil
}

// CertSHA256 returns the pin of a certificate: hex SHA-256 of its DER.
func CertSHA256(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// TLSConfig returns the server TLS configuration that requires a client
// certificate from the CA and accepts only the pinned one.
func (c Config) TLSConfig() (*tls.Config, error) {
	tc, err := tlsconfig.Server(c.TLS)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	var pins []string
	for _, p := range c.ClientCertSHA256 {
		n, err := normPin(p)
		if err != nil {
			return nil, err
		}
		pins = append(pins, n)
	}
	subjects := slices.Clone(c.ClientSubjects)
	tc.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return errors.New("no verified client certificate")
		}
		leaf := chains[0][0]
		if slices.Contains(pins, CertSHA256(leaf.Raw)) || slices.Contains(subjects, leaf.Subject.CommonName) {
			return nil
		}
		return fmt.Errorf("client certificate %q (sha256 %s) is not the pinned coordinator certificate", leaf.Subject.CommonName, CertSHA256(leaf.Raw))
	}
	return tc, nil
}

// Service implements publisherv1.PublisherServiceServer.
type Service struct {
	publisherv1.UnimplementedPublisherServiceServer
	store     *repo.Store
	signer    repo.Signer
	log       hclog.Logger
	maxUpload int64
	// Published, when set, is told the directory of every repository
	// published (to push it to mirrors). It must not block: the publish
	// request waits for it. Whoever sets it owns the work it starts.
	Published func(dir string)
	// Metrics counts what the service does; Run serves them.
	Metrics  *Metrics
	gatherer prometheus.Gatherer
}

// NewService returns the service over store, signing with signer.
func NewService(store *repo.Store, signer repo.Signer, maxUpload int64, log hclog.Logger) *Service {
	if maxUpload <= 0 {
		maxUpload = DefaultMaxUpload
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	reg := opshttp.NewRegistry()
	return &Service{store: store, signer: signer, log: log, maxUpload: maxUpload, Metrics: NewMetrics(reg), gatherer: reg}
}

// Run listens and serves until ctx is done, then stops gracefully.
func Run(ctx context.Context, cfg Config, svc *Service, log hclog.Logger, ready func(addr net.Addr)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var opts []grpc.ServerOption
	if !cfg.Dev {
		tc, err := cfg.TLSConfig()
		if err != nil {
			return err
		}
		refused := refusal.New(log.Named("refusal"))
		opts = append(opts, grpc.Creds(refused.Credentials(credentials.NewTLS(tc))),
			grpc.ChainUnaryInterceptor(refused.Unary), grpc.ChainStreamInterceptor(refused.Stream))
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", cfg.Listen, err)
	}
	var hsrv *http.Server
	var hlis net.Listener
	if cfg.HTTPListen != "" {
		hlis, err = net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("serve: listen on %s (http_listen): %w", cfg.HTTPListen, err)
		}
		hsrv = &http.Server{Handler: opshttp.Mux(svc.gatherer), ReadHeaderTimeout: 10 * time.Second}
	}
	g := grpc.NewServer(opts...)
	publisherv1.RegisterPublisherServiceServer(g, svc)
	log.Info("serving", "addr", lis.Addr().String(), "tls", !cfg.Dev)
	if hsrv != nil {
		log.Info("serving /metrics and /healthz", "addr", hlis.Addr().String())
	}
	if ready != nil {
		ready(lis.Addr())
	}
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(lis) }()
	if hsrv != nil {
		go func() {
			if err := hsrv.Serve(hlis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	stop := func() {
		if hsrv != nil {
			_ = hsrv.Close()
		}
	}
	select {
	case <-ctx.Done():
		stop()
		g.GracefulStop()
		return nil
	case err := <-errc:
		stop()
		g.Stop()
		return fmt.Errorf("serve: %w", err)
	}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func checkRef(ref *publisherv1.FileRef, max int64) error {
	if ref == nil {
		return grpcerr.New(grpcerr.BadRequest, "no file header: send a FileRef first")
	}
	if err := deb.CheckFileName(ref.GetName()); err != nil {
		return grpcerr.New(grpcerr.BadRequest, "%w", err)
	}
	if !sha256Hex.MatchString(ref.GetSha256()) {
		return grpcerr.New(grpcerr.BadRequest, "file %s: sha256 %q is not 64 lower-case hex digits", ref.GetName(), ref.GetSha256())
	}
	if ref.GetSize() < 0 || ref.GetSize() > max {
		return grpcerr.New(grpcerr.BadRequest, "file %s: size %d is outside 0..%d (the publisher's upload limit, max_upload_bytes)", ref.GetName(), ref.GetSize(), max)
	}
	return nil
}

// chunkReader reads the chunks of an upload stream.
type chunkReader struct {
	stream publisherv1.PublisherService_UploadArtifactServer
	buf    []byte
	done   bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.done {
			return 0, io.EOF
		}
		m, err := c.stream.Recv()
		if errors.Is(err, io.EOF) {
			c.done = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if m.GetHeader() != nil {
			return 0, grpcerr.New(grpcerr.BadRequest, "a second header in one upload")
		}
		c.buf = m.GetChunk()
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// UploadArtifact implements the service.
func (s *Service) UploadArtifact(stream publisherv1.PublisherService_UploadArtifactServer) error {
	first, err := stream.Recv()
	if err != nil {
		return grpcerr.New(grpcerr.BadRequest, "upload: %w", err)
	}
	ref := first.GetHeader()
	if err := checkRef(ref, s.maxUpload); err != nil {
		s.Metrics.upload("refused", 0)
		return err
	}
	r := &chunkReader{stream: stream, buf: first.GetChunk()}
	existed, err := s.store.AddObject(stream.Context(), ref.GetSha256(), ref.GetSize(), r)
	switch {
	case err != nil:
		s.Metrics.upload("refused", 0)
		return toStatus(err)
	case existed:
		s.Metrics.upload("existed", 0)
	default:
		s.Metrics.upload("stored", ref.GetSize())
	}
	s.log.Info("artifact received", "name", ref.GetName(), "sha256", ref.GetSha256(), "size", ref.GetSize(), "existed", existed)
	return stream.SendAndClose(&publisherv1.UploadArtifactResponse{Existed: existed})
}

type savedResult struct {
	Location   string `json:"location"`
	Added      int32  `json:"added"`
	Repository string `json:"repository,omitempty"`
	Packages   int32  `json:"packages,omitempty"`
	Size       int64  `json:"size,omitempty"`
}

func (r savedResult) response() *publisherv1.PublishResponse {
	return &publisherv1.PublishResponse{Location: r.Location, Added: r.Added, Repository: r.Repository, Packages: r.Packages, Size: r.Size}
}

// Publish implements the service.
func (s *Service) Publish(ctx context.Context, req *publisherv1.PublishRequest) (*publisherv1.PublishResponse, error) {
	start := time.Now()
	resp, packages, replayed, err := s.publish(ctx, req)
	name := req.GetRepository()
	if req.GetBase() {
		name = repo.BaseName(name)
	}
	name = s.repoLabel(ctx, name)
	switch {
	case err != nil:
		s.Metrics.publishes.WithLabelValues(name, "failed").Inc()
	case replayed:
		s.Metrics.publishes.WithLabelValues(name, "replayed").Inc()
	default:
		s.Metrics.published(name, packages, time.Since(start), time.Now())
	}
	return resp, err
}

// repoLabel is the repository label of a metric: the name of an existing
// repository, else "unknown" (a request cannot add label values).
func (s *Service) repoLabel(ctx context.Context, name string) string {
	if _, err := s.store.Repo(ctx, name); err != nil {
		return "unknown"
	}
	return name
}

// publish does a publish request; packages is the repository's package
// count after it, replayed says the request had been done before.
func (s *Service) publish(ctx context.Context, req *publisherv1.PublishRequest) (resp *publisherv1.PublishResponse, packages int, replayed bool, err error) {
	id := req.GetRequestId()
	if id == "" || len(id) > 200 {
		return nil, 0, false, grpcerr.New(grpcerr.BadRequest, "publish: request_id must be set (at most 200 bytes)")
	}
	if prev, ok, err := s.store.Request(ctx, id); err != nil {
		return nil, 0, false, toStatus(err)
	} else if ok {
		var r savedResult
		if err := json.Unmarshal(prev, &r); err != nil {
			return nil, 0, false, toStatus(err)
		}
		return r.response(), 0, true, nil
	}
	if err := repo.CheckName("repository", req.GetRepository()); err != nil {
		return nil, 0, false, grpcerr.New(grpcerr.BadRequest, "%w", err)
	}
	repoName := req.GetRepository()
	if req.GetBase() {
		b, err := s.store.EnsureBase(ctx, repoName)
		if err != nil {
			return nil, 0, false, toStatus(err)
		}
		repoName = b.Name
	}
	byName := map[string]string{}
	var inputs []repo.Input
	for _, ref := range req.GetFiles() {
		if err := checkRef(ref, s.maxUpload); err != nil {
			return nil, 0, false, err
		}
		if !s.store.HasObject(ref.GetSha256()) {
			return nil, 0, false, grpcerr.New(grpcerr.Precondition, "file %s (sha256 %s) was not uploaded: upload it first", ref.GetName(), ref.GetSha256())
		}
		p := s.store.ObjectPath(ref.GetSha256())
		byName[ref.GetName()] = p
		inputs = append(inputs, repo.Input{Name: ref.GetName(), Path: p})
	}
	// A .dsc's files travel in the same request; they are not packages
	// of their own.
	var pkgs []repo.Input
	for _, in := range inputs {
		switch {
		case strings.HasSuffix(in.Name, ".deb"), strings.HasSuffix(in.Name, ".udeb"), strings.HasSuffix(in.Name, ".dsc"), strings.HasSuffix(in.Name, ".rpm"):
			pkgs = append(pkgs, in)
		}
	}
	resolve := func(name string) (string, bool) { p, ok := byName[name]; return p, ok }
	log := s.log.With("request_id", id, "repository", repoName)
	inc, pub, err := s.store.IncludeAndPublish(ctx, repoName, pkgs, resolve, s.signer)
	if err != nil {
		return nil, 0, false, toStatus(err)
	}
	res := savedResult{Location: pub.Dir, Added: int32(len(inc.Added)), Repository: repoName, Packages: int32(pub.Packages), Size: pub.Bytes}
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, 0, false, toStatus(err)
	}
	if err := s.store.SaveRequest(ctx, id, raw); err != nil {
		return nil, 0, false, toStatus(err)
	}
	log.Info("published", "added", res.Added, "packages", pub.Packages)
	if s.Published != nil {
		s.Published(pub.Dir)
	}
	return res.response(), pub.Packages, false, nil
}

// toStatus maps the publisher's errors to gRPC statuses: the one place
// that does. The kinds, and how they travel, are grpcerr's.
func toStatus(err error) error {
	return grpcerr.Status(err, kindOf)
}

func kindOf(err error) grpcerr.Kind {
	switch {
	case errors.Is(err, repo.ErrNotFound):
		return grpcerr.NotFound
	case errors.Is(err, repo.ErrConflict):
		return grpcerr.Conflict
	case errors.Is(err, repo.ErrBase):
		return grpcerr.Precondition
	case errors.Is(err, repo.ErrDigestMismatch), errors.Is(err, deb.ErrInvalid), errors.Is(err, rpm.ErrInvalid):
		return grpcerr.BadRequest
	}
	return grpcerr.Unknown
}

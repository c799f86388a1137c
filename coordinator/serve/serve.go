// Package serve runs `coordinator serve`: the gRPC services for clients and
// workers, the HTTP endpoint for metrics, health and logs, and the
// background loops, until its context ends.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kiln-build/kiln/coordinator/api"
	"github.com/kiln-build/kiln/coordinator/fleet"
	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
	"github.com/kiln-build/kiln/coordinator/web"
	"github.com/kiln-build/kiln/internal/opshttp"
	"github.com/kiln-build/kiln/internal/reconnect"
	"github.com/kiln-build/kiln/internal/refusal"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	pb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
	wpb "github.com/kiln-build/kiln/proto/kiln/worker/v1"
)

// Config is the coordinator's config file.
type Config struct {
	// Listen is the gRPC address for clients and workers.
	Listen string `yaml:"listen"`
	// HTTPListen serves /metrics, /healthz, /logs/ID and the web pages;
	// empty disables it. Outside --dev it speaks TLS, and every path but
	// /metrics, /healthz and the Gerrit webhook needs a client certificate
	// with role client or admin.
	HTTPListen string `yaml:"http_listen"`
	// PublicURL is how people reach HTTPListen, for log links: https://
	// outside --dev.
	PublicURL string `yaml:"public_url"`
	// StateDir holds the SQLite database, logs and artifacts; coordinators
	// sharing a PostgreSQL database must share it too.
	StateDir string `yaml:"state_dir"`
	// DatabaseURL, a postgres:// URL, keeps the state in PostgreSQL
	// instead of SQLite in StateDir. Several coordinators on one database
	// make one leader and standbys.
	DatabaseURL string `yaml:"database_url"`
	// Advertise is the gRPC address workers and clients reach this
	// coordinator at, which standbys name while it leads; empty: Listen.
	Advertise string `yaml:"advertise"`
	// Dev is the single-machine mode: plaintext on loopback only, no
	// certificates, no worker tokens.
	Dev bool            `yaml:"dev"`
	TLS tlsconfig.Files `yaml:"tls"`
	// WorkerTokens maps worker names to bearer tokens (TLS mode).
	WorkerTokens      map[string]string `yaml:"worker_tokens"`
	HeartbeatInterval time.Duration     `yaml:"heartbeat_interval"`
	LostAfter         time.Duration     `yaml:"lost_after"`
	// ReclaimWindow is how long, after a restart, a running job waits for
	// its worker to come back and re-attach it before it runs again
	// elsewhere. Zero derives it from how soon a worker returns after an
	// outage (ReclaimWindowFor); a value set must not be shorter.
	ReclaimWindow  time.Duration `yaml:"reclaim_window"`
	RetryCap       int           `yaml:"retry_cap"`
	DefaultTimeout time.Duration `yaml:"default_timeout"`
	// QueueTimeout ends a job that no worker has started this long after
	// it was submitted, as an error saying why it waited (a target no
	// worker serves); 0 lets jobs wait for ever.
	QueueTimeout    time.Duration `yaml:"queue_timeout"`
	MaxArtifactSize int64         `yaml:"max_artifact_size"`
	// MaxLogSize bounds the output kept of one job: over it, its first
	// and last halves are kept with a line where it was cut. 0: no bound.
	MaxLogSize int64                    `yaml:"max_log_size"`
	Releases   map[string]fleet.Release `yaml:"releases"`
	Log        LogConfig                `yaml:"log"`
	// Extra is configuration of optional subsystems (Gerrit intake,
	// publisher hand-off); see Hooks.
	Extra Extra `yaml:",inline"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level string `yaml:"level"`
	JSON  bool   `yaml:"json"`
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	return Config{
		Listen: "127.0.0.1:7420", HTTPListen: "127.0.0.1:7421", StateDir: "/var/lib/kiln/coordinator",
		HeartbeatInterval: 3 * time.Second, LostAfter: 15 * time.Second, RetryCap: 3,
		DefaultTimeout: 6 * time.Hour, MaxArtifactSize: 4 << 30, QueueTimeout: 24 * time.Hour, MaxLogSize: 128 << 20,
	}
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	if c.StateDir == "" {
		return errors.New("state_dir is empty: set it in the config or with --state-dir")
	}
	if c.DatabaseURL != "" && !store.IsPostgres(c.DatabaseURL) {
		return fmt.Errorf("database_url %q is not a PostgreSQL URL: give postgres://USER@HOST/DB, or leave it empty for SQLite in state_dir", c.DatabaseURL)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if c.Dev {
		if err := tlsconfig.CheckLoopback(c.Listen); err != nil {
			return err
		}
		if c.HTTPListen != "" {
			if err := tlsconfig.CheckLoopback(c.HTTPListen); err != nil {
				return fmt.Errorf("http_listen: %w", err)
			}
		}
	} else if c.TLS.Empty() {
		return errors.New("no TLS configured: set tls.cert, tls.key and tls.ca (make them with `coordinator certs`), or run with --dev on loopback")
	} else if c.HTTPListen != "" && c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("public_url %q: outside --dev http_listen serves HTTPS with client certificates, so public_url must start with https://", c.PublicURL)
	}
	if c.HeartbeatInterval <= 0 || c.LostAfter <= c.HeartbeatInterval {
		return fmt.Errorf("lost_after (%s) must be longer than heartbeat_interval (%s)", c.LostAfter, c.HeartbeatInterval)
	}
	if c.QueueTimeout < 0 {
		return fmt.Errorf("queue_timeout %s is negative: give a duration such as 1h, or 0 to wait for ever", c.QueueTimeout)
	}
	if min := reconnect.Within + c.HeartbeatInterval; c.ReclaimWindow != 0 && c.ReclaimWindow < min {
		return fmt.Errorf("reclaim_window %s is shorter than a worker may take to come back after an outage (%s: its longest reconnect delay, then a heartbeat): set at least %s, or leave it out to have it derived",
			c.ReclaimWindow, min, min)
	}
	if c.MaxLogSize < 0 || c.MaxLogSize > 0 && c.MaxLogSize < 64<<10 {
		return fmt.Errorf("max_log_size %d: give at least 65536 bytes, or 0 for no bound", c.MaxLogSize)
	}
	if c.RetryCap < 1 {
		return fmt.Errorf("retry_cap %d: at least 1", c.RetryCap)
	}
	for name, r := range c.Releases {
		if err := r.Validate(name); err != nil {
			return err
		}
	}
	return c.Extra.Validate()
}

// ReclaimWindowFor returns the reclaim window: the one set, or one derived
// from how soon a worker comes back after an outage (reconnect.Within)
// with two heartbeats to spare, and never shorter than lost_after.
func (c *Config) ReclaimWindowFor() time.Duration {
	if c.ReclaimWindow != 0 {
		return c.ReclaimWindow
	}
	return max(reconnect.Within+2*c.HeartbeatInterval, c.LostAfter)
}

// Database is where the store is: the PostgreSQL URL, or the SQLite file
// in the state directory.
func (c *Config) Database() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.StateDir, "coordinator.db")
}

// AdvertiseAddress is where workers and clients reach this coordinator.
func (c *Config) AdvertiseAddress() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Listen
}

// Run serves until ctx ends. On PostgreSQL it is a standby until it leads
// (lead), and returns an error as soon as it stops leading: the process
// exits non-zero and its supervisor starts it again, as a standby.
func Run(ctx context.Context, cfg Config, logger hclog.Logger) error {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("make state dir: %w", err)
	}
	st, err := store.Open(ctx, cfg.Database())
	if err != nil {
		return err
	}
	var holdErr error // set once the lease is no longer held
	defer func() { closeStore(st, holdErr != nil, logger) }()

	reg := opshttp.NewRegistry()
	wait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "kiln_queue_to_start_seconds", Help: "Time from a job being queued to a worker starting it.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
	})
	reg.MustRegister(wait)
	leading := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kiln_coordinator_leader", Help: "1 while this coordinator leads, 0 while it is a standby.",
	})
	reg.MustRegister(leading)

	var opts, creds []grpc.ServerOption
	tokens := cfg.WorkerTokens
	if cfg.Dev {
		tokens = nil
		logger.Warn("development mode: plaintext gRPC on loopback, no worker tokens", "listen", cfg.Listen)
	} else {
		tc, err := tlsconfig.Server(cfg.TLS)
		if err != nil {
			return err
		}
		// Refusals at the door are logged first, so the log sees what
		// the auth interceptors refuse.
		refused := refusal.New(logger.Named("refusal"))
		creds = []grpc.ServerOption{grpc.Creds(refused.Credentials(credentials.NewTLS(tc)))}
		opts = append(opts, creds[0], grpc.ChainUnaryInterceptor(refused.Unary, api.UnaryAuth), grpc.ChainStreamInterceptor(refused.Stream, api.StreamAuth))
		if tokens == nil {
			tokens = map[string]string{}
		}
	}

	lease, err := lead(ctx, cfg, st, creds, reg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // a standby stopped
		}
		return err
	}
	// The lease is held from here, while the state is restored: PostgreSQL
	// ends a lock session idle for long (store.Lead).
	hctx, stopHold := context.WithCancel(context.Background())
	held := make(chan struct{})
	go func() { holdErr = lease.Hold(hctx); close(held) }()
	defer func() { stopHold(); <-held }()
	leading.Set(1)

	f, err := fleet.New(ctx, fleet.Config{
		StateDir: cfg.StateDir, LostAfter: cfg.LostAfter, ReclaimWindow: cfg.ReclaimWindowFor(), RetryCap: cfg.RetryCap, DefaultTimeout: cfg.DefaultTimeout,
		MaxArtifactSize: cfg.MaxArtifactSize, MaxLogSize: cfg.MaxLogSize, Releases: cfg.Releases, Started: func(d time.Duration) { wait.Observe(d.Seconds()) },
	}, st, logger.Named("fleet"))
	if err != nil {
		return err
	}
	reg.MustRegister(&collector{f: f})

	releases := cfg.ReleaseTargets()
	hooks, err := cfg.Extra.Start(ctx, HookDeps{Fleet: f, Store: st, Logger: logger, Registry: reg, PublicURL: cfg.PublicURL, Releases: releases})
	if err != nil {
		return err
	}

	opts = append(opts, grpc.MaxRecvMsgSize(8<<20))
	opts = append(opts, requestOptions()...)
	gs := grpc.NewServer(opts...)
	pb.RegisterCoordinatorServiceServer(gs, api.NewClientServer(f, api.ClientOptions{Releases: releases, Events: hooks.Events, Publish: hooks.Publish}))
	releaseSvc := fleet.NewReleases(f)
	releaseSvc.Resume(ctx)
	pb.RegisterReleaseServiceServer(gs, api.NewReleaseServer(releaseSvc))
	wpb.RegisterWorkerServiceServer(gs, api.NewWorkerServer(f, tokens, cfg.HeartbeatInterval))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	logger.Info("coordinator serving", "listen", ln.Addr().String(), "state_dir", cfg.StateDir)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		select {
		case <-held:
			return holdErr
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { return gs.Serve(ln) })
	g.Go(func() error { return f.Run(gctx) })
	g.Go(func() error { return expireQueued(gctx, f, cfg.QueueTimeout, logger) })
	for _, r := range hooks.Runners {
		g.Go(func() error { return r(gctx) })
	}
	var hsrv *http.Server
	if cfg.HTTPListen != "" {
		mux := opshttp.Mux(reg, f.Health)
		mux.HandleFunc("/logs/", func(w http.ResponseWriter, r *http.Request) { serveLog(w, r, f) })
		var names []string
		for n := range cfg.Releases {
			names = append(names, n)
		}
		actions := web.CertificateActions
		if cfg.Dev {
			actions = web.LoopbackActions
		}
		pages := web.New(web.Config{Actions: actions, Events: hooks.Events, Releases: releaseSvc, ReleaseNames: names,
			Publish: hooks.Publish, Logger: logger.Named("web")}, f)
		pages.Register(mux)
		g.Go(func() error { return pages.Run(gctx) })
		open := []string{"/metrics", "/healthz"}
		for p, h := range hooks.HTTP {
			mux.Handle(p, h)
			open = append(open, p)
		}
		var handler http.Handler = mux
		var htc *tls.Config
		if !cfg.Dev {
			if htc, err = httpTLS(cfg.TLS); err != nil {
				gs.Stop()
				return err
			}
			handler = requireClientCert(open, mux)
		}
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("listen on %s: %w", cfg.HTTPListen, err)
		}
		if htc != nil {
			hl = tls.NewListener(hl, htc)
		}
		hsrv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := hsrv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down")
		hs.Shutdown()
		if hsrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hsrv.Shutdown(sctx)
		}
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			gs.Stop() // long polls and log followers
		}
		return nil
	})
	err = g.Wait()
	// Nothing finishes a job any more: let what finished jobs started
	// (publish queueing, Gerrit reports, verifications) end before the
	// store closes.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f.WaitFinished(wctx)
	return err
}

// closeStore closes the store. After the leader lock was lost, the
// connections may be dead (a network partition) and another coordinator
// leads: what the store still has to send is not waited for longer than
// a moment, or the process would linger for the dead connections'
// timeouts (5 s for each prepared statement on each).
func closeStore(st *store.Store, lost bool, logger hclog.Logger) {
	if !lost {
		st.Close()
		return
	}
	done := make(chan struct{})
	go func() { st.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		logger.Warn("state database not closed within a second of losing the leader lock: leaving it")
	}
}

// ReleaseTargets is what builds are checked against: each configured
// release's targets and their formats.
func (c *Config) ReleaseTargets() job.Releases {
	out := job.Releases{}
	for name, r := range c.Releases {
		out[name] = r.Targets
	}
	return out
}

// expireQueued ends, every little while, the jobs that waited in the
// queue longer than after without a worker starting them.
func expireQueued(ctx context.Context, f *fleet.Fleet, after time.Duration, logger hclog.Logger) error {
	if after <= 0 {
		return nil
	}
	every := min(after/10, time.Minute)
	every = max(every, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := f.ExpireQueued(ctx, after); err != nil {
				logger.Error("end jobs past the queue timeout", "error", err)
			}
		}
	}
}

func serveLog(w http.ResponseWriter, r *http.Request, f *fleet.Fleet) {
	id := strings.TrimPrefix(r.URL.Path, "/logs/")
	if id == "" || strings.ContainsAny(id, "/.") {
		http.Error(w, "give a job id: /logs/ID", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// A job's output is whatever the job printed: never let a browser
	// guess it is HTML or script.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, err := f.StreamLog(r.Context(), id, 0, false, func(b []byte) error { _, err := w.Write(b); return err })
	if errors.Is(err, fleet.ErrNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
	}
}

type collector struct{ f *fleet.Fleet }

var (
	descDepth   = prometheus.NewDesc("kiln_queue_depth", "Queued jobs per required label set.", []string{"labels"}, nil)
	descRunning = prometheus.NewDesc("kiln_jobs_running", "Jobs running on workers.", nil, nil)
	descJobs    = prometheus.NewDesc("kiln_jobs", "Jobs by state (all time, from the store).", []string{"state"}, nil)
	descWorkers = prometheus.NewDesc("kiln_workers", "Workers by state.", []string{"state"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDepth
	ch <- descRunning
	ch <- descJobs
	ch <- descWorkers
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.f.Scheduler().Stats()
	for k, n := range st.QueueDepth {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(n), k)
	}
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(st.Running))
	for s, n := range st.Workers {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(n), string(s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.f.Store().CountByState(ctx)
	if err == nil {
		for _, s := range []job.State{job.Queued, job.Running, job.Succeeded, job.Failed, job.Error, job.Canceled} {
			ch <- prometheus.MustNewConstMetric(descJobs, prometheus.GaugeValue, float64(counts[s]), s.String())
		}
	}
}

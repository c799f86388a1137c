// Package runcmd runs `worker run`: it loads the worker's configuration,
// picks the executors, connects to the coordinator and runs the agent until
// its context ends.
package runcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/internal/leaderconn"
	"github.com/kiln-build/kiln/internal/opshttp"
	"github.com/kiln-build/kiln/internal/reconnect"
	"github.com/kiln-build/kiln/internal/tlsconfig"
	"github.com/kiln-build/kiln/worker/agent"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgbuild"
	"github.com/kiln-build/kiln/worker/shell"
)

// Config is the worker's config file.
type Config struct {
	// Coordinator is the coordinator's gRPC address, or several separated
	// by commas (a leader and its standbys): the worker uses the one that
	// leads.
	Coordinator string `yaml:"coordinator"`
	// Dev is the single-machine mode: plaintext to a loopback coordinator.
	Dev bool            `yaml:"dev"`
	TLS tlsconfig.Files `yaml:"tls"`
	// TokenFile holds this worker's bearer token (TLS mode).
	TokenFile string            `yaml:"token_file"`
	Name      string            `yaml:"name"`
	Labels    map[string]string `yaml:"labels"`
	Slots     int               `yaml:"slots"`
	WorkDir   string            `yaml:"work_dir"`
	// Executor runs command jobs: "shell" on the host, or "containerd" in
	// a buildroot named by the job's target label.
	Executor      string        `yaml:"executor"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// LogSpoolMax bounds a job's output waiting on disk to be sent (the
	// coordinator unreachable); 0: 256 MiB.
	LogSpoolMax int64 `yaml:"log_spool_max"`
	// MetricsListen serves /metrics and /healthz over HTTP; empty: none.
	MetricsListen string           `yaml:"metrics_listen"`
	Log           LogConfig        `yaml:"log"`
	Buildroot     buildroot.Config `yaml:"buildroot"`
	Build         pkgbuild.Config  `yaml:"build"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level string `yaml:"level"`
	JSON  bool   `yaml:"json"`
}

// Defaults returns the built-in configuration.
func Defaults() Config {
	h, _ := os.Hostname()
	return Config{Coordinator: "127.0.0.1:7420", Name: h, Slots: 1, WorkDir: "/var/lib/kiln/worker", Executor: "shell",
		ShutdownGrace: 30 * time.Second, Build: pkgbuild.DefaultConfig()}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("name is empty: give the worker a name (--name)")
	}
	if c.Slots < 1 || c.Slots > 1024 {
		return fmt.Errorf("slots %d: between 1 and 1024", c.Slots)
	}
	if c.WorkDir == "" {
		return errors.New("work_dir is empty (--work-dir)")
	}
	if len(leaderconn.Split(c.Coordinator)) == 0 {
		return fmt.Errorf("coordinator %q names no coordinator: give HOST:PORT, or several separated by commas", c.Coordinator)
	}
	if c.Dev {
		for _, a := range leaderconn.Split(c.Coordinator) {
			if err := tlsconfig.CheckLoopback(a); err != nil {
				return err
			}
		}
	} else if c.TLS.Empty() {
		return errors.New("no TLS configured: set tls.cert, tls.key and tls.ca, or use --dev with a loopback coordinator")
	}
	switch c.Executor {
	case "shell", "containerd":
	default:
		return fmt.Errorf("executor %q: use shell or containerd", c.Executor)
	}
	if c.usesBuildroot() {
		if err := c.Buildroot.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("buildroot: %w", err)
		}
		if err := c.Build.Validate(); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	return nil
}

// usesBuildroot reports whether the worker needs containerd.
func (c *Config) usesBuildroot() bool {
	return c.Executor == "containerd" || len(c.Buildroot.Targets) > 0
}

// Run runs the worker until ctx ends.
func Run(ctx context.Context, cfg Config, logger hclog.Logger) error {
	var token string
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("read token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	var creds credentials.TransportCredentials
	var checkRefusal func(context.Context) error
	var conn *leaderconn.Conn
	if cfg.Dev {
		creds = insecure.NewCredentials()
	} else {
		tc, err := tlsconfig.Client(cfg.TLS)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(tc)
		checkRefusal = func(ctx context.Context) error { return tlsconfig.Probe(ctx, conn.Current(), tc) }
	}
	conn, err := leaderconn.New(leaderconn.Split(cfg.Coordinator), grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(reconnect.ConnectParams()))
	if err != nil {
		return err
	}
	defer conn.Close()

	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	sh := shell.New()
	sh.GroupDir = filepath.Join(cfg.WorkDir, "shell-groups")
	killed, err := sh.KillLeftovers()
	if err != nil {
		return err
	}
	if len(killed) > 0 {
		logger.Warn("killed job processes a previous run left", "process_groups", fmt.Sprint(killed))
	}
	mux := &muxExecutor{commands: sh}
	reg := opshttp.NewRegistry()
	var refresh func(context.Context) (map[string]string, error)
	if cfg.usesBuildroot() {
		br, err := buildroot.New(ctx, cfg.Buildroot, logger.Named("buildroot"), buildroot.WithMetrics(reg))
		if err != nil {
			return fmt.Errorf("buildroot: %w", err)
		}
		defer br.Close()
		targets, err := br.Targets(ctx)
		if err != nil {
			return fmt.Errorf("list chroots: %w", err)
		}
		for _, t := range targets {
			logger.Info("chroot ready", "target", t.Name, "digest", t.Digest, "format", t.Format)
		}
		if len(targets) == 0 {
			logger.Warn("no chroots yet: make them with `worker chroot create TARGET`")
		}
		sealed := sealedLabels(cfg)
		labels = chrootLabels(cfg.Labels, targets, sealed)
		// A chroot made, refreshed or removed while the worker runs is
		// advertised within LabelsEvery.
		refresh = func(ctx context.Context) (map[string]string, error) {
			targets, err := br.Targets(ctx)
			if err != nil {
				return nil, err
			}
			return chrootLabels(cfg.Labels, targets, sealed), nil
		}
		if cfg.Executor == "containerd" {
			mux.commands = br
		}
		mux.builds = pkgbuild.New(cfg.Build, br, logger) // it names its logger "build"
	}
	metrics := agent.NewMetrics(reg)
	if cfg.MetricsListen != "" {
		stop, err := serveMetrics(cfg.MetricsListen, reg, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	a := agent.New(agent.Config{Name: cfg.Name, Labels: labels, Slots: cfg.Slots, WorkDir: cfg.WorkDir, Token: token,
		ShutdownGrace: cfg.ShutdownGrace, RefreshLabels: refresh, CheckRefusal: checkRefusal, Metrics: metrics, LogSpoolMax: cfg.LogSpoolMax}, conn, mux, logger.Named("agent"))
	return a.Run(ctx)
}

// serveMetrics serves /metrics and /healthz on addr until stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, logger hclog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (metrics_listen): %w", addr, err)
	}
	srv := &http.Server{Handler: opshttp.Mux(reg), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}

// chrootLabels returns the configured labels plus, for the worker's
// chroots, "chroot/<target>" = digest (the coordinator sees which chroot
// each target is built in) and, unless configured, "target" = the targets
// as alternatives (a|b).
func chrootLabels(configured map[string]string, targets []buildroot.TargetInfo, sealed map[string]string) map[string]string {
	labels := maps.Clone(configured)
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range sealed {
		if _, ok := labels[k]; !ok {
			labels[k] = v
		}
	}
	var names []string
	for _, t := range targets {
		if strings.Contains(t.Name, "@") {
			continue // a sealed release's chroot, not a target of its own
		}
		names = append(names, t.Name)
		labels["chroot/"+t.Name] = t.Digest
	}
	sort.Strings(names)
	if _, ok := labels["target"]; !ok && len(names) > 0 {
		labels["target"] = strings.Join(names, "|")
	}
	return labels
}

// sealedLabels says which sealed releases' builds the worker takes, with
// or without a chroot of their target: it makes their chroots from the
// release's base. sealed-target lists its configured targets and
// sealed-release the releases whose base build.repositories names.
func sealedLabels(cfg Config) map[string]string {
	var targets, releases []string
	for _, t := range cfg.Buildroot.Targets {
		targets = append(targets, t.Name)
	}
	for _, r := range cfg.Build.Repositories {
		if (r.BaseApt != "" || r.BaseBaseURL != "") && !slices.Contains(releases, r.Release) {
			releases = append(releases, r.Release)
		}
	}
	if len(targets) == 0 || len(releases) == 0 {
		return nil
	}
	sort.Strings(targets)
	sort.Strings(releases)
	return map[string]string{"sealed-target": strings.Join(targets, "|"), "sealed-release": strings.Join(releases, "|")}
}

// muxExecutor sends package builds to the builder and commands to the
// configured command executor.
type muxExecutor struct {
	commands executor.Executor
	builds   executor.Executor
}

func (m *muxExecutor) Run(ctx context.Context, j executor.Job, log io.Writer) (executor.Result, error) {
	if j.Build != nil {
		if m.builds == nil {
			return executor.Result{}, errors.New("package build on a worker without buildroots: configure buildroot targets")
		}
		return m.builds.Run(ctx, j, log)
	}
	return m.commands.Run(ctx, j, log)
}

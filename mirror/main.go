// Command mirror serves Kiln's published repositories to apt and dnf over
// HTTP. Repositories arrive by rsync from the publisher (pool first,
// indexes last); a mirror only reads them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/mirror/serve"
)

// Config is the mirror's config file.
type Config struct {
	Root   string `yaml:"root"`
	Listen string `yaml:"listen"`
	// MetricsListen serves /metrics and /healthz; empty disables it.
	MetricsListen string `yaml:"metrics_listen"`
	Log           struct {
		Level string `yaml:"level"`
		JSON  bool   `yaml:"json"`
	} `yaml:"log"`
}

// defaults is the built-in configuration.
func defaults() Config {
	return Config{Root: "/srv/kiln/mirror", Listen: "127.0.0.1:8080"}
}

var program = cmdline.Program{
	Name:    "mirror",
	Summary: "serve Kiln's published repositories over HTTP",
	Description: `Serves the signed repositories the publisher pushes here by rsync to apt and dnf over HTTP.

Settings come from built-in defaults, then the config file, then KILN_MIRROR_* environment variables, then flags.`,
	EnvPrefix:    "KILN_MIRROR_",
	Defaults:     func() any { c := defaults(); return &c },
	Unclassified: cmdline.ExitFailed,
	Vars:         map[string]string{"check_help": cmdline.CheckHelp},
}

// grammar is the mirror's command line.
type grammar struct {
	Serve serveCmd       `cmd:"" help:"Serve the repositories under the root directory over HTTP, and /metrics and /healthz on metrics_listen."`
	Man   cmdline.ManCmd `cmd:"" hidden:"" help:"Write the man page (roff) to stdout."`
}

type serveCmd struct {
	Config        string `help:"config file (YAML)" placeholder:"FILE" setting:""`
	Root          string `help:"directory holding the repositories" placeholder:"DIR" setting:"root"`
	Listen        string `help:"HTTP address to serve the repositories on" placeholder:"ADDR" setting:"listen"`
	MetricsListen string `help:"HTTP address for /metrics and /healthz; empty: none" placeholder:"ADDR" setting:"metrics_listen"`
	CheckConfig   bool   `name:"check-config" help:"${check_help}"`

	// loaded, when set, takes the configuration instead of serving it.
	loaded func(Config) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(program.Exit(err, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return program.Run(ctx, &grammar{}, args, stdout, stderr)
}

// Run loads the configuration and serves.
func (c *serveCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	cfg := defaults()
	if err := in.Load(c.Config, &cfg); err != nil {
		return err
	}
	if c.loaded != nil {
		return c.loaded(cfg)
	}
	if c.CheckConfig {
		if _, err := logging.New(logging.Options{Name: "mirror", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: io.Discard}); err != nil {
			return cmdline.UsageError(err)
		}
		return cmdline.ConfigChecked(in.Out, c.Config)
	}
	return serveMirror(ctx, cfg, in.Err)
}

func serveMirror(ctx context.Context, cfg Config, stderr io.Writer) error {
	if st, err := os.Stat(cfg.Root); err != nil || !st.IsDir() {
		return fmt.Errorf("root %q is not a directory: create it or pass --root", cfg.Root)
	}
	logger, err := logging.New(logging.Options{Name: "mirror", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return cmdline.UsageError(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	files, admin := serve.Instrumented(serve.New(cfg.Root, logger))
	servers := []*http.Server{{Handler: files, ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{ln}
	logger.Info("serving", "root", cfg.Root, "listen", ln.Addr().String())
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		servers = append(servers, &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, mln)
		logger.Info("serving /metrics and /healthz", "listen", mln.Addr().String())
	}
	// The composition root: every server started here is stopped here,
	// gracefully when ctx ends, and one failing stops the others.
	g, gctx := errgroup.WithContext(ctx)
	for i, srv := range servers {
		g.Go(func() error {
			if err := srv.Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
		return nil
	})
	return g.Wait()
}

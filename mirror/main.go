// Command mirror serves Kiln's published repositories to apt and dnf over
// HTTP. Repositories arrive by rsync from the publisher (pool first,
// indexes last); a mirror only reads them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/internal/config"
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

const help = `mirror: serves published repositories over HTTP.

  mirror serve [--config FILE] [--root DIR] [--listen ADDR] [--metrics-listen ADDR]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mirror:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, help)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	if args[0] != "serve" {
		return fmt.Errorf("unknown command %q\n%s", args[0], help)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", os.Getenv("KILN_MIRROR_CONFIG"), "config file (YAML; env KILN_MIRROR_CONFIG)")
	root := fs.String("root", "", "directory holding the repositories")
	listen := fs.String("listen", "", "HTTP address (default 127.0.0.1:8080)")
	metricsListen := fs.String("metrics-listen", "", "HTTP address for /metrics and /healthz (default: none)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg := Config{Root: "/srv/kiln/mirror", Listen: "127.0.0.1:8080"}
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return err
	}
	if *root != "" {
		cfg.Root = *root
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *metricsListen != "" {
		cfg.MetricsListen = *metricsListen
	}
	if st, err := os.Stat(cfg.Root); err != nil || !st.IsDir() {
		return fmt.Errorf("root %q is not a directory: create it or pass --root", cfg.Root)
	}
	logger, err := logging.New(logging.Options{Name: "mirror", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	files, admin := serve.Instrumented(serve.New(cfg.Root, logger))
	srv := &http.Server{Handler: files, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("serving", "root", cfg.Root, "listen", ln.Addr().String())
	if cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (metrics_listen): %w", cfg.MetricsListen, err)
		}
		msrv := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("serving /metrics and /healthz", "listen", mln.Addr().String())
		go func() { _ = msrv.Serve(mln) }()
		defer msrv.Close()
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Command coordinator runs Kiln's coordinator (`coordinator serve`) and is
// the command line client that Jenkins pipelines and people use.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/coordinator/cli"
	"github.com/kiln-build/kiln/coordinator/serve"
	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/internal/termsafe"
)

const help = `coordinator: Kiln's build coordinator and its command line client.

Server:
  coordinator serve [--config FILE] [--dev] [--state-dir DIR] [--listen ADDR] [--http-listen ADDR]

Client (talks to --server, default 127.0.0.1:7420 or $KILN_SERVER):
  coordinator run [--labels k=v,...] [--artifacts GLOB] [--wait] -- CMD ARGS...
  coordinator build --release R --target T --package P --source REPO@REV [--source REPO@REV] [--wait] [--force] [--publish]
  coordinator rebuild [--verify] [--wait] JOB_ID
  coordinator jobs list|show ID|logs ID [--follow]|cancel ID   [--json]
  coordinator artifacts get JOB_ID --dest DIR                   [--json]
  coordinator workers list|drain NAME|undrain NAME              [--json]
  coordinator events list [--limit N] [--all]                   [--json]
  coordinator release seal R|unseal R|show R                    [--json]
  coordinator release verify R [--package P]... [--wait] [--diffoscope-dir DIR] [--json]
  coordinator certs --dir DIR --name NAME --role ROLE [--host HOST]...

With --wait, the exit code is 0 when the job succeeded, 1 when it failed,
3 when the infrastructure could not finish it, 2 on bad usage.
Run any command with --help for its flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	errw := termsafe.ForTerminal(os.Stderr)
	code := exitCode(err, errw)
	termsafe.Flush(errw)
	os.Exit(code)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *cli.ExitError
	if errors.As(err, &ee) {
		if errors.Is(ee.Err, flag.ErrHelp) {
			return ee.Code
		}
		fmt.Fprintln(stderr, "coordinator:", ee.Err)
		return ee.Code
	}
	fmt.Fprintln(stderr, "coordinator:", err)
	return cli.ExitInfra
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return &cli.ExitError{Code: cli.ExitUsage, Err: errors.New("no command given")}
	}
	// What the client prints comes from jobs (logs, reasons, names): on a
	// terminal, only colours of its escape sequences pass.
	o := cli.IO{Out: termsafe.ForTerminal(stdout), Err: termsafe.ForTerminal(stderr)}
	defer termsafe.Flush(o.Out)
	defer termsafe.Flush(o.Err)
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, help)
		return nil
	case "serve":
		return runServe(ctx, rest, stderr)
	case "run":
		return cli.Run(ctx, rest, o)
	case "build":
		return cli.Build(ctx, rest, o)
	case "rebuild":
		return cli.Rebuild(ctx, rest, o)
	case "jobs":
		return cli.Jobs(ctx, rest, o)
	case "artifacts":
		return cli.Artifacts(ctx, rest, o)
	case "workers":
		return cli.Workers(ctx, rest, o)
	case "events":
		return cli.Events(ctx, rest, o)
	case "certs":
		return cli.Certs(ctx, rest, o)
	case "release":
		return cli.Release(ctx, rest, o)
	}
	fmt.Fprint(stderr, help)
	return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("unknown command %q", cmd)}
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: coordinator serve [--config FILE] [--dev] [--state-dir DIR] [--listen ADDR]\n\nSettings come from built-in defaults, then the config file, then KILN_COORDINATOR_* environment variables, then flags.\n\nflags:\n")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", os.Getenv("KILN_COORDINATOR_CONFIG"), "config file (YAML; env KILN_COORDINATOR_CONFIG)")
	dev := fs.Bool("dev", false, "single-machine mode: plaintext gRPC on loopback only, no certificates")
	stateDir := fs.String("state-dir", "", "state directory (SQLite database, logs, artifacts)")
	listen := fs.String("listen", "", "gRPC address (default 127.0.0.1:7420)")
	httpListen := fs.String("http-listen", "", "HTTP address for /metrics, /healthz and /logs/ID (default 127.0.0.1:7421)")
	logLevel := fs.String("log-level", "", "trace, debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "log JSON lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return &cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	cfg := serve.Defaults()
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return &cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	if v, ok := config.Env("KILN_COORDINATOR_STATE_DIR"); ok {
		cfg.StateDir = v
	}
	if v, ok := config.Env("KILN_COORDINATOR_LISTEN"); ok {
		cfg.Listen = v
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["dev"] {
		cfg.Dev = *dev
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if set["http-listen"] {
		cfg.HTTPListen = *httpListen
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if set["log-json"] {
		cfg.Log.JSON = *logJSON
	}
	if err := cfg.Validate(); err != nil {
		return &cli.ExitError{Code: cli.ExitUsage, Err: fmt.Errorf("config: %w", err)}
	}
	logger, err := logging.New(logging.Options{Name: "coordinator", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return &cli.ExitError{Code: cli.ExitUsage, Err: err}
	}
	return serve.Run(ctx, cfg, logger)
}

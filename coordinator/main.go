// Command coordinator runs Kiln's coordinator (`coordinator serve`) and is
// the command line client that Jenkins pipelines and people use.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/coordinator/cli"
	"github.com/kiln-build/kiln/coordinator/serve"
	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/internal/termsafe"
)

var program = cmdline.Program{
	Name:    "coordinator",
	Summary: "Kiln's build coordinator and its command line client",
	Description: `coordinator serve runs the coordinator: the job queue and scheduler, its state, the gRPC API for clients and workers, the Gerrit intake, /metrics, /healthz, /logs/ID and the web pages. Its settings come from built-in defaults, then the config file, then KILN_COORDINATOR_* environment variables, then flags.

The other commands are the client that Jenkins pipelines and people run. They talk to --server (KILN_SERVER, default 127.0.0.1:7420), with a client certificate (--tls-cert, --tls-key, --tls-ca or KILN_TLS_CERT, KILN_TLS_KEY, KILN_TLS_CA) or in plaintext to a loopback address.

Every command exits 0 when done (with --wait: the job succeeded), 1 when the job failed (its own fault), 2 on bad usage, 3 when the infrastructure could not finish it (worth a retry).`,
	EnvPrefix:    "KILN_COORDINATOR_",
	Defaults:     func() any { c := serve.Defaults(); return &c },
	Unclassified: cmdline.ExitInfra,
	Vars:         map[string]string{"check_help": cmdline.CheckHelp},
}

// grammar is the coordinator's command line.
type grammar struct {
	Serve        serveCmd `cmd:"" help:"Run the coordinator."`
	cli.Commands `embed:""`
	Man          cmdline.ManCmd `cmd:"" hidden:"" help:"Write the man page (roff) to stdout."`
}

type serveCmd struct {
	Config      string `help:"config file (YAML)" placeholder:"FILE" setting:""`
	Dev         bool   `help:"single-machine mode: plaintext gRPC on loopback only, no certificates" setting:"dev"`
	StateDir    string `help:"state directory (SQLite database, logs, artifacts); coordinators sharing a PostgreSQL database must share it too (a shared file system)" placeholder:"DIR" setting:"state_dir"`
	Database    string `name:"database-url" help:"PostgreSQL database for the coordinator's state (postgres://USER@HOST/DB; the password from the URL, PGPASSWORD or ~/.pgpass) instead of SQLite in the state directory; several coordinators on one database make one leader and standbys, and a coordinator that stops leading exits (status 3) for its supervisor to start it again as a standby" placeholder:"URL" setting:"database_url"`
	Listen      string `help:"gRPC address" placeholder:"ADDR" setting:"listen"`
	Advertise   string `help:"gRPC address workers and clients reach this coordinator at, named by standbys while it leads (default: --listen)" placeholder:"ADDR" setting:"advertise"`
	HTTPListen  string `name:"http-listen" help:"HTTP address for /metrics, /healthz, /logs/ID and the web pages" placeholder:"ADDR" setting:"http_listen"`
	LogLevel    string `help:"trace, debug, info, warn or error" placeholder:"LEVEL" setting:"log.level"`
	LogJSON     bool   `name:"log-json" help:"log JSON lines" setting:"log.json"`
	CheckConfig bool   `name:"check-config" help:"${check_help}"`

	// loaded, when set, takes the configuration instead of serving it.
	loaded func(serve.Config) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	errw := termsafe.ForTerminal(os.Stderr)
	code := program.Exit(err, errw)
	termsafe.Flush(errw)
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// What the client prints comes from jobs (logs, reasons, names): on a
	// terminal, only colours of its escape sequences pass.
	o := cli.IO{Out: termsafe.ForTerminal(stdout), Err: termsafe.ForTerminal(stderr)}
	defer termsafe.Flush(o.Out)
	defer termsafe.Flush(o.Err)
	return program.Run(ctx, &grammar{}, args, stdout, stderr, o)
}

// Run loads the configuration and runs the coordinator.
func (c *serveCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	cfg := serve.Defaults()
	if err := in.Load(c.Config, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return cmdline.Usage("config: %w", err)
	}
	if c.loaded != nil {
		return c.loaded(cfg)
	}
	logger, err := logging.New(logging.Options{Name: "coordinator", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: in.Err})
	if err != nil {
		return cmdline.UsageError(err)
	}
	if c.CheckConfig {
		return cmdline.ConfigChecked(in.Out, c.Config)
	}
	return serve.Run(ctx, cfg, logger)
}

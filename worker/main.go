// Command worker runs Kiln jobs for a coordinator (`worker run`) and
// manages the worker's buildroots (`worker chroot`).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/internal/label"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/worker/chrootcmd"
	"github.com/kiln-build/kiln/worker/runcmd"
)

var program = cmdline.Program{
	Name:    "worker",
	Summary: "run Kiln jobs for a coordinator and keep the buildroots' chroots",
	Description: `Runs Kiln jobs for a coordinator: pulls them, runs them on the host or in containerd buildroots, streams their logs and uploads their artifacts. Makes and refreshes the buildroots' read-only chroots.

Settings come from built-in defaults, then the config file, then KILN_WORKER_* environment variables, then flags.`,
	EnvPrefix: "KILN_WORKER_",
	Defaults: func() any {
		c := runcmd.Defaults()
		c.Name = "" // the host name: not part of the help text
		return &c
	},
	Unclassified: cmdline.ExitFailed,
	Vars:         map[string]string{"check_help": cmdline.CheckHelp},
}

// grammar is the worker's command line.
type grammar struct {
	Run    runCmd         `cmd:"" help:"Pull jobs from the coordinator and run them until stopped."`
	Chroot chrootCmd      `cmd:"" help:"Make, refresh, list and remove the chroots builds run in (targets are configured in buildroot.targets)."`
	Man    cmdline.ManCmd `cmd:"" hidden:"" help:"Write the man page (roff) to stdout."`
}

// labels is --labels k=v,k=v.
type labels map[string]string

// Decode parses k=v,k=v as job labels.
func (l *labels) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("labels", &s); err != nil {
		return err
	}
	m, err := label.Parse(s)
	if err != nil {
		return err
	}
	*l = m
	return nil
}

type runCmd struct {
	Config        string `help:"config file (YAML)" placeholder:"FILE" setting:""`
	Dev           bool   `help:"single-machine mode: plaintext to a loopback coordinator" setting:"dev"`
	Coordinator   string `help:"coordinator gRPC address; several separated by commas (a leader and its standbys): the one that leads is used" placeholder:"ADDR" setting:"coordinator"`
	Name          string `help:"worker name (default: the host name)" setting:"name"`
	Labels        labels `help:"labels k=v,k=v (added to the config's)" placeholder:"K=V,..." setting:"labels"`
	Slots         int    `help:"jobs run at once" placeholder:"N" setting:"slots"`
	WorkDir       string `help:"scratch directory for jobs" placeholder:"DIR" setting:"work_dir"`
	Executor      string `help:"command jobs run on the host (shell) or in a buildroot (containerd)" placeholder:"shell|containerd" setting:"executor"`
	LogLevel      string `help:"trace, debug, info, warn or error" placeholder:"LEVEL" setting:"log.level"`
	MetricsListen string `help:"address to serve /metrics and /healthz on; empty: none" placeholder:"ADDR" setting:"metrics_listen"`
	CheckConfig   bool   `name:"check-config" help:"${check_help}"`

	// loaded, when set, takes the configuration instead of running.
	loaded func(runcmd.Config) error
}

type chrootCmd struct {
	Config  string       `help:"config file (YAML)" placeholder:"FILE" setting:""`
	Create  chrootTarget `cmd:"" help:"Make TARGET's chroot (mmdebstrap or dnf, as configured) and import it into containerd as a read-only snapshot; --all: every configured target that has none yet."`
	Refresh chrootTarget `cmd:"" help:"Make a new chroot for TARGET; builds on the old one finish undisturbed and the old one is removed once unused; --all: every configured target (e.g. daily from cron)."`
	List    chrootList   `cmd:"" help:"List the configured targets and their chroots."`
	Remove  chrootRemove `cmd:"" help:"Remove TARGET's chroots (each once no build uses it)."`
}

type chrootTarget struct {
	Target string `arg:"" optional:"" help:"a target of buildroot.targets"`
	All    bool   `help:"every configured target"`
}

type chrootList struct {
	JSON bool `name:"json" help:"print the list as JSON"`
}

type chrootRemove struct {
	Target string `arg:"" help:"the target whose chroots to remove"`
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

// Run runs the worker.
func (c *runCmd) Run(ctx context.Context, in *cmdline.Invocation) error {
	cfg := runcmd.Defaults()
	if err := in.Load(c.Config, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return cmdline.Usage("config: %w", err)
	}
	if c.loaded != nil {
		return c.loaded(cfg)
	}
	logger, err := logging.New(logging.Options{Name: "worker", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: in.Err})
	if err != nil {
		return cmdline.UsageError(err)
	}
	if c.CheckConfig {
		return cmdline.ConfigChecked(in.Out, c.Config)
	}
	logger = logger.With("worker", cfg.Name)
	return runcmd.Run(ctx, cfg, logger)
}

func (c *chrootCmd) run(ctx context.Context, in *cmdline.Invocation, req chrootcmd.Request) error {
	cfg := runcmd.Defaults()
	if err := in.Load(c.Config, &cfg); err != nil {
		return err
	}
	logger, err := logging.New(logging.Options{Name: "worker", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: in.Err})
	if err != nil {
		return cmdline.UsageError(err)
	}
	return chrootcmd.Run(ctx, cfg.Buildroot, logger, req, in.Out, in.Err)
}

// Run is `worker chroot create|refresh|list|remove`.
func (c *chrootCmd) Run(ctx context.Context, in *cmdline.Invocation, k *kong.Context) error {
	req := chrootcmd.Request{}
	switch cmd := k.Selected().Name; cmd {
	case "create", "refresh":
		t := c.Create
		if cmd == "refresh" {
			t = c.Refresh
		}
		req = chrootcmd.Request{Command: cmd, Target: t.Target, All: t.All}
	case "list":
		req = chrootcmd.Request{Command: cmd, JSON: c.List.JSON}
	case "remove":
		req = chrootcmd.Request{Command: cmd, Target: c.Remove.Target}
	default:
		return cmdline.Usage("worker chroot: give a command: create, refresh, list or remove")
	}
	return c.run(ctx, in, req)
}

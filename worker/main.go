// Command worker runs Kiln jobs for a coordinator (`worker run`) and
// manages the worker's buildroots (`worker chroot`).
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

	"github.com/kiln-build/kiln/internal/config"
	"github.com/kiln-build/kiln/internal/label"
	"github.com/kiln-build/kiln/internal/logging"
	"github.com/kiln-build/kiln/worker/chrootcmd"
	"github.com/kiln-build/kiln/worker/runcmd"
)

const help = `worker: runs Kiln jobs for a coordinator.

  worker run [--config FILE] [--dev] [--coordinator ADDR] [--name NAME] [--labels k=v,...] [--slots N] [--work-dir DIR] [--executor shell|containerd]
  worker chroot create|refresh|list|remove [TARGET] [--config FILE]

Settings come from built-in defaults, then the config file, then
KILN_WORKER_* environment variables, then flags.
Run any command with --help for its flags.
`

// usageError is bad usage: exit code 2.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, help)
		return nil
	case "run":
		return runWorker(ctx, args[1:], stderr)
	case "chroot":
		return runChroot(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, help)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

func loadConfig(path string) (runcmd.Config, error) {
	cfg := runcmd.Defaults()
	if err := config.Load(path, &cfg); err != nil {
		return cfg, usageError{err}
	}
	for env, dst := range map[string]*string{
		"KILN_WORKER_COORDINATOR": &cfg.Coordinator, "KILN_WORKER_NAME": &cfg.Name, "KILN_WORKER_WORK_DIR": &cfg.WorkDir,
	} {
		if v, ok := config.Env(env); ok {
			*dst = v
		}
	}
	return cfg, nil
}

func runWorker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", os.Getenv("KILN_WORKER_CONFIG"), "config file (YAML; env KILN_WORKER_CONFIG)")
	dev := fs.Bool("dev", false, "single-machine mode: plaintext to a loopback coordinator")
	coord := fs.String("coordinator", "", "coordinator address (default 127.0.0.1:7420)")
	name := fs.String("name", "", "worker name (default: host name)")
	labels := fs.String("labels", "", "labels k=v,k=v (added to the config's)")
	slots := fs.Int("slots", 0, "jobs run at once (default 1)")
	workDir := fs.String("work-dir", "", "scratch directory for jobs")
	execName := fs.String("executor", "", "command jobs run on the host (shell) or in a buildroot (containerd)")
	logLevel := fs.String("log-level", "", "trace, debug, info, warn or error")
	metricsListen := fs.String("metrics-listen", "", "address to serve /metrics and /healthz on (default: none)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: worker run [flags]\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["dev"] {
		cfg.Dev = *dev
	}
	if *coord != "" {
		cfg.Coordinator = *coord
	}
	if *metricsListen != "" {
		cfg.MetricsListen = *metricsListen
	}
	if *name != "" {
		cfg.Name = *name
	}
	if *labels != "" {
		l, err := label.Parse(*labels)
		if err != nil {
			return usageError{fmt.Errorf("--labels: %w", err)}
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for k, v := range l {
			cfg.Labels[k] = v
		}
	}
	if *slots != 0 {
		cfg.Slots = *slots
	}
	if *workDir != "" {
		cfg.WorkDir = *workDir
	}
	if *execName != "" {
		cfg.Executor = *execName
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if err := cfg.Validate(); err != nil {
		return usageError{fmt.Errorf("config: %w", err)}
	}
	logger, err := logging.New(logging.Options{Name: "worker", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return usageError{err}
	}
	logger = logger.With("worker", cfg.Name)
	return runcmd.Run(ctx, cfg, logger)
}

func runChroot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// --config may appear anywhere; the rest is the chroot command's.
	cfgPath := os.Getenv("KILN_WORKER_CONFIG")
	var rest []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--config" || args[i] == "-config":
			if i+1 >= len(args) {
				return usageError{errors.New("--config needs a file")}
			}
			cfgPath = args[i+1]
			i++
		case len(args[i]) > 9 && args[i][:9] == "--config=":
			cfgPath = args[i][9:]
		default:
			rest = append(rest, args[i])
		}
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	logger, err := logging.New(logging.Options{Name: "worker", Level: cfg.Log.Level, JSON: cfg.Log.JSON, Output: stderr})
	if err != nil {
		return usageError{err}
	}
	return chrootcmd.Run(ctx, cfg.Buildroot, logger, rest, stdout, stderr)
}

// Command publisher keeps signed Debian and RPM repositories with the
// operator's own OpenPGP key: include, remove, publish, snapshots, and the
// gRPC service for the coordinator. See "publisher --help".
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-build/kiln/publisher/cli"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(cli.Program.Exit(err, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, args, stdout, stderr)
}

package cli

import (
	"context"
	"io"

	"github.com/kiln-build/kiln/internal/cmdline"
)

// Commands are the client's commands, declared once for the parser, the
// help and the man page; the coordinator's grammar embeds them beside
// serve.
type Commands struct {
	Run       runCmd       `cmd:"" help:"Submit a command job: it runs on a worker with the labels, and with --wait its log streams here and the exit code says how it ended."`
	Build     buildCmd     `cmd:"" help:"Submit a package build of one source package for one target of a release."`
	Rebuild   rebuildCmd   `cmd:"" help:"Rebuild a finished package build; with --verify from its record, comparing the packages byte for byte."`
	Jobs      jobsCmd      `cmd:"" help:"List, show, follow and cancel jobs."`
	Artifacts artifactsCmd `cmd:"" help:"Fetch a job's artifacts."`
	Workers   workersCmd   `cmd:"" help:"List, drain and undrain workers."`
	Events    eventsCmd    `cmd:"" help:"List the Gerrit events and what was done with each."`
	Release   releaseCmd   `cmd:"" help:"Seal, unseal, show and verify releases."`
	Certs     certsCmd     `cmd:"" help:"Make a CA (once) and a certificate with a role for a small installation."`
}

// Execute runs the client's command line alone, as the coordinator
// binary does (its tests use it).
func Execute(ctx context.Context, args []string, o IO) error {
	p := cmdline.Program{Name: "coordinator", EnvPrefix: "KILN_", Unclassified: cmdline.ExitInfra}
	return p.Run(ctx, &Commands{}, args, o.Out, o.Err, o)
}

// IO is where a command writes.
type IO struct {
	Out, Err io.Writer
}

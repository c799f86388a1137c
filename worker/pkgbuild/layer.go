package pkgbuild

import (
	"context"
	"fmt"
	"io"

	"github.com/kiln-build/kiln/worker/executor"
)

// The resolving step writes what phase 1 would install into resolvedFile,
// in stateDir.
const (
	resolvedFile = "resolved"
	resolvedPath = executor.SandboxWorkDir + "/" + stateDir + "/" + resolvedFile
)

// layeredSandbox is a sandbox with a build-dependency layer cache (see
// buildroot.Sandbox.ExecWithLayer).
type layeredSandbox interface {
	Layered() bool
	ExecResolve(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error)
	ExecWithLayer(ctx context.Context, resolution string, step executor.Step, log io.Writer) (executor.StepResult, error)
}

type stepRunner func(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error)

// withLayer returns how phase 1's step runs. On a sandbox with a
// build-dependency layer cache it first runs resolve, which writes what
// phase 1 would install to resolvedPath, and phase 1 then starts from the
// layer of that resolution when the cache holds it. Resolving installs
// nothing and is not part of the build record: the record is the same
// with and without the cache. Without a cache, or when resolving fails,
// phase 1 runs as it is (and reports what went wrong itself).
func withLayer(ctx context.Context, sb executor.Sandbox, resolve *executor.Step, workDir string, log io.Writer, phase func(string, ...any)) stepRunner {
	ls, ok := sb.(layeredSandbox)
	if !ok || resolve == nil || !ls.Layered() {
		return sb.Exec
	}
	phase("phase 1: resolve build dependencies for the layer cache (%s)", stepMode(*resolve))
	r, err := ls.ExecResolve(ctx, *resolve, log)
	if err != nil || r.Failed() {
		fmt.Fprintf(log, "kiln: build dependencies not resolved ahead (%v, exit %d %s); installing them without the layer cache\n", err, r.ExitCode, r.Reason)
		return sb.Exec
	}
	data, err := readState(workDir, resolvedFile)
	if err != nil {
		fmt.Fprintf(log, "kiln: build dependencies not resolved ahead (%v); installing them without the layer cache\n", err)
		return sb.Exec
	}
	resolution := aptResolution(string(data))
	if resolution == "" {
		return sb.Exec
	}
	return func(ctx context.Context, step executor.Step, log io.Writer) (executor.StepResult, error) {
		return ls.ExecWithLayer(ctx, resolution, step, log)
	}
}

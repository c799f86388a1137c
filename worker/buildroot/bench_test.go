package buildroot_test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// BenchmarkSandboxStart measures a build container's start overhead: from
// preparing the sandbox to the exit of `true` (teardown excluded). The full
// comparison with cp -a and mmdebstrap is bench/buildroot/run.sh.
func BenchmarkSandboxStart(b *testing.B) {
	br, target := buildroottest.New(b)
	work := b.TempDir()
	ctx := context.Background()
	var starts []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		sb, err := br.OpenSandbox(ctx, target, work)
		if err != nil {
			b.Fatal(err)
		}
		res, err := sb.Exec(ctx, executor.Step{Argv: []string{"true"}}, io.Discard)
		if err != nil || res.Failed() {
			b.Fatalf("true: %+v, %v", res, err)
		}
		starts = append(starts, sb.LastExit().Sub(t0))
		if err := sb.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(starts)
	b.ReportMetric(float64(starts[len(starts)/2].Microseconds())/1000, "ms-median-start")
	b.ReportMetric(float64(starts[(len(starts)*95)/100].Microseconds())/1000, "ms-p95-start")
}

package buildroot_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// zlibBuildDeps are the build dependencies of Debian bookworm's zlib on
// amd64 (debhelper, gcc-multilib, dpkg-dev), what `apt-get build-dep` of
// its .dsc installs.
var zlibBuildDeps = []string{"debhelper", "gcc-multilib", "dpkg-dev"}

// BenchmarkDependencyPhaseCache measures phase 1 of zlib through the
// package source proxy, with the package cache emptied first (cold) and
// right after, with what the cold run stored (warm), side by side in each
// iteration. Phase 1 is timed in three steps: apt-get update (never
// cached), downloading the build dependencies (what the cache serves) and
// installing them from apt's archive:
//
//	go test -run '^$' -bench DependencyPhaseCache -benchtime 3x ./worker/buildroot/
func BenchmarkDependencyPhaseCache(b *testing.B) {
	cfg := buildroottest.Config(b)
	br, target := buildroottest.NewWith(b, cfg, buildroottest.DebTarget)
	ctx := context.Background()
	apt := func(args ...string) executor.Step {
		return executor.Step{Argv: append([]string{"apt-get", "-o", "APT::Color=0"}, args...), Root: true, Network: true}
	}
	install := append([]string{"install", "-y", "--no-install-recommends"}, zlibBuildDeps...)
	steps := []executor.Step{apt("update"), apt(append(install, "--download-only")...), apt(install...)}
	// phase1 returns the time of each step and how many package files
	// were hits, of how many.
	phase1 := func() (took [3]time.Duration, hits, files int) {
		sb, err := br.OpenSandbox(ctx, target, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer sb.Close(ctx)
		for i, step := range steps {
			var log bytes.Buffer
			t0 := time.Now()
			res, err := sb.Exec(ctx, step, &log)
			took[i] = time.Since(t0)
			if err != nil || res.Failed() {
				b.Fatalf("%q: %+v, %v\n%s", step.Argv, res, err, log.String())
			}
			for _, f := range res.Packages {
				files++
				if f.CacheHit {
					hits++
				}
			}
			if i == 1 {
				for _, l := range strings.Split(log.String(), "\n") {
					if strings.HasPrefix(l, "Fetched ") || strings.HasPrefix(l, "kiln: package cache: ") {
						b.Log(l)
					}
				}
			}
		}
		return took, hits, files
	}
	var cold, warm [][3]time.Duration
	b.ResetTimer()
	for b.Loop() {
		// Emptied on disk: every lookup misses and fetches again.
		if err := os.RemoveAll(filepath.Join(cfg.PackageCache.Dir, "files")); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(cfg.PackageCache.Dir, "files"), 0o755); err != nil {
			b.Fatal(err)
		}
		took, hits, files := phase1()
		if hits != 0 || files == 0 {
			b.Fatalf("cold run: %d hits of %d files", hits, files)
		}
		cold = append(cold, took)
		b.Logf("cold: update %s, download %s, install %s (%d files from the mirror)", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond), files)
		took, hits, files = phase1()
		if hits != files {
			b.Fatalf("warm run: %d hits of %d files", hits, files)
		}
		warm = append(warm, took)
		b.Logf("warm: update %s, download %s, install %s (%d files from the cache)", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond), files)
	}
	med := func(runs [][3]time.Duration, pick func([3]time.Duration) time.Duration) float64 {
		var s []time.Duration
		for _, r := range runs {
			s = append(s, pick(r))
		}
		slices.Sort(s)
		return s[len(s)/2].Seconds()
	}
	total := func(t [3]time.Duration) time.Duration { return t[0] + t[1] + t[2] }
	download := func(t [3]time.Duration) time.Duration { return t[1] }
	b.ReportMetric(med(cold, total), "s-cold-phase1")
	b.ReportMetric(med(warm, total), "s-warm-phase1")
	b.ReportMetric(med(cold, total)/med(warm, total), "cold/warm-phase1")
	b.ReportMetric(med(cold, download), "s-cold-download")
	b.ReportMetric(med(warm, download), "s-warm-download")
	b.ReportMetric(med(cold, download)/med(warm, download), "cold/warm-download")
}

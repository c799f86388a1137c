package buildroot_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
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

// zlibBuildDeps are the build dependencies of Debian bookworm's zlib on
// amd64 (debhelper, gcc-multilib, dpkg-dev), what `apt-get build-dep` of
// its .dsc installs.
var zlibBuildDeps = []string{"debhelper", "gcc-multilib", "dpkg-dev"}

// BenchmarkDependencyPhaseCache measures phase 1 of zlib (apt-get update,
// then its build dependencies installed) through the package source proxy,
// with the package cache emptied first (cold) and right after, with what
// the cold run stored (warm), side by side in each iteration:
//
//	go test -run '^$' -bench DependencyPhaseCache -benchtime 3x ./worker/buildroot/
func BenchmarkDependencyPhaseCache(b *testing.B) {
	cfg := buildroottest.Config(b)
	br, target := buildroottest.NewWith(b, cfg, buildroottest.DebTarget)
	ctx := context.Background()
	update := executor.Step{Argv: []string{"apt-get", "update", "-o", "APT::Color=0"}, Root: true, Network: true}
	install := executor.Step{Argv: append([]string{"apt-get", "install", "-y", "--no-install-recommends", "-o", "APT::Color=0"}, zlibBuildDeps...),
		Root: true, Network: true}
	// phase1 returns the time of apt-get update, of the installation, and
	// the package files the installation got (hits, files).
	phase1 := func() (upd, inst time.Duration, hits, files int) {
		sb, err := br.OpenSandbox(ctx, target, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer sb.Close(ctx)
		for _, s := range []struct {
			step executor.Step
			took *time.Duration
		}{{update, &upd}, {install, &inst}} {
			var log bytes.Buffer
			t0 := time.Now()
			res, err := sb.Exec(ctx, s.step, &log)
			*s.took = time.Since(t0)
			if err != nil || res.Failed() {
				b.Fatalf("%q: %+v, %v\n%s", s.step.Argv, res, err, log.String())
			}
			for _, f := range res.Packages {
				files++
				if f.CacheHit {
					hits++
				}
			}
		}
		return upd, inst, hits, files
	}
	var cold, warm, coldInst, warmInst []time.Duration
	b.ResetTimer()
	for b.Loop() {
		// Emptied on disk: every lookup misses and fetches again.
		if err := os.RemoveAll(filepath.Join(cfg.PackageCache.Dir, "files")); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(cfg.PackageCache.Dir, "files"), 0o755); err != nil {
			b.Fatal(err)
		}
		u, i, hits, files := phase1()
		if hits != 0 || files == 0 {
			b.Fatalf("cold run: %d hits of %d files", hits, files)
		}
		cold, coldInst = append(cold, u+i), append(coldInst, i)
		b.Logf("cold: update %s, install %s (%d files from the mirror)", u.Round(time.Millisecond), i.Round(time.Millisecond), files)
		u, i, hits, files = phase1()
		if hits != files {
			b.Fatalf("warm run: %d hits of %d files", hits, files)
		}
		warm, warmInst = append(warm, u+i), append(warmInst, i)
		b.Logf("warm: update %s, install %s (%d files from the cache)", u.Round(time.Millisecond), i.Round(time.Millisecond), files)
	}
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2].Seconds()
	}
	b.ReportMetric(med(cold), "s-cold-phase1")
	b.ReportMetric(med(warm), "s-warm-phase1")
	b.ReportMetric(med(cold)/med(warm), "cold/warm")
	b.ReportMetric(med(coldInst), "s-cold-install")
	b.ReportMetric(med(warmInst), "s-warm-install")
	b.ReportMetric(med(coldInst)/med(warmInst), "cold/warm-install")
}

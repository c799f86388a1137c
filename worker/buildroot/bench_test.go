package buildroot_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/buildroot"
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

// BenchmarkDependencyPhaseCache measures phase 1 of zlib as a package
// build runs it on a worker with a package cache and a build-dependency
// layer cache: a step that resolves the build dependencies (apt-get
// update, then apt's plan with the URIs and sha256 of the package files)
// and the step that
// installs them (apt-get update and install), through the package source
// proxy. Each iteration runs it three times, side by side: cold (both
// caches emptied), with only the package cache warm (the layer cache
// emptied: package files and by-hash indexes come from the cache, apt and
// dpkg still do their work), and warm (both caches as the runs before
// left them: apt's lists are restored and checked, the layer unpacked):
//
//	go test -run '^$' -bench DependencyPhaseCache -benchtime 2x ./worker/buildroot/
func BenchmarkDependencyPhaseCache(b *testing.B) {
	cfg := buildroottest.Config(b)
	cfg.LayerCache = buildroot.LayerCacheConfig{Dir: filepath.Join(b.TempDir(), "layers"), MaxSize: "8G"}
	br, target := buildroottest.NewWith(b, cfg, buildroottest.DebTarget)
	ctx := context.Background()
	deps := strings.Join(zlibBuildDeps, " ")
	opts := "-y --no-install-recommends -o APT::Color=0 -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-unsafe-io"
	update := "apt-get update -o APT::Color=0 -o Acquire::Languages=none"
	// The resolving step says how long apt-get update took in it.
	resolve := executor.Step{Argv: []string{"sh", "-ec", "t0=$(date +%s%N)\n" + update + " >/dev/null\n" +
		"echo \"kiln-bench: apt-get update $(( ($(date +%s%N) - t0) / 1000000 )) ms\"\n" +
		"apt-get install --print-uris -q -o Acquire::ForceHash=SHA256 " + opts + " " + deps}, Root: true, Network: true}
	// As the package builder's phase 1: apt only when something is
	// missing (dpkg-checkbuilddeps there).
	install := executor.Step{Argv: []string{"sh", "-ec", "if dpkg -s " + deps + " >/dev/null 2>&1; then echo 'kiln: build dependencies already satisfied'; exit 0; fi\n" +
		update + "\napt-get install " + opts + " " + deps}, Root: true, Network: true}
	// phase1 returns the time of the two steps, how many package files
	// were cache hits, of how many, and whether the layer was used.
	phase1 := func(what string) (took [2]time.Duration, hits, files int, layer bool) {
		sb, err := br.OpenSandbox(ctx, target, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer sb.Close(ctx)
		var out bytes.Buffer
		t0 := time.Now()
		res, err := sb.ExecResolve(ctx, resolve, &out)
		took[0] = time.Since(t0)
		if err != nil || res.Failed() {
			b.Fatalf("%s: resolve: %+v, %v\n%s", what, res, err, out.String())
		}
		var plan []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "'") || strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "The following ") {
				plan = append(plan, strings.TrimRight(l, " "))
			}
		}
		slices.Sort(plan)
		var log bytes.Buffer
		t0 = time.Now()
		res, err = sb.ExecWithLayer(ctx, strings.Join(plan, "\n"), install, &log)
		took[1] = time.Since(t0)
		if err != nil || res.Failed() {
			b.Fatalf("%s: install: %+v, %v\n%s", what, res, err, log.String())
		}
		for _, f := range res.Packages {
			files++
			if f.CacheHit {
				hits++
			}
		}
		for _, l := range strings.Split(out.String()+log.String(), "\n") {
			if strings.HasPrefix(l, "Fetched ") || strings.HasPrefix(l, "kiln: package cache: ") || strings.HasPrefix(l, "kiln: build-dependency layer") || strings.HasPrefix(l, "kiln: apt package lists") ||
				strings.HasPrefix(l, "kiln-bench: ") || strings.HasPrefix(l, "kiln: build dependencies already") {
				// Straight to stdout: a benchmark's log is cut short.
				fmt.Printf("%s: %s\n", what, l)
			}
		}
		return took, hits, files, strings.Contains(log.String(), "kiln: build-dependency layer cache hit")
	}
	emptyLayers := func() {
		layers, _ := filepath.Glob(filepath.Join(cfg.LayerCache.Dir, "*"))
		for _, l := range layers {
			if filepath.Base(l) != "tmp" {
				if err := os.Remove(l); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	var cold, pkgs, warm [][2]time.Duration
	report := func(what string, took [2]time.Duration, hits, files int) {
		fmt.Printf("%s: resolve %s, install %s, phase 1 %s (%d of %d package files from the cache)\n", what,
			took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), (took[0] + took[1]).Round(time.Millisecond), hits, files)
	}
	b.ResetTimer()
	for b.Loop() {
		// Emptied on disk: every lookup misses and fetches again.
		if err := os.RemoveAll(filepath.Join(cfg.PackageCache.Dir, "files")); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(cfg.PackageCache.Dir, "files"), 0o755); err != nil {
			b.Fatal(err)
		}
		emptyLayers()
		took, hits, files, layer := phase1("cold")
		if hits != 0 || files == 0 || layer {
			b.Fatalf("cold run: %d hits of %d files, layer %v", hits, files, layer)
		}
		cold = append(cold, took)
		report("cold", took, hits, files)

		emptyLayers()
		took, hits, files, layer = phase1("package cache warm")
		if hits != files || layer {
			b.Fatalf("package cache warm: %d hits of %d files, layer %v", hits, files, layer)
		}
		pkgs = append(pkgs, took)
		report("package cache warm", took, hits, files)

		took, hits, files, layer = phase1("warm")
		if hits != files || !layer {
			b.Fatalf("warm run: %d hits of %d files, layer %v", hits, files, layer)
		}
		warm = append(warm, took)
		report("warm", took, hits, files)
	}
	med := func(runs [][2]time.Duration, pick func([2]time.Duration) time.Duration) float64 {
		var s []time.Duration
		for _, r := range runs {
			s = append(s, pick(r))
		}
		slices.Sort(s)
		return s[len(s)/2].Seconds()
	}
	total := func(t [2]time.Duration) time.Duration { return t[0] + t[1] }
	b.ReportMetric(med(cold, total), "s-cold-phase1")
	b.ReportMetric(med(pkgs, total), "s-pkgcache-phase1")
	b.ReportMetric(med(warm, total), "s-warm-phase1")
	b.ReportMetric(med(cold, total)/med(pkgs, total), "cold/pkgcache")
	b.ReportMetric(med(cold, total)/med(warm, total), "cold/warm")
}

package pkgbuild

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// BenchmarkPipeline measures the whole package build pipeline (fetch from
// git on loopback into a cold cache, upstream tarball and source tree,
// source package, build dependencies, installed-package listing, build,
// collection) of testdata/hello-native against plain dpkg-buildpackage of
// the same source tree in a sandbox of the same chroot, interleaved in one
// run. Both include opening and closing the sandbox. Reported are the
// medians and the difference of the fastest builds of each. Run it with
// bench/pkgbuild/run.sh; results are in BENCHMARKS.md.
func BenchmarkPipeline(b *testing.B) {
	br, target := buildroottest.New(b)
	srv := newGitServer(b)
	commit := srv.repo(b, "packages/hello-native", "hello-native", nil)
	sources := []executor.Source{{URL: srv.url("packages/hello-native"), Commit: commit, Role: "combined"}}
	ctx := context.Background()

	var kilns, plains, overheads []time.Duration
	var lastLog string
	n := 0
	for b.Loop() {
		n++
		// Kiln: a cold git cache each time, so that the fetch is counted.
		cfg := testConfig(b)
		builder := New(cfg, br, nil)
		job := newJob(b, executor.PackageBuild{Package: "hello-native", Target: target, Release: "mos-9.0", Revision: int64(n), VersionSuffix: "~mos9.0+1", Sources: sources})
		start := time.Now()
		var log strings.Builder
		res, err := builder.Run(ctx, job, &log)
		k := time.Since(start)
		if err != nil || res.Failed() {
			b.Fatalf("kiln build: %v %+v", err, res)
		}

		// Plain: the same tree, dpkg-buildpackage as the build user.
		work := b.TempDir()
		tree := filepath.Join(work, "src", "hello-native-1.2")
		copyDir(b, "testdata/hello-native", tree)
		if err := chownTree(work); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		sb, err := br.Open(ctx, target, work)
		if err != nil {
			b.Fatal(err)
		}
		r, err := sb.Exec(ctx, executor.Step{Argv: []string{"dpkg-buildpackage", "-us", "-uc"}, Dir: executor.SandboxWorkDir + "/src/hello-native-1.2", Env: buildEnv()}, io.Discard)
		if cerr := sb.Close(ctx); err == nil {
			err = cerr
		}
		p := time.Since(start)
		if err != nil || r.Failed() {
			b.Fatalf("plain build: %v %+v", err, r)
		}
		if _, err := os.Stat(filepath.Join(work, "src", "hello-native_1.2_all.deb")); err != nil {
			b.Fatalf("plain build made no .deb: %v", err)
		}
		lastLog = log.String()
		kilns, plains, overheads = append(kilns, k), append(plains, p), append(overheads, k-p)
		// Straight to stdout: the benchmark's log also holds the
		// buildroot's and is cut short.
		fmt.Printf("build %d: kiln %s, plain dpkg-buildpackage %s, overhead %s\n", n, k.Round(time.Millisecond), p.Round(time.Millisecond), (k - p).Round(time.Millisecond))
	}
	fmt.Println("phases of the last Kiln build:")
	for line := range strings.Lines(lastLog) {
		if strings.HasPrefix(line, "kiln: [") || strings.HasPrefix(line, "kiln: done") {
			fmt.Print("  ", strings.SplitN(line, "\n", 2)[0], "\n")
		}
	}
	// Medians: a shared machine's load spikes hit single builds.
	b.ReportMetric(median(kilns).Seconds(), "kiln-s/build")
	b.ReportMetric(median(plains).Seconds(), "plain-s/build")
	b.ReportMetric(median(overheads).Seconds(), "overhead-s/build")
	b.ReportMetric((slices.Min(kilns) - slices.Min(plains)).Seconds(), "best-overhead-s")
}

// BenchmarkCaptureOverhead measures the whole build of Debian's hello
// 2.10-3 (imported with gbp from the archive's source package, built with
// the nocheck profile) with the capture of the release's base
// (build.capture_base) on and off, interleaved in one run, the order
// changing every iteration. Both share one package cache, filled by a
// build before the timing starts, so that neither pays for downloads the
// other did not:
//
//	go test -run '^$' -bench CaptureOverhead -benchtime 4x -timeout 60m ./worker/pkgbuild/
func BenchmarkCaptureOverhead(b *testing.B) {
	testenv.Tool(b, "gbp")
	testenv.Tool(b, "pristine-tar")
	br, target := buildroottest.New(b)
	srv, commit := gbpHello(b)
	sources := []executor.Source{{URL: srv.url("hello"), Commit: commit}}
	ctx := context.Background()
	n := 0
	build := func(capture bool) time.Duration {
		n++
		cfg := testConfig(b)
		cfg.CaptureBase = capture
		job := newJob(b, executor.PackageBuild{Package: "hello", Target: target, Release: "mos-9.0", Revision: int64(n),
			Profiles: []string{"nocheck"}, Sources: sources})
		var log strings.Builder
		start := time.Now()
		res, err := New(cfg, br, nil).Run(ctx, job, &log)
		took := time.Since(start)
		if err != nil || res.Failed() {
			b.Fatalf("build with capture %v: %v %+v\n%s", capture, err, res, log.String())
		}
		base, _ := os.ReadDir(filepath.Join(job.WorkDir, baseDir))
		if capture != (len(base) > 0) {
			b.Fatalf("build with capture %v left %d base files", capture, len(base))
		}
		fmt.Printf("build %d: capture %-5v %s (%d base files)\n", n, capture, took.Round(time.Millisecond), len(base))
		return took
	}
	build(true) // fills the package cache and the git cache's machinery
	var on, off []time.Duration
	// logRatio sums log(on/off) of each pair: their geometric mean is
	// what capture costs, with the load's drift between pairs divided out.
	logRatio := 0.0
	i := 0
	for b.Loop() {
		first := i%2 == 0
		i++
		var pair [2]time.Duration
		for _, capture := range []bool{first, !first} {
			if d := build(capture); capture {
				on, pair[0] = append(on, d), d
			} else {
				off, pair[1] = append(off, d), d
			}
		}
		logRatio += math.Log(pair[0].Seconds() / pair[1].Seconds())
		fmt.Printf("pair %d: on/off %.3f\n", i, pair[0].Seconds()/pair[1].Seconds())
	}
	b.ReportMetric(median(on).Seconds(), "s-capture-on")
	b.ReportMetric(median(off).Seconds(), "s-capture-off")
	b.ReportMetric(100*(median(on).Seconds()/median(off).Seconds()-1), "%-overhead-medians")
	b.ReportMetric(100*(math.Exp(logRatio/float64(i))-1), "%-overhead-pairs")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

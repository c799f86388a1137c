package buildroot_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// installDeps is a phase 1 as a package build runs it: the package lists,
// then packages from the chroot's mirror, through the package source proxy.
var installDeps = executor.Step{
	Argv: []string{"sh", "-c", "apt-get update -o APT::Color=0 >/dev/null && " +
		"apt-get install --no-install-recommends -y -o APT::Color=0 zlib1g-dev libbz2-dev"},
	Root: true, Network: true, Timeout: 5 * time.Minute,
}

func TestSecondBuildTakesPackagesFromCache(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b, target := buildroottest.NewWith(t, buildroottest.Config(t), buildroottest.DebTarget, buildroot.WithMetrics(reg))
	run := func(name string) (executor.StepResult, string) {
		t.Helper()
		sb, _ := open(t, b, target)
		var log bytes.Buffer
		res, err := sb.Exec(context.Background(), installDeps, &log)
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed() {
			t.Fatalf("%s: exit %d %s:\n%s", name, res.ExitCode, res.Reason, log.String())
		}
		return res, log.String()
	}

	first, log1 := run("first build")
	if len(first.Packages) < 2 {
		t.Fatalf("first build got %d package files, want zlib1g-dev and libbz2-dev at least:\n%s", len(first.Packages), log1)
	}
	for _, f := range first.Packages {
		if f.CacheHit {
			t.Errorf("first build, empty cache: %s reported as a hit", f.Name)
		}
		if !strings.Contains(log1, "kiln: package cache miss "+f.Name+": fetched from its source") {
			t.Errorf("first build's log does not say where %s came from:\n%s", f.Name, log1)
		}
	}
	if !strings.Contains(log1, "hits (0 B), ") {
		t.Errorf("first build's log has no summary of the cache:\n%s", log1)
	}

	second, log2 := run("second build")
	if len(second.Packages) != len(first.Packages) {
		t.Fatalf("second build got %d package files, first %d:\n%s", len(second.Packages), len(first.Packages), log2)
	}
	for i, f := range second.Packages {
		if !f.CacheHit || f.SHA256 != first.Packages[i].SHA256 || f.Name != first.Packages[i].Name {
			t.Errorf("second build's file %+v, want a hit with the first's bytes %+v", f, first.Packages[i])
		}
		if !strings.Contains(log2, "kiln: package cache hit "+f.Name+"\n") {
			t.Errorf("second build's log does not show the hit for %s:\n%s", f.Name, log2)
		}
	}
	if strings.Contains(log2, "fetched from its source") {
		t.Errorf("second build fetched from the mirror:\n%s", log2)
	}
	// The package lists too, by the digests the Release file names.
	if !strings.Contains(log1, " repository indexes from the cache, ") || strings.Contains(log1, " 0 fetched and stored") {
		t.Errorf("first build stored no package lists:\n%s", log1)
	}
	if !strings.Contains(log2, ", 0 fetched and stored\n") {
		t.Errorf("second build fetched package lists again:\n%s", log2)
	}
	n := len(first.Packages)
	if h, m := gathered(t, reg, "kiln_worker_package_cache_hits_total"), gathered(t, reg, "kiln_worker_package_cache_misses_total"); h != float64(n) || m != float64(n) {
		t.Errorf("metrics: %v hits, %v misses; want %d and %d", h, m, n, n)
	}
	// The captured bytes are there for the release's base, by sha256.
	f, err := b.PackageCache().Open(first.Packages[0].SHA256)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := io.Copy(io.Discard, f)
	f.Close()
	if size != first.Packages[0].Size {
		t.Errorf("cached %s: %d bytes, want %d", first.Packages[0].Name, size, first.Packages[0].Size)
	}
}

// gathered returns the value of a counter or gauge in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

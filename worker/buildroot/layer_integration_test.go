package buildroot_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// resolveDeps is what installDeps would do, as apt plans it, with the
// sha256 of every package file.
var resolveDeps = executor.Step{
	Argv: []string{"sh", "-c", "apt-get update -qq >/dev/null && " +
		"apt-get install --print-uris -q -o Acquire::ForceHash=SHA256 --no-install-recommends -o APT::Color=0 zlib1g-dev libbz2-dev"},
	Root: true, Network: true, Timeout: 5 * time.Minute,
}

// resolution keeps apt's plan of a resolving step's output: the package
// lists and the URIs.
func resolution(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "'") || strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "The following ") {
			keep = append(keep, strings.TrimRight(l, " "))
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

// A second phase 1 with the same resolved build dependencies on the same
// chroot unpacks the first one's layer: the same packages installed and
// reported, nothing of a later step in it, and a corrupt layer is found
// by its hash and made again.
func TestBuildDependencyLayerCache(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	cfg.LayerCache = buildroot.LayerCacheConfig{Dir: filepath.Join(t.TempDir(), "layers"), MaxSize: "4G"}
	reg := prometheus.NewRegistry()
	b, target := buildroottest.NewWith(t, cfg, buildroottest.DebTarget, buildroot.WithMetrics(reg))
	ctx := context.Background()
	listing := executor.Step{Argv: sh("dpkg-query -W -f '${Package} ${Version} ${Architecture} ${Status}\\n'")}
	phase1 := func(name string) (*buildroot.Sandbox, executor.StepResult, string, string) {
		t.Helper()
		sb, err := b.OpenSandbox(ctx, target, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close(context.Background()) })
		var out bytes.Buffer
		if r, err := sb.ExecResolve(ctx, resolveDeps, &out); err != nil || r.Failed() {
			t.Fatalf("%s: resolve: %+v %v\n%s", name, r, err, out.String())
		}
		res := resolution(out.String())
		if !strings.Contains(res, "zlib1g-dev_1%3a") || !strings.Contains(res, "SHA256:") {
			t.Fatalf("%s: resolution lacks zlib1g-dev or its sha256:\n%s", name, res)
		}
		var log bytes.Buffer
		r, err := sb.ExecWithLayer(ctx, res, installDeps, &log)
		if err != nil || r.Failed() {
			t.Fatalf("%s: %+v %v\n%s", name, r, err, log.String())
		}
		return sb, r, out.String() + log.String(), execOK(t, sb, listing)
	}

	sb1, first, log1, list1 := phase1("first phase 1")
	if !strings.Contains(log1, "kiln: build-dependency layer ") || !strings.Contains(log1, " stored (") {
		t.Fatalf("first phase 1 stored no layer:\n%s", log1)
	}
	// Phase 2 writes after the layer was stored; none of it may reach a
	// later build.
	execOK(t, sb1, executor.Step{Argv: sh("echo leak > /usr/local/phase2 && rm /usr/include/zlib.h"), Root: true})

	sb2, second, log2, list2 := phase1("second phase 1")
	if !strings.Contains(log2, "kiln: apt package lists of an earlier build on this chroot restored") || strings.Contains(log1, "lists of an earlier build") {
		t.Errorf("apt's lists not restored for the second phase 1 only:\n%s\n%s", log1, log2)
	}
	if !strings.Contains(log1, "kiln: apt package lists stored (") || !strings.Contains(log2, "kiln: apt package lists unchanged since they were stored, not stored again") {
		t.Errorf("apt's lists not stored by the first phase 1, or stored again unchanged by the second:\n%s\n%s", log1, log2)
	}
	if !strings.Contains(log2, "kiln: build-dependency layer cache hit ") || !strings.Contains(log2, "zlib1g-dev is already the newest version") {
		t.Fatalf("second phase 1 did not start from the layer:\n%s", log2)
	}
	if list2 != list1 {
		t.Errorf("installed packages differ:\nfirst:\n%s\nsecond:\n%s", list1, list2)
	}
	if len(second.Packages) != len(first.Packages) {
		t.Fatalf("second phase 1 reports %d package files, first %d", len(second.Packages), len(first.Packages))
	}
	for i, f := range second.Packages {
		if f.Name != first.Packages[i].Name || f.SHA256 != first.Packages[i].SHA256 || !f.CacheHit {
			t.Errorf("package file %+v, want %+v from the cache", f, first.Packages[i])
		}
	}
	out := execOK(t, sb2, executor.Step{Argv: sh("test -e /usr/include/zlib.h && ! test -e /usr/local/phase2 && echo clean")})
	if out != "clean\n" {
		t.Errorf("phase 2 of the first build leaked into the layer: %q", out)
	}

	// Corrupt on disk: found by its hash, removed, phase 1 in full.
	layers, _ := filepath.Glob(filepath.Join(cfg.LayerCache.Dir, "[0-9a-f]*.tar"))
	if len(layers) != 1 {
		t.Fatalf("layers on disk: %v, want 1", layers)
	}
	data, err := os.ReadFile(layers[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x55
	if err := os.WriteFile(layers[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	lists, _ := filepath.Glob(filepath.Join(cfg.LayerCache.Dir, "lists-*.tar"))
	if len(lists) != 1 {
		t.Fatalf("apt lists on disk: %v, want 1", lists)
	}
	if data, err = os.ReadFile(lists[0]); err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(lists[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, third, log3, list3 := phase1("phase 1 after the layer was corrupted")
	if !strings.Contains(log3, "apt package lists of an earlier build not used: corrupt, removed") || !strings.Contains(log3, "kiln: apt package lists stored (") {
		t.Errorf("corrupt apt lists not detected and stored again:\n%s", log3)
	}
	if !strings.Contains(log3, "layer "+filepath.Base(layers[0])[:12]+" not used: corrupt, removed") || !strings.Contains(log3, " stored (") || strings.Contains(log3, "layer cache hit") {
		t.Fatalf("corrupt layer not detected and made again:\n%s", log3)
	}
	if list3 != list1 || len(third.Packages) != len(first.Packages) {
		t.Errorf("phase 1 after the corrupt layer: %d package files, installed:\n%s", len(third.Packages), list3)
	}
	// First: a miss and a store; second: a hit; third: the corrupt layer
	// unusable, and stored again.
	for name, want := range map[string]float64{"hits": 1, "misses": 1, "unusable": 1, "stored": 2, "evictions": 0} {
		if got := gathered(t, reg, "kiln_worker_layer_cache_"+name+"_total"); got != want {
			t.Errorf("kiln_worker_layer_cache_%s_total = %v, want %v", name, got, want)
		}
	}
}

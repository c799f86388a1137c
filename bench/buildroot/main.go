// Command buildroot-bench measures, in one run on one chroot, what a clean
// buildroot costs: the start overhead of a build container (from preparing
// its snapshot to the exit of `true`), copying the chroot with `cp -a`, and
// making a fresh chroot with mmdebstrap. Run it with bench/buildroot/run.sh.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/executor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "buildroot-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("buildroot-bench", flag.ContinueOnError)
	address := fs.String("address", buildroot.DefaultAddress, "containerd socket")
	n := fs.Int("n", 100, "container starts to measure")
	mirror := fs.String("mirror", "http://deb.debian.org/debian", "Debian mirror for mmdebstrap")
	suite := fs.String("suite", "bookworm", "Debian suite")
	workDir := fs.String("dir", "/var/tmp/kiln-bench", "scratch directory (on disk, not tmpfs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 2 {
		return fmt.Errorf("-n %d: measure at least 2 starts", *n)
	}
	target := buildroot.Target{
		Name: "bench", Format: "deb", Method: "mmdebstrap",
		Suite: *suite, Mirror: *mirror, Components: []string{"main"}, Variant: "minbase",
		Packages: []string{"build-essential", "dpkg-dev", "fakeroot", "debhelper"},
	}
	if err := os.RemoveAll(*workDir); err != nil {
		return err
	}
	if err := os.MkdirAll(*workDir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(*workDir)
	logger := hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.Warn, Output: os.Stderr})

	// 1. A fresh chroot with mmdebstrap.
	archive := filepath.Join(*workDir, "chroot.tar")
	var mmlog bytes.Buffer
	start := time.Now()
	if err := buildroot.MakeChroot(ctx, target, archive, &mmlog); err != nil {
		return fmt.Errorf("%w\n%s", err, mmlog.String())
	}
	mmdebstrap := time.Since(start)
	fmt.Fprintf(stdout, "mmdebstrap (fresh chroot):       %s\n", mmdebstrap.Round(time.Millisecond))

	// 2. cp -a of the same chroot, unpacked.
	tree, copied := filepath.Join(*workDir, "tree"), filepath.Join(*workDir, "copy")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "--numeric-owner", "-xpf", archive, "-C", tree).CombinedOutput(); err != nil {
		return fmt.Errorf("unpack chroot: %v: %s", err, out)
	}
	size, _ := exec.CommandContext(ctx, "du", "-sh", tree).Output()
	// Flush the page cache's dirty pages first so that cp pays for its own.
	syscall.Sync()
	start = time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-a", tree, copied).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a: %v: %s", err, out)
	}
	syscall.Sync()
	cp := time.Since(start)
	fmt.Fprintf(stdout, "cp -a of the chroot (%s):  %s\n", bytes.TrimSpace(bytes.Fields(size)[0]), cp.Round(time.Millisecond))

	// 3. Container start overhead on the same chroot.
	cfg := buildroot.Config{
		Address:   *address,
		Namespace: "kiln-bench",
		StateDir:  filepath.Join(*workDir, "state"),
		TmpfsSize: "1G",
		Memory:    "2G",
		Pids:      1024,
		Targets:   []buildroot.Target{target},
		// No network steps here: no package cache.
		PackageCache: buildroot.PackageCacheConfig{Disabled: true},
	}
	b, err := buildroot.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer b.Close()
	defer func() {
		if err := b.Purge(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintln(os.Stderr, "buildroot-bench: purge:", err)
		}
	}()
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	start = time.Now()
	info, err := b.Import(ctx, target.Name, f)
	f.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "import into containerd:          %s (%s)\n", time.Since(start).Round(time.Millisecond), info.Digest)

	work := filepath.Join(*workDir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		return err
	}
	var starts, cycles, closes []time.Duration
	for i := range *n + 1 {
		t0 := time.Now()
		sb, err := b.OpenSandbox(ctx, target.Name, work)
		if err != nil {
			return err
		}
		res, err := sb.Exec(ctx, executor.Step{Argv: []string{"true"}}, io.Discard)
		t1 := time.Now()
		cerr := sb.Close(ctx)
		t2 := time.Now()
		if err != nil {
			return err
		}
		if cerr != nil {
			return cerr
		}
		if res.Failed() {
			return fmt.Errorf("true failed: %+v", res)
		}
		if i == 0 {
			continue // warm-up
		}
		starts = append(starts, sb.LastExit().Sub(t0))
		cycles = append(cycles, t1.Sub(t0))
		closes = append(closes, t2.Sub(t1))
	}
	med, p95 := percentile(starts, 50), percentile(starts, 95)
	fmt.Fprintf(stdout, "container start, prepare to exit of true (n=%d): median %s, p95 %s\n", *n, round(med), round(p95))
	fmt.Fprintf(stdout, "  + step teardown (task and container deleted):  median %s, p95 %s\n", round(percentile(cycles, 50)), round(percentile(cycles, 95)))
	fmt.Fprintf(stdout, "sandbox close (snapshot, tmpfs, lease removed):  median %s, p95 %s\n", round(percentile(closes, 50)), round(percentile(closes, 95)))
	fmt.Fprintf(stdout, "ratios: cp -a / start median = %.0fx, mmdebstrap / start median = %.0fx\n",
		float64(cp)/float64(med), float64(mmdebstrap)/float64(med))
	goal := "met"
	if med >= 100*time.Millisecond {
		goal = "NOT met"
	}
	fmt.Fprintf(stdout, "goal (median under 100ms): %s\n", goal)
	return nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

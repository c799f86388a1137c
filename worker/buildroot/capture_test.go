package buildroot_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/buildroot/buildroottest"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestChrootCreateKeepsItsPackages makes a real (small) chroot with
// mmdebstrap: every package installed in it has its file in the package
// cache, listed with the chroot.
func TestChrootCreateKeepsItsPackages(t *testing.T) {
	t.Parallel()
	cfg := buildroottest.Config(t)
	deb := buildroottest.Targets()[0]
	target := buildroot.Target{Name: "kiln-test-capture", Format: "deb", Method: "mmdebstrap",
		Suite: deb.Suite, Mirror: deb.Mirror, Components: deb.Components, Variant: "minbase"}
	cfg.Targets = []buildroot.Target{target}
	ctx := context.Background()
	b, err := buildroot.New(ctx, cfg, buildroottest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Purge(context.Background()); err != nil {
			t.Errorf("purge: %v", err)
		}
		b.Close()
	})
	var log bytes.Buffer
	start := time.Now()
	info, err := b.Create(ctx, target.Name, &log)
	if err != nil {
		t.Fatalf("create chroot: %v\n%s", err, log.String())
	}
	t.Logf("chroot made in %s", time.Since(start).Round(time.Second))
	pkgs, err := b.ChrootPackages(info.Name, info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		f, err := b.PackageCache().Open(p.SHA256)
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		n, _ := io.Copy(io.Discard, f)
		f.Close()
		if n != p.Size || p.URL != "" || !strings.HasSuffix(p.Name, ".deb") {
			t.Errorf("%+v: %d bytes in the cache", p, n)
		}
	}

	sb, _ := open(t, b, target.Name)
	if got := sb.(*buildroot.Sandbox).ChrootPackages(); !slices.Equal(got, pkgs) {
		t.Errorf("sandbox's chroot packages differ from the chroot's: %d and %d", len(got), len(pkgs))
	}
	installed := strings.Fields(execOK(t, sb, executor.Step{Argv: []string{"dpkg-query", "-W", "-f", "${Package}\n"}}))
	var captured []string
	for _, p := range pkgs {
		name, _, _ := strings.Cut(p.Name, "_")
		captured = append(captured, name)
	}
	slices.Sort(installed)
	slices.Sort(captured)
	if len(installed) < 50 || !slices.Equal(installed, captured) {
		t.Errorf("installed packages and captured files differ:\ninstalled %q\ncaptured  %q", installed, captured)
	}
	if files := execOK(t, sb, executor.Step{Argv: []string{"sh", "-c", "ls /var/cache/apt/archives/*.deb 2>/dev/null | wc -l"}}); files != "0\n" {
		t.Errorf("package files left in the chroot: %s", files)
	}
}

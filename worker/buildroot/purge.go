package buildroot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// Purge removes everything the Buildroot has in containerd, chroots
// included, and then its namespace. Sandboxes must be closed first. It is
// meant for tests and for taking a worker out of service.
func (b *Buildroot) Purge(ctx context.Context) error {
	ctx = b.nsCtx(ctx)
	if err := b.cleanup(ctx); err != nil {
		return err
	}
	sn := b.snapshotter()
	// Children first: walk until nothing is left.
	for range 16 {
		var names []string
		err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			names = append(names, info.Name)
			return nil
		})
		if err != nil {
			return fmt.Errorf("purge: list snapshots: %w", err)
		}
		if len(names) == 0 {
			break
		}
		for _, n := range names {
			if err := sn.Remove(ctx, n); err != nil && !errdefs.IsNotFound(err) &&
				!errdefs.IsFailedPrecondition(err) && !strings.Contains(err.Error(), "child") {
				return fmt.Errorf("purge: remove snapshot %s: %w", n, err)
			}
		}
	}
	if err := b.client.NamespaceService().Delete(ctx, b.cfg.Namespace); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("purge: delete namespace %s: %w", b.cfg.Namespace, err)
	}
	for _, dir := range []string{b.sandboxesDir(), b.chrootPackagesDir()} {
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("purge: %w", err)
		}
	}
	// The step containers' cgroups are gone; their empty parents are not.
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "kiln", b.cfg.Namespace))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", "kiln", b.cfg.Namespace))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.logger.Debug("remove cgroup", "dir", d, "error", err)
		}
	}
	return nil
}

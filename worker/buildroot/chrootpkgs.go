package buildroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// chrootPackagesDir holds, per chroot, the list of package files it was
// made from: TARGET@HEX.json.
func (b *Buildroot) chrootPackagesDir() string {
	return filepath.Join(b.cfg.StateDir, b.cfg.Namespace, "chroots")
}

func (b *Buildroot) chrootPackagesFile(target, digest string) string {
	return filepath.Join(b.chrootPackagesDir(), target+"@"+strings.TrimPrefix(digest, "sha256:")+".json")
}

// chrootPackages is the file that lists a chroot's package files.
type chrootPackages struct {
	Target   string                 `json:"target"`
	Digest   string                 `json:"digest"`
	Packages []executor.PackageFile `json:"packages"`
}

// capture stores the package files in dir in the package cache and lists
// them by name.
func (b *Buildroot) capture(dir string) ([]executor.PackageFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("capture the chroot's packages: %w", err)
	}
	var out []executor.PackageFile
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("capture the chroot's packages: %w", err)
		}
		ce, err := b.cache.Add(f, "", e.Name())
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("capture the chroot's packages: %w", err)
		}
		out = append(out, executor.PackageFile{Name: e.Name(), SHA256: ce.SHA256, Size: ce.Size})
	}
	slices.SortFunc(out, func(a, b executor.PackageFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// writeChrootPackages keeps the list of package files a chroot was made
// from beside it.
func (b *Buildroot) writeChrootPackages(info TargetInfo, packages []executor.PackageFile) error {
	if err := os.MkdirAll(b.chrootPackagesDir(), 0o755); err != nil {
		return fmt.Errorf("keep the chroot's package list: %w", err)
	}
	data, err := json.MarshalIndent(chrootPackages{Target: info.Name, Digest: info.Digest, Packages: packages}, "", "  ")
	if err != nil {
		return fmt.Errorf("keep the chroot's package list: %w", err)
	}
	path := b.chrootPackagesFile(info.Name, info.Digest)
	tmp := path + ".tmp-" + randomID()
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("keep the chroot's package list: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keep the chroot's package list: %w", err)
	}
	return nil
}

// ChrootPackages lists the package files (name, sha256, size) that
// target's chroot with digest was made from, as `worker chroot create`
// or `refresh` captured them into the package cache. It is nil for a
// chroot imported from an archive, or made with the cache off.
func (b *Buildroot) ChrootPackages(target, digest string) ([]executor.PackageFile, error) {
	data, err := os.ReadFile(b.chrootPackagesFile(target, digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("package list of chroot %s@%s: %w", target, digest, err)
	}
	var c chrootPackages
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("package list of chroot %s@%s: %w", target, digest, err)
	}
	return c.Packages, nil
}

// removeChrootPackages forgets the package list of a removed chroot.
func (b *Buildroot) removeChrootPackages(target, digest string) {
	if err := os.Remove(b.chrootPackagesFile(target, digest)); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.logger.Warn("remove the package list of a removed chroot", "target", target, "digest", digest, "error", err)
	}
}

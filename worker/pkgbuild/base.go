package pkgbuild

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgcache"
)

// baseDir, in the work dir, holds the package files the buildroot was made
// from and installed: the worker uploads them as the job's base/
// artifacts, and the coordinator hands them to the release's base
// repository when the build is published.
const baseDir = "base"

// basePackageName is what a base file may be called: a package file name
// as distributions and apt write them (an epoch as ":" or "%3a"), never a
// path.
var basePackageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~_:%-]*\.(deb|udeb|rpm)$`)

// packageCache is the buildroot's package cache, where every package file
// a buildroot used is kept by sha256.
type packageCache interface {
	PackageCache() *pkgcache.Cache
}

// chrootPackages is a sandbox that knows the package files its chroot was
// made from.
type chrootPackages interface {
	ChrootPackages() []executor.PackageFile
}

// captureBase puts the package files of the buildroot (its chroot's and
// those phase 1 fetched) into the work dir's base/, each checked against
// its sha256 in the package cache. A buildroot without a package cache
// captures nothing, and says so.
func (b *Builder) captureBase(workDir string, sb executor.Sandbox, fetched []executor.PackageFile, log io.Writer) error {
	pc, ok := b.opener.(packageCache)
	var cache *pkgcache.Cache
	if ok {
		cache = pc.PackageCache()
	}
	if cache == nil {
		fmt.Fprintf(log, "kiln: the release's base is not captured: the worker has no package cache (buildroot.package_cache)\n")
		return nil
	}
	var files []executor.PackageFile
	if cp, ok := sb.(chrootPackages); ok {
		files = append(files, cp.ChrootPackages()...)
	}
	files = append(files, fetched...)
	// Whatever the build left at base/ (a link to a host directory, say)
	// goes first.
	dir := filepath.Join(workDir, baseDir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("capture the base: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("capture the base: %w", err)
	}
	seen := map[string]bool{}
	var n int
	var size int64
	for _, pf := range files {
		if seen[pf.Name] || seen[pf.SHA256] {
			continue
		}
		seen[pf.Name], seen[pf.SHA256] = true, true
		if !basePackageName.MatchString(pf.Name) {
			fmt.Fprintf(log, "kiln: base package file %q skipped: not a package file name\n", truncate(pf.Name, 120))
			continue
		}
		f, err := cache.Open(pf.SHA256)
		if errors.Is(err, pkgcache.ErrNotFound) || errors.Is(err, pkgcache.ErrCorrupt) {
			fmt.Fprintf(log, "kiln: base package file %s (sha256 %s) is no longer in the package cache: %v\n", pf.Name, pf.SHA256, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("capture the base: %w", err)
		}
		err = linkOrCopy(f.File, filepath.Join(dir, pf.Name))
		f.Close()
		if err != nil {
			return fmt.Errorf("capture the base: %s: %w", pf.Name, err)
		}
		n++
		size += pf.Size
	}
	fmt.Fprintf(log, "kiln: base: %d package files (%.1f MB) the buildroot was made from and installed\n", n, float64(size)/1e6)
	return nil
}

// linkOrCopy makes to a hard link of the open file f, or a copy of it when
// the two are on different file systems.
func linkOrCopy(f *os.File, to string) error {
	if err := os.Link(f.Name(), to); err == nil {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return writeFileFrom(to, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
}

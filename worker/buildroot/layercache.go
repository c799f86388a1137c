package buildroot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/worker/executor"
	"github.com/kiln-build/kiln/worker/pkgcache"
)

// The build-dependency layer cache keeps what phase 1 wrote into a
// sandbox's writable layer (the overlay's upper dir: the unpacked and
// configured build dependencies, dpkg's database) as a tar file, keyed by
// the chroot's digest and the exact resolution of the build dependencies
// (what apt would install, remove and configure, and each package file's
// sha256). A later phase 1 on the same chroot with the same resolution
// unpacks that layer instead of having apt and dpkg do the work again,
// and then runs its step as usual (which finds everything installed).
//
// On disk, under Dir:
//
//	<id>.tar    the layer; id is the sha256 of the chroot digest and the resolution
//	<id>.json   its manifest: the layer's sha256 and size, and the package
//	            files phase 1 fetched (for the release's base)
//	tmp/        layers being written
//
// A manifest is written after its layer, so a layer without one is not
// used; its modification time is the layer's last use, so the order of
// eviction survives a restart. The layer is checked against its sha256
// before it is unpacked; a corrupt one is removed and phase 1 runs in full.
type layerCache struct {
	dir     string
	max     int64
	mu      sync.Mutex // serialises eviction
	metrics *layerMetrics
}

// layerManifest is a layer's <id>.json.
type layerManifest struct {
	Chroot     string                 `json:"chroot"`
	SHA256     string                 `json:"sha256"`
	Size       int64                  `json:"size"`
	Resolution string                 `json:"resolution"`
	Packages   []executor.PackageFile `json:"packages"`
}

// layerSkip are the upper dir's paths a layer leaves out: apt's package
// lists and the sources phase 1 added (each phase 1 makes its own), the
// package files apt kept, logs and temporary files.
var layerSkip = []string{"var/lib/apt/lists", "var/cache/apt", "etc/apt/sources.list.d", "var/log", "tmp", "var/tmp"}

func openLayerCache(dir string, max int64, metrics *layerMetrics) (*layerCache, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("buildroot.layer_cache: %w", err)
	}
	// Layers left half-written by a worker that stopped.
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	for _, e := range tmps {
		_ = os.Remove(filepath.Join(dir, "tmp", e.Name()))
	}
	if metrics == nil {
		metrics = newLayerMetrics(nil)
	}
	return &layerCache{dir: dir, max: max, metrics: metrics}, nil
}

// layerID is the name of the layer of resolution on chroot.
func layerID(chroot, resolution string) string {
	h := sha256.Sum256([]byte("kiln build-dependency layer v1\x00" + chroot + "\x00" + resolution))
	return hex.EncodeToString(h[:])
}

func (c *layerCache) path(id, ext string) string { return filepath.Join(c.dir, id+ext) }

// lookup returns the manifest of a layer whose file has the size it
// names, or false.
func (c *layerCache) lookup(id string) (layerManifest, bool) {
	data, err := os.ReadFile(c.path(id, ".json"))
	if err != nil {
		return layerManifest{}, false
	}
	var m layerManifest
	if json.Unmarshal(data, &m) != nil {
		return layerManifest{}, false
	}
	if info, err := os.Stat(c.path(id, ".tar")); err != nil || info.Size() != m.Size {
		return layerManifest{}, false
	}
	return m, true
}

// drop removes a layer.
func (c *layerCache) drop(id string) {
	_ = os.Remove(c.path(id, ".json"))
	_ = os.Remove(c.path(id, ".tar"))
}

// touch marks a layer used now.
func (c *layerCache) touch(id string) {
	now := time.Now()
	_ = os.Chtimes(c.path(id, ".json"), now, now)
}

// verify hashes a layer's file whole against its manifest.
func (c *layerCache) verify(id string, m layerManifest) error {
	f, err := os.Open(c.path(id, ".tar"))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("layer %s has sha256 %s on disk, its manifest says %s", id, got, m.SHA256)
	}
	return nil
}

// store writes upper (without layerSkip, or only roots) as the layer id
// with manifest m,
// then evicts the least recently used layers beyond the bound.
func (c *layerCache) store(id, upper string, m layerManifest, roots ...string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "layer-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	werr := writeLayer(cw, upper, roots...)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return 0, werr
	}
	if cw.n > c.max {
		return 0, fmt.Errorf("the layer is %s, more than buildroot.layer_cache.max_size allows", humanBytes(cw.n))
	}
	m.SHA256, m.Size = hex.EncodeToString(h.Sum(nil)), cw.n
	data, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), c.path(id, ".tar")); err != nil {
		return 0, err
	}
	mtmp := tmp.Name() + ".json"
	if err := os.WriteFile(mtmp, data, 0o600); err != nil {
		return 0, err
	}
	if err := os.Rename(mtmp, c.path(id, ".json")); err != nil {
		_ = os.Remove(mtmp)
		return 0, err
	}
	c.evict(id)
	return cw.n, nil
}

// evict removes the least recently used layers, never keep, until the
// layers fit in the bound. Layer files without a manifest go first.
func (c *layerCache) evict(keep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type layer struct {
		id   string
		size int64
		used time.Time
	}
	var layers []layer
	var total int64
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".tar")
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		l := layer{id: id, size: info.Size()}
		if mi, err := os.Stat(c.path(id, ".json")); err == nil {
			l.used = mi.ModTime()
		}
		layers = append(layers, l)
		total += l.size
	}
	sort.Slice(layers, func(i, j int) bool { return layers[i].used.Before(layers[j].used) })
	for _, l := range layers {
		if total <= c.max {
			break
		}
		if l.id == keep {
			continue
		}
		c.drop(l.id)
		c.metrics.evictions.Inc()
		total -= l.size
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// skipped reports whether rel (a path in the upper dir) is left out of
// layers.
func skipped(rel string) bool {
	for _, s := range layerSkip {
		if rel == s || strings.HasPrefix(rel, s+"/") {
			return true
		}
	}
	return false
}

// writeLayer writes the upper dir as a tar: regular files, directories,
// symlinks, hard links, device nodes (overlayfs whiteouts are 0/0
// character devices) with owners, modes, times and extended attributes
// (overlayfs marks opaque directories with trusted.overlay.opaque). With
// roots, only those paths (files or trees) and the directories above
// them are written, else everything but layerSkip.
func writeLayer(w io.Writer, upper string, roots ...string) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	add := func(p, rel string) error {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		target := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		hdr.Name = rel
		hdr.Uname, hdr.Gname = "", ""
		hdr.Format = tar.FormatPAX
		st, _ := info.Sys().(*syscall.Stat_t)
		if st != nil && info.Mode().IsRegular() && st.Nlink > 1 {
			k := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := links[k]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[k] = rel
			}
		}
		if xattrs, err := listXattrs(p); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		} else if len(xattrs) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range xattrs {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		return nil
	}
	walk := func(top string) error {
		return filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(upper, p)
			if err != nil || rel == "." {
				return err
			}
			if len(roots) == 0 && skipped(rel) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			return add(p, rel)
		})
	}
	if len(roots) == 0 {
		if err := walk(upper); err != nil {
			return err
		}
		return tw.Close()
	}
	written := map[string]bool{}
	for _, root := range roots {
		if _, err := os.Lstat(filepath.Join(upper, root)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		parts := strings.Split(root, "/")
		for i := 1; i < len(parts); i++ {
			dir := strings.Join(parts[:i], "/")
			if !written[dir] {
				written[dir] = true
				if err := add(filepath.Join(upper, dir), dir); err != nil {
					return err
				}
			}
		}
		if err := walk(filepath.Join(upper, root)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// listXattrs returns p's extended attributes (without following a link).
func listXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list extended attributes: %w", err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		sz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("extended attribute %s: %w", name, err)
		}
		val := make([]byte, sz)
		if sz, err = unix.Lgetxattr(p, name, val); err != nil {
			return nil, fmt.Errorf("extended attribute %s: %w", name, err)
		}
		out[name] = string(val[:sz])
	}
	return out, nil
}

// readLayer unpacks a layer into the upper dir (of an overlay that is not
// mounted), with owners, modes, times and extended attributes. Names
// that would leave upper are refused.
func readLayer(r io.Reader, upper string) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rel := filepath.Clean(hdr.Name)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("layer entry %q is not inside the buildroot", hdr.Name)
		}
		p := filepath.Join(upper, rel)
		if hdr.Typeflag != tar.TypeDir {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		mode := uint32(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			dirs = append(dirs, dirTime{p, hdr.ModTime})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			old := filepath.Clean(hdr.Linkname)
			if !filepath.IsLocal(old) {
				return fmt.Errorf("layer entry %q links outside the buildroot", hdr.Name)
			}
			if err := os.Link(filepath.Join(upper, old), p); err != nil {
				return err
			}
			continue // the first name carries the attributes
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			if err := unix.Mknod(p, kind|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		default:
			return fmt.Errorf("layer entry %q: unknown type %q", hdr.Name, hdr.Typeflag)
		}
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
					return fmt.Errorf("%s: set %s: %w", rel, name, err)
				}
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// After chown, which clears set-id bits.
			if err := unix.Chmod(p, mode); err != nil {
				return err
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			if err := setMtime(p, hdr.ModTime); err != nil {
				return err
			}
		}
	}
	// Directories' times last: their entries changed them.
	for _, d := range slices.Backward(dirs) {
		if err := setMtime(d.path, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

func setMtime(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// ExecWithLayer runs phase 1's step with the build-dependency layer cache:
// resolution is what the build dependencies resolve to (apt's plan with
// each package file's sha256, as the caller found it in this sandbox).
// When the cache holds the layer of that resolution on this sandbox's
// chroot, and the package cache still holds every package file it was
// made from, the layer is unpacked into the sandbox and the step runs on
// it; the result reports the layer's package files as cache hits, as if
// the step had fetched them, so the record and the release's base are the
// same either way. Otherwise the step runs as usual and, when it
// succeeds and fetched package files, its layer is stored, before
// anything else runs in the sandbox.
func (s *Sandbox) ExecWithLayer(ctx context.Context, resolution string, step executor.Step, log io.Writer) (executor.StepResult, error) {
	lc := s.b.layers
	if lc == nil || resolution == "" {
		return s.Exec(ctx, step, log)
	}
	id := layerID(s.digest, resolution)
	upper := filepath.Join(s.dir, "upper")
	if m, ok := lc.lookup(id); ok {
		t0 := time.Now()
		err := s.usable(id, m)
		if err == nil {
			if err := s.unpackCached(id); err != nil {
				// Half unpacked: the sandbox is not what phase 1 would
				// make. The job is retried on a new one.
				return executor.StepResult{}, fmt.Errorf("unpack build-dependency layer %s: %w", id, err)
			}
			lc.metrics.hits.Inc()
			fmt.Fprintf(log, "kiln: build-dependency layer cache hit %s: %d package files (%s layer) unpacked in %s\n",
				id[:12], len(m.Packages), humanBytes(m.Size), time.Since(t0).Round(time.Millisecond))
			res, err := s.Exec(ctx, step, log)
			if err != nil {
				return res, err
			}
			res.Packages = mergePackages(m.Packages, res.Packages)
			return res, nil
		}
		lc.metrics.unusable.Inc()
		fmt.Fprintf(log, "kiln: build-dependency layer %s not used: %v; installing in full\n", id[:12], err)
	} else {
		lc.metrics.misses.Inc()
	}
	res, err := s.Exec(ctx, step, log)
	if err != nil || res.Failed() || len(res.Packages) == 0 {
		return res, err
	}
	t0 := time.Now()
	s.mu.Lock()
	size, serr := lc.store(id, upper, layerManifest{Chroot: s.digest, Resolution: resolution, Packages: res.Packages})
	s.mu.Unlock()
	if serr != nil {
		fmt.Fprintf(log, "kiln: build-dependency layer not stored: %v\n", serr)
	} else {
		lc.metrics.stored.Inc()
		fmt.Fprintf(log, "kiln: build-dependency layer %s stored (%s) in %s\n", id[:12], humanBytes(size), time.Since(t0).Round(time.Millisecond))
	}
	return res, nil
}

// unpackCached unpacks the cached layer id into the sandbox's upper dir
// and marks it used. A layer that fails to unpack is removed from the
// cache; the sandbox may then hold part of it.
func (s *Sandbox) unpackCached(id string) error {
	lc := s.b.layers
	s.mu.Lock()
	f, err := os.Open(lc.path(id, ".tar"))
	if err == nil {
		err = readLayer(f, filepath.Join(s.dir, "upper"))
		f.Close()
	}
	s.mu.Unlock()
	if err != nil {
		lc.drop(id)
		return err
	}
	lc.touch(id)
	return nil
}

// usable checks a layer before it is unpacked: its bytes against its
// sha256 (a corrupt layer is removed), and that every package file it
// was made from is in the package cache, checked against its sha256, so
// that the release's base is captured as without the layer.
func (s *Sandbox) usable(id string, m layerManifest) error {
	lc := s.b.layers
	if m.Chroot != s.digest {
		return fmt.Errorf("it was made on chroot %s, this sandbox's is %s", m.Chroot, s.digest)
	}
	if err := lc.verify(id, m); err != nil {
		lc.drop(id)
		return fmt.Errorf("corrupt, removed: %w", err)
	}
	for _, pf := range m.Packages {
		if s.b.cache == nil {
			return errors.New("the worker has no package cache to capture its package files from")
		}
		f, err := s.b.cache.Open(pf.SHA256)
		if errors.Is(err, pkgcache.ErrNotFound) || errors.Is(err, pkgcache.ErrCorrupt) {
			return fmt.Errorf("its package file %s (sha256 %s) is no longer in the package cache", pf.Name, pf.SHA256)
		}
		if err != nil {
			return err
		}
		f.Close()
	}
	return nil
}

// mergePackages is the layer's package files, as cache hits, and those
// the step fetched besides.
func mergePackages(layer, fetched []executor.PackageFile) []executor.PackageFile {
	out := make([]executor.PackageFile, 0, len(layer)+len(fetched))
	seen := map[string]bool{}
	for _, pf := range layer {
		pf.CacheHit = true
		seen[pf.SHA256] = true
		out = append(out, pf)
	}
	for _, pf := range fetched {
		if !seen[pf.SHA256] {
			out = append(out, pf)
		}
	}
	return out
}

// Layered reports whether the sandbox has a build-dependency layer cache.
func (s *Sandbox) Layered() bool { return s.b.layers != nil }

package buildroot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/worker/executor"
)

// userSetup makes the build user and the work dir inside a new chroot.
var userSetup = fmt.Sprintf(
	"set -e; getent group %[1]s >/dev/null || groupadd -g %[2]d %[1]s; "+
		"getent passwd %[1]s >/dev/null || useradd -u %[3]d -g %[2]d -m -s /bin/sh %[1]s; "+
		"mkdir -p %[4]s; chown %[3]d:%[2]d %[4]s",
	executor.BuildUser, executor.BuildGID, executor.BuildUID, executor.SandboxWorkDir)

// MakeChroot makes target t's chroot with the target's method and writes it
// as an uncompressed tar archive to out. The tool's output goes to log.
func MakeChroot(ctx context.Context, t Target, out string, log io.Writer) error {
	if err := t.Validate(); err != nil {
		return err
	}
	return makeChroot(ctx, t, out, "", log)
}

// makeChroot is MakeChroot for a target already validated that, when
// capture is not empty, also leaves the package files the tool downloaded
// (and installed) in the directory capture.
func makeChroot(ctx context.Context, t Target, out, capture string, log io.Writer) error {
	switch t.Method {
	case "mmdebstrap":
		return run(ctx, log, "mmdebstrap", mmdebstrapArgs(t, out, capture)...)
	case "dnf":
		return makeDNFChroot(ctx, t, out, capture, log)
	}
	return fmt.Errorf("target %s: method %q: use mmdebstrap or dnf", t.Name, t.Method)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func mmdebstrapArgs(t Target, out, capture string) []string {
	args := []string{"--mode=root", "--format=tar"}
	if t.Variant != "" {
		args = append(args, "--variant="+t.Variant)
	}
	if t.Architecture != "" {
		args = append(args, "--architectures="+t.Architecture)
	}
	if len(t.Components) > 0 {
		args = append(args, "--components="+strings.Join(t.Components, ","))
	}
	// passwd provides groupadd/useradd even in the smallest variants.
	args = append(args, "--include="+strings.Join(append([]string{"passwd"}, t.Packages...), ","))
	args = append(args, "--customize-hook=chroot \"$1\" sh -c '"+userSetup+"'")
	if capture != "" {
		// The essential packages' files stay until the hooks have run
		// (apt-get keeps the others); the hook copies them all out
		// before they are removed.
		args = append(args, "--skip=essential/unlink",
			"--customize-hook=find \"$1\"/var/cache/apt/archives -maxdepth 1 -type f -name '*.deb' -exec cp -t "+shellQuote(capture)+" {} +")
	}
	args = append(args,
		// No cached package lists or archives in the chroot.
		"--customize-hook=rm -rf \"$1\"/var/cache/apt/archives/*.deb \"$1\"/var/lib/apt/lists/*_Packages")
	mirror := t.Mirror
	if t.SignedBy != "" {
		comps := t.Components
		if len(comps) == 0 {
			comps = []string{"main"}
		}
		mirror = fmt.Sprintf("deb [signed-by=%s] %s %s %s", t.SignedBy, t.Mirror, t.Suite, strings.Join(comps, " "))
		// The key goes into the chroot (under /etc, which no sandbox
		// mount hides) and the chroot's sources name it there, so apt
		// in the buildroot verifies the mirror as mmdebstrap did.
		inside := "/etc/apt/keyrings/kiln-" + filepath.Base(t.SignedBy)
		args = append(args, fmt.Sprintf("--customize-hook=mkdir -p \"$1\"/etc/apt/keyrings && cp '%s' \"$1\"'%s' && "+
			"for f in \"$1\"/etc/apt/sources.list \"$1\"/etc/apt/sources.list.d/*.list; do if [ -f \"$f\" ]; then sed -i 's|signed-by=%s|signed-by=%s|' \"$f\"; fi; done",
			t.SignedBy, inside, t.SignedBy, inside))
	}
	return append(args, t.Suite, out, mirror)
}

// dnfRepoFile is the repository file given to dnf --installroot.
func dnfRepoFile(t Target) string {
	var b strings.Builder
	for _, r := range t.Repositories {
		fmt.Fprintf(&b, "[%s]\nname=%s\nbaseurl=%s\nenabled=1\n", r.Name, r.Name, r.BaseURL)
		if r.GPGKey != "" {
			fmt.Fprintf(&b, "gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=%s\n", r.GPGKey)
		} else {
			b.WriteString("gpgcheck=0\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func dnfArgs(t Target, root, reposDir string) []string {
	args := []string{
		"--assumeyes",
		"--installroot=" + root,
		"--releasever=" + t.Releasever,
		"--setopt=reposdir=" + reposDir,
		"--setopt=install_weak_deps=False",
		"--setopt=tsflags=nodocs",
		"--setopt=cachedir=" + filepath.Join(reposDir, "cache"),
		// The downloaded packages stay in the cachedir (outside the
		// chroot), to be captured.
		"--setopt=keepcache=1",
	}
	if t.Architecture != "" {
		args = append(args, "--forcearch="+t.Architecture)
	}
	return append(append(args, "install"), t.Packages...)
}

// makeDNFChroot installs an RPM distribution with dnf --installroot into a
// scratch directory beside out and archives it.
func makeDNFChroot(ctx context.Context, t Target, out, capture string, log io.Writer) error {
	scratch, err := os.MkdirTemp(filepath.Dir(out), "dnf-")
	if err != nil {
		return fmt.Errorf("make chroot %s: %w", t.Name, err)
	}
	defer os.RemoveAll(scratch)
	root := filepath.Join(scratch, "root")
	repos := filepath.Join(scratch, "repos")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("make chroot %s: %w", t.Name, err)
	}
	if err := os.MkdirAll(repos, 0o755); err != nil {
		return fmt.Errorf("make chroot %s: %w", t.Name, err)
	}
	if err := os.WriteFile(filepath.Join(repos, "kiln.repo"), []byte(dnfRepoFile(t)), 0o644); err != nil {
		return fmt.Errorf("make chroot %s: %w", t.Name, err)
	}
	env, err := BootstrapEnv(scratch)
	if err != nil {
		return fmt.Errorf("make chroot %s: %w", t.Name, err)
	}
	if err := runEnv(ctx, log, env, "dnf", dnfArgs(t, root, repos)...); err != nil {
		return err
	}
	if capture != "" {
		if err := moveFiles(filepath.Join(repos, "cache"), ".rpm", capture); err != nil {
			return fmt.Errorf("make chroot %s: keep the downloaded packages: %w", t.Name, err)
		}
	}
	if err := run(ctx, log, "chroot", root, "sh", "-c", userSetup); err != nil {
		return err
	}
	return run(ctx, log, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-cf", out, "-C", root, ".")
}

// moveFiles moves the regular files named *ext anywhere under dir into
// dest (on the same file system).
func moveFiles(dir, ext, dest string) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ext) {
			return os.Rename(path, filepath.Join(dest, d.Name()))
		}
		return nil
	})
}

// RPMDBPath is where the rpm database of every RPM buildroot lives, as
// RPM distributions keep it.
const RPMDBPath = "/var/lib/rpm"

// BootstrapEnv returns the environment the worker host's dnf runs in when
// it installs into a buildroot (--installroot): a HOME of its own, in dir,
// whose ~/.rpmmacros puts the rpm database at RPMDBPath inside the root,
// whatever the host's rpm defaults to (Debian's keeps it in ~/.rpmdb).
func BootstrapEnv(dir string) ([]string, error) {
	home := filepath.Join(dir, "bootstrap-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("bootstrap dnf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(home, ".rpmmacros"), []byte("%_dbpath "+RPMDBPath+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("bootstrap dnf: %w", err)
	}
	return append(os.Environ(), "HOME="+home), nil
}

func run(ctx context.Context, log io.Writer, name string, args ...string) error {
	return runEnv(ctx, log, nil, name, args...)
}

func runEnv(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run %s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create makes target's chroot and imports it; it fails when the target
// already has one (use Refresh).
func (b *Buildroot) Create(ctx context.Context, target string, log io.Writer) (TargetInfo, error) {
	if _, err := b.Target(ctx, target); err == nil {
		return TargetInfo{}, fmt.Errorf("target %q already has a chroot; use `worker chroot refresh %s` to make a new one", target, target)
	} else if !errors.Is(err, ErrChrootMissing) {
		return TargetInfo{}, err
	}
	return b.Refresh(ctx, target, log)
}

// Refresh makes a new chroot for target and imports it. Sandboxes open on
// the previous chroot keep it until they close; then it is removed.
func (b *Buildroot) Refresh(ctx context.Context, target string, log io.Writer) (TargetInfo, error) {
	t, ok := b.cfg.Target(target)
	if !ok {
		return TargetInfo{}, fmt.Errorf("target %q is not in the worker config's buildroot.targets; add it there first", target)
	}
	if err := t.Validate(); err != nil {
		return TargetInfo{}, err
	}
	return b.refresh(ctx, t, log)
}

// refresh makes and imports a new chroot for the validated target t.
func (b *Buildroot) refresh(ctx context.Context, t Target, log io.Writer) (TargetInfo, error) {
	target := t.Name
	dir := filepath.Join(b.cfg.StateDir, "make")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
	}
	out := filepath.Join(dir, target+"-"+randomID()+".tar")
	defer os.Remove(out)
	// The package files the chroot is made from go to the package cache,
	// and their list is kept with the chroot.
	var capture string
	if b.cache != nil {
		capture = out + ".packages"
		if err := os.Mkdir(capture, 0o700); err != nil {
			return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
		}
		defer os.RemoveAll(capture)
	}
	if err := makeChroot(ctx, t, out, capture, log); err != nil {
		return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
	}
	var packages []executor.PackageFile
	if capture != "" {
		var err error
		if packages, err = b.capture(capture); err != nil {
			return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
		}
		fmt.Fprintf(log, "kiln: %d package files of the chroot kept in the package cache\n", len(packages))
	}
	f, err := os.Open(out)
	if err != nil {
		return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
	}
	defer f.Close()
	info, err := b.importChroot(ctx, t, f)
	if err != nil {
		return TargetInfo{}, err
	}
	if capture != "" {
		if err := b.writeChrootPackages(info, packages); err != nil {
			return TargetInfo{}, fmt.Errorf("make chroot %s: %w", target, err)
		}
	}
	return info, nil
}

// Import imports a chroot tar archive as target's new chroot: a committed,
// read-only snapshot named by target and the archive's sha256. Older chroots
// of the target are retired: removed now when no sandbox uses them, or when
// their last sandbox closes. Importing an archive identical to the current
// chroot changes nothing.
func (b *Buildroot) Import(ctx context.Context, target string, tarball io.Reader) (info TargetInfo, err error) {
	t, ok := b.cfg.Target(target)
	if !ok {
		return TargetInfo{}, fmt.Errorf("target %q is not in the worker config's buildroot.targets; add it there first", target)
	}
	return b.importChroot(ctx, t, tarball)
}

// importChroot is Import for the target t.
func (b *Buildroot) importChroot(ctx context.Context, t Target, tarball io.Reader) (info TargetInfo, err error) {
	target := t.Name
	ctx = b.nsCtx(ctx)
	ctx, done, err := b.client.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(24*time.Hour))
	if err != nil {
		return TargetInfo{}, fmt.Errorf("import chroot %s: lease: %w", target, err)
	}
	defer func() {
		if derr := done(context.WithoutCancel(ctx)); derr != nil && err == nil {
			err = fmt.Errorf("import chroot %s: release lease: %w", target, derr)
		}
	}()
	sn := b.snapshotter()
	key := importPrefix + target + "/" + randomID()
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		return TargetInfo{}, fmt.Errorf("import chroot %s: prepare snapshot: %w", target, err)
	}
	committed := false
	defer func() {
		if !committed {
			if rerr := sn.Remove(context.WithoutCancel(ctx), key); rerr != nil && !errdefs.IsNotFound(rerr) {
				b.logger.Warn("remove import snapshot", "snapshot", key, "error", rerr)
			}
		}
	}()
	digest, err := extractInto(ctx, mounts, tarball)
	if err != nil {
		return TargetInfo{}, fmt.Errorf("import chroot %s: %w", target, err)
	}
	name := chrootPrefix + target + "@" + digest
	now := time.Now().UTC()
	b.importMu.Lock()
	defer b.importMu.Unlock()
	err = sn.Commit(ctx, name, key, snapshots.WithLabels(map[string]string{
		labelTarget:  target,
		labelFormat:  t.Format,
		labelDigest:  digest,
		labelCreated: now.Format(time.RFC3339Nano),
		labelGCRoot:  now.Format(time.RFC3339Nano),
	}))
	switch {
	case errdefs.IsAlreadyExists(err):
		b.logger.Info("chroot already imported", "target", target, "digest", digest)
	case err != nil:
		return TargetInfo{}, fmt.Errorf("import chroot %s: commit snapshot %s: %w", target, name, err)
	default:
		committed = true
		b.logger.Info("chroot imported", "target", target, "digest", digest)
	}
	// Retire every other chroot of the target.
	all, err := b.chroots(ctx)
	if err != nil {
		return TargetInfo{}, err
	}
	for _, c := range all {
		if c.info.Name != target {
			continue
		}
		if c.info.Snapshot == name {
			info = c.info
			continue
		}
		if c.retired {
			continue
		}
		if _, err := sn.Update(ctx, snapshots.Info{
			Name:   c.info.Snapshot,
			Labels: map[string]string{labelRetired: now.Format(time.RFC3339Nano)},
		}, "labels."+labelRetired); err != nil {
			return TargetInfo{}, fmt.Errorf("retire chroot %s: %w", c.info.Snapshot, err)
		}
	}
	if err := b.removeRetired(ctx); err != nil {
		return TargetInfo{}, err
	}
	if info.Snapshot == "" {
		return TargetInfo{}, fmt.Errorf("import chroot %s: snapshot %s vanished after commit", target, name)
	}
	return info, nil
}

// Remove retires every chroot of target; each goes when no sandbox uses it.
func (b *Buildroot) Remove(ctx context.Context, target string) error {
	ctx = b.nsCtx(ctx)
	b.importMu.Lock()
	defer b.importMu.Unlock()
	all, err := b.chroots(ctx)
	if err != nil {
		return err
	}
	found := false
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, c := range all {
		if c.info.Name != target {
			continue
		}
		found = true
		if _, err := b.snapshotter().Update(ctx, snapshots.Info{
			Name:   c.info.Snapshot,
			Labels: map[string]string{labelRetired: now},
		}, "labels."+labelRetired); err != nil {
			return fmt.Errorf("retire chroot %s: %w", c.info.Snapshot, err)
		}
	}
	if !found {
		return fmt.Errorf("target %q: %w in containerd namespace %s; nothing to remove", target, ErrChrootMissing, b.cfg.Namespace)
	}
	return b.removeRetired(ctx)
}

// removeRetired removes retired chroots that no sandbox uses. The caller
// holds importMu.
func (b *Buildroot) removeRetired(ctx context.Context) error {
	all, err := b.chroots(ctx)
	if err != nil {
		return err
	}
	for _, c := range all {
		if !c.retired {
			continue
		}
		err := b.snapshotter().Remove(ctx, c.info.Snapshot)
		switch {
		case err == nil:
			b.logger.Info("retired chroot removed", "target", c.info.Name, "digest", c.info.Digest)
			b.removeChrootPackages(c.info.Name, c.info.Digest)
		case errdefs.IsNotFound(err):
		case errdefs.IsFailedPrecondition(err) || strings.Contains(err.Error(), "child"):
			// Still used by a sandbox; removed when the last one closes.
			b.logger.Debug("retired chroot still in use", "snapshot", c.info.Snapshot)
		default:
			return fmt.Errorf("remove retired chroot %s: %w", c.info.Snapshot, err)
		}
	}
	return nil
}

// extractInto mounts a prepared snapshot and unpacks tarball into it with
// tar, returning the archive's sha256 as "sha256:<hex>".
func extractInto(ctx context.Context, mounts []mount.Mount, tarball io.Reader) (_ string, err error) {
	dir, err := os.MkdirTemp("", "kiln-import-")
	if err != nil {
		return "", fmt.Errorf("extract chroot: %w", err)
	}
	defer os.Remove(dir)
	if err := mount.All(mounts, dir); err != nil {
		return "", fmt.Errorf("mount snapshot: %w", err)
	}
	defer func() {
		if uerr := mount.UnmountAll(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmount snapshot: %w", uerr)
		}
	}()
	h := sha256.New()
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"--same-permissions", "--same-owner", "-xf", "-", "-C", dir)
	cmd.Stdin = io.TeeReader(tarball, h)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("unpack chroot archive: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// tar may stop before the end-of-archive padding: hash the rest too.
	if _, err := io.Copy(h, tarball); err != nil {
		return "", fmt.Errorf("read chroot archive: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

package buildroot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/kiln-build/kiln/worker/executor"
)

// A sealed release builds from itself alone: its chroots are made from the
// release's base repository (every package its buildroots ever installed,
// published and signed by the publisher), never from the target's upstream
// mirror. Such a chroot is kept in containerd as target "<target>@<release>"
// (never a valid configured target name, so the two cannot clash), made on
// first use and reused by the release's later builds.

// SealedTarget is the name the chroot of target made from release's base
// has in containerd.
func SealedTarget(target, release string) string { return target + "@" + release }

// sealedTarget is target's configuration with its sources replaced by src.
func (b *Buildroot) sealedTarget(target string, src executor.BaseSource) (Target, error) {
	t, ok := b.cfg.Target(target)
	if !ok {
		return Target{}, fmt.Errorf("target %q is not in the worker config's buildroot.targets; add it there first", target)
	}
	if src.Release == "" || src.URL == "" {
		return Target{}, fmt.Errorf("sealed build of %s: the release's base repository is not configured; set base_apt (deb) or base_baseurl (rpm) in build.repositories", target)
	}
	if src.SignedBy == "" || !filepath.IsAbs(src.SignedBy) {
		return Target{}, fmt.Errorf("sealed build of %s: base repository %s: key %q: give the absolute path of the operator's public key (key_file in build.repositories)", target, src.URL, src.SignedBy)
	}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	t.Name = SealedTarget(target, src.Release)
	switch t.Method {
	case "mmdebstrap":
		t.Mirror, t.SignedBy = src.URL, src.SignedBy
		// The base's Packages carry each .deb's own Priority, not the
		// upstream archive's override, so apt may not be "required"
		// there: name it, as phase 1 installs the rest of the recorded
		// buildroot with it.
		if !slices.Contains(t.Packages, "apt") {
			t.Packages = append(slices.Clip(t.Packages), "apt")
		}
	case "dnf":
		t.Repositories = []Repository{{Name: "base", BaseURL: src.URL, GPGKey: "file://" + src.SignedBy}}
	}
	return t, nil
}

// OpenSealed opens a sandbox on target's chroot made from the release's
// base src, making that chroot first when the worker has none. Its network
// steps reach src and the step's own hosts, never the target's upstream
// mirror.
func (b *Buildroot) OpenSealed(ctx context.Context, target string, src executor.BaseSource, workDir string, log io.Writer) (executor.Sandbox, error) {
	t, err := b.sealedTarget(target, src)
	if err != nil {
		return nil, err
	}
	b.sealedMu.Lock()
	_, err = b.Target(ctx, t.Name)
	if errors.Is(err, ErrChrootMissing) {
		fmt.Fprintf(log, "kiln: making chroot %s from release %s's base %s (no upstream mirror)\n", t.Name, src.Release, src.URL)
		err = b.makeSealed(ctx, t, log)
	}
	b.sealedMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sealed chroot %s: %w", t.Name, err)
	}
	s, err := b.OpenSandbox(ctx, t.Name, workDir)
	if err != nil {
		return nil, err
	}
	s.sources, s.sealed = t.SourceHosts(), &t
	return s, nil
}

// targetConfig is the configuration of the sandbox's chroot: the
// configured target's, or for a sealed release's chroot the target's with
// the release's base as its only source.
func (s *Sandbox) targetConfig() (Target, bool) {
	if s.sealed != nil {
		return *s.sealed, true
	}
	return s.b.cfg.Target(s.target)
}

// makeSealed makes the sealed chroot t. apt's download methods run as an
// unprivileged user that may not read the operator's key where it lies
// (a 0600 file, a private directory): mmdebstrap is given a world-readable
// copy of its public key instead, which is also the one copied into the
// chroot. dnf reads the key as root, where it lies.
func (b *Buildroot) makeSealed(ctx context.Context, t Target, log io.Writer) error {
	if t.Method != "mmdebstrap" {
		return b.makeChrootLogged(ctx, t, log)
	}
	key, err := os.ReadFile(t.SignedBy)
	if err != nil {
		return fmt.Errorf("read the key of release base %s: %w", t.Mirror, err)
	}
	dir, err := os.MkdirTemp("", "kiln-sealed-key-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	t.SignedBy = filepath.Join(dir, "base.asc")
	if !bytes.HasPrefix(bytes.TrimSpace(key), []byte("-----BEGIN PGP")) {
		t.SignedBy = filepath.Join(dir, "base.gpg")
	}
	if err := os.WriteFile(t.SignedBy, key, 0o644); err != nil {
		return err
	}
	return b.makeChrootLogged(ctx, t, log)
}

// makeChrootLogged makes and imports the chroot of t, and says which it is.
func (b *Buildroot) makeChrootLogged(ctx context.Context, t Target, log io.Writer) error {
	info, err := b.refresh(ctx, t, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "kiln: chroot %s is %s\n", t.Name, info.Digest)
	return nil
}

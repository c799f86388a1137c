package buildroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/kiln-build/kiln/worker/executor"
)

// BootstrapInstall installs packages into the sandbox the way mock does
// with a bootstrap: the worker host's dnf writes into the sandbox's root
// with --installroot, from the target's repositories and req's, checking
// every signature it has a key for. Whether the buildroot itself has dnf,
// yum or neither does not matter. The package files dnf downloads are the
// result's Packages (see bootstrapProxy). dnf's exit status is the
// result's; an error is an infrastructure failure (no mount, no dnf, a
// repository that cannot be reached).
func (s *Sandbox) BootstrapInstall(ctx context.Context, req executor.BootstrapInstall, log io.Writer) (_ executor.StepResult, err error) {
	t, ok := s.targetConfig()
	if !ok || t.Method != "dnf" {
		return executor.StepResult{}, fmt.Errorf("sandbox %s: target %s: %w", s.id, s.target, executor.ErrNoBootstrap)
	}
	for _, p := range req.Packages {
		if p == "" || strings.HasPrefix(p, "-") || strings.ContainsAny(p, "\n\r\x00") {
			return executor.StepResult{ExitCode: 1}, fmt.Errorf("sandbox %s: package %q is not a capability dnf can install", s.id, p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return executor.StepResult{}, fmt.Errorf("sandbox %s: bootstrap install after close", s.id)
	}
	scratch, err := os.MkdirTemp(s.b.cfg.StateDir, "bootstrap-")
	if err != nil {
		return executor.StepResult{}, fmt.Errorf("bootstrap dnf: %w", err)
	}
	defer os.RemoveAll(scratch)
	root, repos := filepath.Join(scratch, "root"), filepath.Join(scratch, "repos")
	for _, d := range []string{root, repos} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return executor.StepResult{}, fmt.Errorf("bootstrap dnf: %w", err)
		}
	}
	all := t
	all.Repositories = append([]Repository(nil), t.Repositories...)
	for _, r := range req.Repos {
		if !wordPattern.MatchString(r.Name) || strings.ContainsAny(r.BaseURL+r.KeyFile, "\n\r") {
			return executor.StepResult{}, fmt.Errorf("bootstrap dnf: repository %q (%s): give a name of letters, digits, '.', '_', '-' and one URL", r.Name, r.BaseURL)
		}
		key := ""
		if r.KeyFile != "" {
			key = "file://" + r.KeyFile
		} else {
			fmt.Fprintf(log, "kiln: warning: repository %s is not verified: no key; give its key\n", r.BaseURL)
		}
		all.Repositories = append(all.Repositories, Repository{Name: r.Name, BaseURL: r.BaseURL, GPGKey: key})
	}
	all.Packages = req.Packages
	// dnf's cache is in scratch, out of the sandbox, and thrown away; the
	// package files it downloads pass the proxy into the package cache.
	proxy, err := s.startBootstrapProxy(all, log)
	if err != nil {
		return executor.StepResult{}, err
	}
	defer proxy.close() // when returning early
	if err := os.WriteFile(filepath.Join(repos, "kiln.repo"), []byte(dnfRepoFile(proxy.repositories(all, log))), 0o644); err != nil {
		return executor.StepResult{}, fmt.Errorf("bootstrap dnf: %w", err)
	}
	env, err := BootstrapEnv(scratch)
	if err != nil {
		return executor.StepResult{}, err
	}
	// No step runs now (s.mu is held): the overlay is mounted here alone.
	if err := mount.All(s.rootfs, root); err != nil {
		return executor.StepResult{}, fmt.Errorf("bootstrap dnf: mount sandbox %s: %w", s.id, err)
	}
	defer func() {
		if uerr := mount.UnmountAll(root, 0); uerr != nil && err == nil {
			err = fmt.Errorf("bootstrap dnf: unmount sandbox %s: %w", s.id, uerr)
		}
	}()
	args := append(proxy.args(), dnfArgs(all, root, repos)...)
	fmt.Fprintf(log, "kiln: bootstrap: dnf --installroot (the worker host's dnf) installs %s\n", strings.Join(req.Packages, ", "))
	cmd := exec.CommandContext(ctx, "dnf", args...)
	cmd.Env = append(env, proxy.env()...)
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Run()
	packages := proxy.finish(log)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return executor.StepResult{Packages: packages}, nil
	case errors.As(err, &ee) && ctx.Err() == nil:
		return executor.StepResult{ExitCode: ee.ExitCode(), Packages: packages}, nil
	}
	return executor.StepResult{}, fmt.Errorf("bootstrap dnf: %w", err)
}

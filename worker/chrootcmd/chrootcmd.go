// Package chrootcmd is the `worker chroot` command: it makes, refreshes,
// lists and removes the chroots that builds run in.
package chrootcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/internal/cmdline"
	"github.com/kiln-build/kiln/worker/buildroot"
	"github.com/kiln-build/kiln/worker/executor"
)

// Request is one `worker chroot` command, as the worker's command line
// parsed it.
type Request struct {
	// Command is create, refresh, list or remove.
	Command string
	// Target is the target to act on; empty for list and with All.
	Target string
	// All: every configured target (create and refresh).
	All bool
	// JSON prints the list as JSON.
	JSON bool
}

// Run runs a `worker chroot` command on the buildroot configured by cfg.
// Results go to stdout, the chroot tools' output to stderr.
func Run(ctx context.Context, cfg buildroot.Config, logger hclog.Logger, req Request, stdout, stderr io.Writer) error {
	cmd, all, jsonOut := req.Command, req.All, req.JSON
	switch cmd {
	case "create", "refresh", "remove", "list":
	default:
		return cmdline.Usage("worker chroot: unknown command %q: use create, refresh, list or remove", cmd)
	}
	cfg = cfg.WithDefaults()
	target := req.Target
	switch {
	case cmd == "list" && target != "":
		return cmdline.Usage("worker chroot list: unexpected argument %q; list takes no target", target)
	case all && target != "":
		return cmdline.Usage("worker chroot %s: give a target or --all, not both", cmd)
	case all && len(cfg.Targets) == 0:
		return cmdline.Usage("worker chroot %s --all: no targets in the worker config's buildroot.targets", cmd)
	case all:
	case cmd != "list" && target == "":
		return cmdline.Usage("worker chroot %s: give exactly one target (configured: %s)", cmd, targetNames(cfg))
	case cmd != "list":
		// A chroot can be removed after its target left the config.
		if _, ok := cfg.Target(target); !ok && cmd != "remove" {
			return cmdline.Usage("worker chroot %s: target %q is not configured (configured: %s); add it to buildroot.targets in the worker config", cmd, target, targetNames(cfg))
		}
	}
	// Dial, not New: the worker may be building in the namespace now.
	b, err := buildroot.Dial(ctx, cfg, logger)
	if err != nil {
		return fmt.Errorf("worker chroot %s: %w", cmd, err)
	}
	defer b.Close()

	switch cmd {
	case "create", "refresh":
		targets := []string{target}
		if all {
			targets, err = pending(ctx, b, cfg, cmd)
			if err != nil {
				return err
			}
		}
		if len(targets) == 0 {
			fmt.Fprintln(stdout, "every configured target has a chroot; nothing to create")
		}
		var failed []error
		for _, name := range targets {
			if err := makeChroot(ctx, b, cmd, name, stdout, stderr); err != nil {
				if !all {
					return err
				}
				// One target's failure does not keep the others stale.
				fmt.Fprintln(stderr, err)
				failed = append(failed, err)
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("worker chroot %s --all: %d of %d targets failed", cmd, len(failed), len(targets))
		}
	case "remove":
		if err := b.Remove(ctx, target); err != nil {
			return fmt.Errorf("worker chroot remove: %w", err)
		}
		fmt.Fprintf(stdout, "%s: chroot removed (a chroot still used by a build goes when the build ends)\n", target)
	case "list":
		return list(ctx, b, cfg, jsonOut, stdout)
	}
	return nil
}

// pending lists the targets that `cmd --all` works on: all configured
// targets for refresh, those without a chroot for create.
func pending(ctx context.Context, b *buildroot.Buildroot, cfg buildroot.Config, cmd string) ([]string, error) {
	have := map[string]bool{}
	if cmd == "create" {
		infos, err := b.Targets(ctx)
		if err != nil {
			return nil, fmt.Errorf("worker chroot create --all: %w", err)
		}
		for _, i := range infos {
			have[i.Name] = true
		}
	}
	var out []string
	for _, t := range cfg.Targets {
		if !have[t.Name] {
			out = append(out, t.Name)
		}
	}
	return out, nil
}

// makeChroot creates or refreshes one target's chroot.
func makeChroot(ctx context.Context, b *buildroot.Buildroot, cmd, target string, stdout, stderr io.Writer) error {
	start := time.Now()
	var info buildroot.TargetInfo
	var err error
	if cmd == "create" {
		info, err = b.Create(ctx, target, stderr)
	} else {
		info, err = b.Refresh(ctx, target, stderr)
	}
	if err != nil {
		return fmt.Errorf("worker chroot %s: %w", cmd, err)
	}
	fmt.Fprintf(stdout, "%s: chroot %s (%s, snapshot %s) made in %s\n",
		info.Name, info.Digest, info.Format, info.Snapshot, time.Since(start).Round(time.Second))
	return nil
}

// Entry is one line of `worker chroot list`.
type Entry struct {
	Name       string `json:"name"`
	Format     string `json:"format"`
	Method     string `json:"method"`
	Configured bool   `json:"configured"`
	// Digest is empty when the target has no chroot yet.
	Digest   string    `json:"digest,omitempty"`
	Snapshot string    `json:"snapshot,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	// Retired are older chroots still used by running builds.
	Retired []string `json:"retired,omitempty"`
	// Packages are the package files the chroot was made from, kept in
	// the package cache (JSON only; none for an imported archive).
	Packages []executor.PackageFile `json:"packages,omitempty"`
}

func list(ctx context.Context, b *buildroot.Buildroot, cfg buildroot.Config, jsonOut bool, stdout io.Writer) error {
	infos, err := b.Targets(ctx)
	if err != nil {
		return fmt.Errorf("worker chroot list: %w", err)
	}
	byName := map[string]buildroot.TargetInfo{}
	for _, i := range infos {
		byName[i.Name] = i
	}
	entries := []Entry{}
	for _, t := range cfg.Targets {
		e := Entry{Name: t.Name, Format: t.Format, Method: t.Method, Configured: true}
		if i, ok := byName[t.Name]; ok {
			e.Digest, e.Snapshot, e.Created, e.Retired = i.Digest, i.Snapshot, i.Created, i.Retired
			delete(byName, t.Name)
		}
		entries = append(entries, e)
	}
	// Chroots of targets no longer configured.
	for _, i := range infos {
		if _, ok := byName[i.Name]; ok {
			entries = append(entries, Entry{Name: i.Name, Format: i.Format, Digest: i.Digest, Snapshot: i.Snapshot, Created: i.Created, Retired: i.Retired})
		}
	}
	if jsonOut {
		for i, e := range entries {
			if e.Digest == "" {
				continue
			}
			if entries[i].Packages, err = b.ChrootPackages(e.Name, e.Digest); err != nil {
				return fmt.Errorf("worker chroot list: %w", err)
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(entries); err != nil {
			return fmt.Errorf("worker chroot list: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tFORMAT\tMETHOD\tCHROOT\tCREATED\tNOTE")
	for _, e := range entries {
		digest, created, note := e.Digest, "-", ""
		if digest == "" {
			digest = "-"
			note = "no chroot: worker chroot create " + e.Name
		} else {
			created = e.Created.UTC().Format(time.RFC3339)
		}
		if !e.Configured {
			note = "not configured: worker chroot remove " + e.Name
		}
		if len(e.Retired) > 0 {
			note = fmt.Sprintf("%d older chroot(s) in use by builds", len(e.Retired))
		}
		method := e.Method
		if method == "" {
			method = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Format, method, digest, created, note)
	}
	return tw.Flush()
}

func targetNames(cfg buildroot.Config) string {
	if len(cfg.Targets) == 0 {
		return "none"
	}
	names := make([]string, len(cfg.Targets))
	for i, t := range cfg.Targets {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}

// Package push pushes published repositories to mirrors with rsync, in the
// order that keeps every mirror consistent for its readers: package files
// first (nothing deleted), then the signed indexes (swapped in together at
// the end of their transfer), and only then the removal of package files
// that no index names any more. A reader of a mirror therefore sees the old
// signed state or the new one, and every file an index names is there.
package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Mirror is one destination from the publisher's config (`mirrors:`).
type Mirror struct {
	Name string `yaml:"name"`
	// Dest is an existing rsync destination directory that receives every
	// repository under its name: rsync://host/module/path, host:/path
	// (over ssh) or a local /path.
	Dest string `yaml:"dest"`
	// PasswordFile is the rsync daemon password file, for rsync:// with
	// auth users.
	PasswordFile string `yaml:"password_file"`
}

// Validate checks a mirror entry.
func (m Mirror) Validate() error {
	if m.Name == "" || m.Dest == "" {
		return fmt.Errorf("mirror %q: name and dest are required", m.Name)
	}
	if strings.ContainsAny(m.Dest, "\n\r\x00") || strings.HasPrefix(m.Dest, "-") {
		return fmt.Errorf("mirror %s: dest %q is not an rsync destination (rsync://host/module/, host:/path or /path)", m.Name, m.Dest)
	}
	return nil
}

// indexDirs are the directories holding a repository's signed indexes:
// dists for deb (a symlink to the live generation), repodata for rpm.
var indexDirs = []string{"dists", "repodata"}

// Runner runs one rsync command; tests replace it.
type Runner func(ctx context.Context, args []string, log io.Writer) error

// RunRsync runs the real rsync.
func RunRsync(ctx context.Context, args []string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("rsync %s: exit status %d (see its output above)", strings.Join(args, " "), ee.ExitCode())
		}
		return fmt.Errorf("rsync: %w", err)
	}
	return nil
}

// Repository copies the published repository in dir (public/<repo>) to the
// mirror, under the repository's name.
func Repository(ctx context.Context, run Runner, dir string, m Mirror, log io.Writer) error {
	if err := m.Validate(); err != nil {
		return err
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("push %s: not a published repository directory (publish it first)", dir)
	}
	name := filepath.Base(dir)
	dest := strings.TrimRight(m.Dest, "/") + "/" + name + "/"
	src := strings.TrimRight(dir, "/") + "/"
	common := []string{"--recursive", "--times", "--perms", "--links", "--hard-links"}
	if m.PasswordFile != "" {
		common = append(common, "--password-file="+m.PasswordFile)
	}
	var excludes []string
	for _, d := range indexDirs {
		excludes = append(excludes, "--exclude=/"+d, "--exclude=/."+d)
	}
	// 1. Package files, nothing deleted: the live indexes keep working.
	if err := run(ctx, append(append(append([]string{}, common...), excludes...), src, dest), log); err != nil {
		return fmt.Errorf("push %s to %s (package files): %w", name, m.Name, err)
	}
	// 2. The indexes, each set made visible at the end of its transfer.
	for _, d := range indexDirs {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			continue
		}
		// Index files are small and may keep their size and second across
		// publishes: compare their content, not size and time.
		args := append(append([]string{}, common...), "--copy-links", "--checksum", "--delay-updates", "--delete-after", src+d+"/", dest+d+"/")
		if err := run(ctx, args, log); err != nil {
			return fmt.Errorf("push %s to %s (%s): %w", name, m.Name, d, err)
		}
	}
	// 3. Only now remove package files that no index names any more.
	if err := run(ctx, append(append(append([]string{}, common...), "--delete"), append(excludes, src, dest)...), log); err != nil {
		return fmt.Errorf("push %s to %s (removals): %w", name, m.Name, err)
	}
	return nil
}

package pkgbuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The host tools that read what a source repository holds -- GNU patch
// with debian/patches, pristine-tar with its delta (and the xdelta, tar
// and compressors it runs) -- do not run as root: setpriv gives them
// untrustedID as user and group, no supplementary groups, no
// capabilities (the bounding set emptied) and no_new_privs, so that
// set-uid programs cannot give root back. They see only what any user
// may; what they write goes into a scratch directory they own, which the
// worker reads back without following symlinks.

// untrustedID is the user and group the tools run as: nobody and
// nogroup on Debian.
const untrustedID = 65534

// untrustedCmd returns a command that runs name with args as
// untrustedID in dir. The worker changes into dir before dropping root,
// so dir's parents need not be open to that user. A worker that is not
// root runs the command as itself.
func untrustedCmd(ctx context.Context, dir string, env []string, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		id := strconv.Itoa(untrustedID)
		cmd = exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=" + id, "--regid=" + id, "--clear-groups",
			"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", name}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	cmd.Dir, cmd.Env = dir, env
	return cmd
}

// giveToUntrusted makes everything below dir (dir included, symlinks
// themselves) owned by untrustedID, when the worker is root.
func giveToUntrusted(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, untrustedID, untrustedID)
	})
}

// PristineTar looks for name+".delta" on the pristine-tar branch (fetched
// into the cached repository dir) and, when it is there, regenerates the
// tarball into outDir with pristine-tar. It reports whether it did.
//
// pristine-tar does not see the cache: the branch and the upstream tree
// its .id names are copied into a repository of their own in a scratch
// directory (under the worker's TMPDIR), and pristine-tar runs there
// with untrustedCmd.
func (g *gitCache) PristineTar(ctx context.Context, dir, name, outDir string) (bool, error) {
	defer g.lock(dir)()
	var ls bytes.Buffer
	if err := g.git(ctx, dir, nil, &ls, "ls-tree", "--name-only", pristineTarBranch); err != nil {
		return false, fmt.Errorf("list the pristine-tar branch: %w", err)
	}
	if !slices.Contains(strings.Split(ls.String(), "\n"), name+".delta") {
		return false, nil
	}
	fix := "; fix the branch (pristine-tar commit) or remove the delta"
	var id bytes.Buffer
	if err := g.git(ctx, dir, nil, &id, "show", pristineTarBranch+":"+name+".id"); err != nil {
		return false, badSource("the pristine-tar branch has %s.delta but no readable %s.id%s", name, name, fix)
	}
	var tree bytes.Buffer
	upstream := strings.TrimSpace(id.String())
	if !commitRE.MatchString(upstream) || g.git(ctx, dir, nil, &tree, "rev-parse", "--verify", "--quiet", upstream+"^{tree}") != nil {
		return false, badSource("the pristine-tar branch's %s.id names %q, which is not a tree or commit in the repository (push the upstream branch or tag it was made from)%s", name, truncate(upstream, 80), fix)
	}
	scratch, err := os.MkdirTemp("", "kiln-pristine-tar-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(scratch)
	if err := g.copyObjects(ctx, dir, filepath.Join(scratch, "git"), pristineTarBranch, strings.TrimSpace(tree.String())); err != nil {
		return false, err
	}
	for _, d := range []string{"tmp", "out"} {
		if err := os.Mkdir(filepath.Join(scratch, d), 0o755); err != nil {
			return false, err
		}
	}
	if err := giveToUntrusted(scratch); err != nil {
		return false, fmt.Errorf("hand the pristine-tar scratch directory to uid %d: %w", untrustedID, err)
	}
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + scratch, "GIT_DIR=" + filepath.Join(scratch, "git"), "TMPDIR=" + filepath.Join(scratch, "tmp"),
		"LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1"}
	cmd := untrustedCmd(ctx, scratch, env, "pristine-tar", "checkout", filepath.Join(scratch, "out", name))
	if out, err := cmd.CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return false, fmt.Errorf("run pristine-tar: %w", err)
		}
		return false, badSource("the pristine-tar branch has %s.delta, but pristine-tar checkout failed: %s%s", name, firstLine(lastLines(string(out))), fix)
	}
	if err := copyRegular(filepath.Join(scratch, "out", name), filepath.Join(outDir, name)); err != nil {
		return false, badSource("pristine-tar checkout of %s: %v%s", name, err, fix)
	}
	return true, nil
}

// copyObjects puts the objects reachable from refs (commits or trees) of
// the repository dir into a new bare repository at to, and points its
// pristine-tar branch where dir's is.
func (g *gitCache) copyObjects(ctx context.Context, dir, to string, refs ...string) error {
	if err := g.git(ctx, filepath.Dir(to), nil, io.Discard, "init", "--quiet", "--bare", to); err != nil {
		return err
	}
	var objects bytes.Buffer
	if err := g.git(ctx, dir, nil, &objects, append([]string{"rev-list", "--objects"}, refs...)...); err != nil {
		return err
	}
	pack, err := os.CreateTemp(filepath.Dir(to), "objects-*.pack")
	if err != nil {
		return err
	}
	defer os.Remove(pack.Name())
	defer pack.Close()
	if err := g.gitStdin(ctx, dir, &objects, nil, pack, "pack-objects", "--quiet", "--stdout"); err != nil {
		return err
	}
	if _, err := pack.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := g.gitStdin(ctx, to, pack, nil, io.Discard, "index-pack", "--stdin"); err != nil {
		return err
	}
	var branch bytes.Buffer
	if err := g.git(ctx, dir, nil, &branch, "rev-parse", "--verify", pristineTarBranch); err != nil {
		return err
	}
	return g.git(ctx, to, nil, io.Discard, "update-ref", pristineTarBranch, strings.TrimSpace(branch.String()))
}

// copyRegular copies the regular file from (not a symlink, not a
// device) to a new file to.
func copyRegular(from, to string) error {
	f, err := os.OpenFile(from, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("no regular file %s: %w", filepath.Base(from), err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", filepath.Base(from))
	}
	return writeFileFrom(to, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
}

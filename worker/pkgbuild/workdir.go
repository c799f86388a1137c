package pkgbuild

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/kiln-build/kiln/worker/executor"
)

// The work dir's files: artifacts collected, archives unpacked, files
// written and given to the build user.

// collect moves the artifacts (regular files only: a build cannot make
// the worker pick up a symlink to a host file) flat into out/.
func collect(workDir string, rules []collectRule) ([]string, error) {
	root, err := os.OpenRoot(workDir)
	if err != nil {
		return nil, fmt.Errorf("collect artifacts: %w", err)
	}
	defer root.Close()
	if err := root.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("collect artifacts: %w", err)
	}
	var names []string
	for _, r := range rules {
		dirs := []string{r.dir}
		if r.depth == 1 {
			dirs = nil
			entries, err := fs.ReadDir(root.FS(), r.dir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("collect artifacts: %w", err)
			}
			for _, e := range entries {
				if e.IsDir() {
					dirs = append(dirs, path.Join(r.dir, e.Name()))
				}
			}
		}
		for _, d := range dirs {
			entries, err := fs.ReadDir(root.FS(), d)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("collect artifacts: %w", err)
			}
			for _, e := range entries {
				if !e.Type().IsRegular() || !matchAny(r.patterns, e.Name()) {
					continue
				}
				if err := root.Rename(path.Join(d, e.Name()), path.Join(outDir, e.Name())); err != nil {
					return nil, fmt.Errorf("collect %s: %w", e.Name(), err)
				}
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// extractArchive extracts the tar file at archive into dir.
func extractArchive(what, archive, dir, strip string, keep func(string) bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer root.Close()
	return extractTar(what, f, root, strip, keep)
}

// writeFileFrom writes a file through fill, removing it on failure.
func writeFileFrom(name string, fill func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	bw := bufio.NewWriter(f)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	return nil
}

// chownTree gives the work dir to the build user, who writes the build's
// output there; only root can, and only root needs to.
func chownTree(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	staged := filepath.Join(dir, stateDir, reposDir)
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == staged {
			// Hard links to the host's repository: never give them away.
			return filepath.SkipDir
		}
		if err := os.Lchown(p, executor.BuildUID, executor.BuildGID); err != nil {
			return fmt.Errorf("give %s to the build user: %w", p, err)
		}
		return nil
	})
}

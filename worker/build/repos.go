package build

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// reposDir, in stateDir, holds local release repositories staged for a
// build: a file: URL names a host directory the buildroot cannot see, so
// its files are hard-linked (or copied) into the work dir.
const reposDir = "repos"

// stageRepositories returns the release repositories for the job as the
// buildroot sees them, staging local (file:) ones into the work dir.
func (b *Builder) stageRepositories(job executor.Job) ([]Repository, error) {
	pb := job.Build
	var out []Repository
	for i, r := range b.cfg.repositories(pb.Release, pb.Target) {
		switch {
		case r.Apt != "":
			fields := strings.Fields(r.Apt)
			for j, f := range fields {
				if dir, ok := fileURLPath(f); ok {
					uri, err := stageRepo(job.WorkDir, i, dir)
					if err != nil {
						return nil, fmt.Errorf("release repository %q of release %s: %w; check build.repositories", r.Apt, pb.Release, err)
					}
					fields[j] = uri
				}
			}
			r.Apt = strings.Join(fields, " ")
		case r.BaseURL != "":
			if dir, ok := fileURLPath(r.BaseURL); ok {
				uri, err := stageRepo(job.WorkDir, i, dir)
				if err != nil {
					return nil, fmt.Errorf("release repository %q of release %s: %w; check build.repositories", r.BaseURL, pb.Release, err)
				}
				r.BaseURL = uri
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// repositoryHosts returns the host:port pairs phase 1 fetches the release
// repositories from (executor.Step.AllowHosts); staged file: ones need none.
func repositoryHosts(repos []Repository) []string {
	var out []string
	for _, r := range repos {
		u := r.BaseURL
		if r.Apt != "" {
			u = aptSourceURI(r.Apt)
		}
		if h, ok := executor.SourceHost(u); ok && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// aptSourceURI returns the URI of a one-line apt source,
// "deb [options] URI suite [components]".
func aptSourceURI(line string) string {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return ""
	}
	rest := fields[1:]
	if strings.HasPrefix(rest[0], "[") {
		end := slices.IndexFunc(rest, func(f string) bool { return strings.HasSuffix(f, "]") })
		if end < 0 {
			return ""
		}
		rest = rest[end+1:]
	}
	if len(rest) == 0 {
		return ""
	}
	return rest[0]
}

// fileURLPath returns the directory of a file: URL.
func fileURLPath(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, "file:")
	if !ok {
		return "", false
	}
	rest = "/" + strings.TrimLeft(rest, "/")
	return path.Clean(rest), true
}

// stageRepo links the repository at dir into the work dir and returns its
// URL inside the buildroot.
func stageRepo(workDir string, i int, dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", dir)
	}
	rel := filepath.Join(stateDir, reposDir, strconv.Itoa(i))
	dst := filepath.Join(workDir, rel)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(dir, p)
		target := filepath.Join(dst, r)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			if os.Link(p, target) == nil {
				return nil
			}
			return copyFile(p, target)
		}
		return nil // symlinks and the like are not part of a repository
	})
	if err != nil {
		return "", fmt.Errorf("stage %s: %w", dir, err)
	}
	return "file://" + path.Join(executor.SandboxWorkDir, filepath.ToSlash(rel)), nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

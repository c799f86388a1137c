package pkgbuild

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/kiln-build/kiln/worker/executor"
)

// reposDir, in stateDir, holds local release repositories staged for a
// build: a file: URL names a host directory the buildroot cannot see, so
// its files are hard-linked (or copied) into the work dir.
const reposDir = "repos"

// stageRepositories returns the release repositories for the job as the
// buildroot sees them, staging local (file:) ones and their keys into the
// work dir.
func (b *Builder) stageRepositories(job executor.Job) ([]Repository, error) {
	pb := job.Build
	var out []Repository
	for i, r := range b.cfg.repositories(pb.Release, pb.Target) {
		what := r.Apt + r.BaseURL
		keyFile := r.KeyFile
		switch {
		case r.Apt != "":
			line, err := parseAptLine(r.Apt)
			if err != nil {
				return nil, fmt.Errorf("release repository %q of release %s: %w; check build.repositories", r.Apt, pb.Release, err)
			}
			if dir, ok := fileURLPath(line.uri); ok {
				uri, err := stageRepo(job.WorkDir, i, dir)
				if err != nil {
					return nil, fmt.Errorf("release repository %q of release %s: %w; check build.repositories", r.Apt, pb.Release, err)
				}
				line.uri = uri
			}
			if v, ok := line.option("signed-by"); ok && keyFile == "" && strings.HasPrefix(v, "/") {
				keyFile = v
			}
			if keyFile != "" {
				in, err := stageKey(job.WorkDir, i, keyFile)
				if err != nil {
					return nil, fmt.Errorf("key of release repository %q of release %s: %w; check build.repositories", what, pb.Release, err)
				}
				line.setOption("signed-by", in)
			}
			r.Apt = line.String()
		case r.BaseURL != "":
			if dir, ok := fileURLPath(r.BaseURL); ok {
				uri, err := stageRepo(job.WorkDir, i, dir)
				if err != nil {
					return nil, fmt.Errorf("release repository %q of release %s: %w; check build.repositories", r.BaseURL, pb.Release, err)
				}
				r.BaseURL = uri
			}
		}
		r.KeyFile = ""
		if keyFile != "" && r.BaseURL != "" {
			in, err := stageKey(job.WorkDir, i, keyFile)
			if err != nil {
				return nil, fmt.Errorf("key of release repository %q of release %s: %w; check build.repositories", what, pb.Release, err)
			}
			r.KeyFile = in
		}
		out = append(out, r)
	}
	return out, nil
}

// maxKeySize bounds a repository key file read from the worker host.
const maxKeySize = 1 << 20

// stageKey copies the OpenPGP public key(s) in the host file keyFile into
// the work dir, armored, and returns its path inside the buildroot. Only
// the public parts are written: a key file that holds a private key is
// refused, so that a wrong path never hands a secret to a build.
func stageKey(workDir string, i int, keyFile string) (string, error) {
	f, err := os.Open(keyFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeySize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", keyFile, err)
	}
	if len(data) > maxKeySize {
		return "", fmt.Errorf("%s is larger than %d bytes; give the repository's public key", keyFile, maxKeySize)
	}
	var ring openpgp.EntityList
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		ring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		ring, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return "", fmt.Errorf("%s is not an OpenPGP public key (%w); export it with gpg --armor --export", keyFile, err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return "", err
	}
	for _, e := range ring {
		if e.PrivateKey != nil {
			return "", fmt.Errorf("%s holds a private key; give the public key only (gpg --armor --export)", keyFile)
		}
		if err := e.Serialize(w); err != nil {
			return "", fmt.Errorf("%s: %w", keyFile, err)
		}
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	buf.WriteString("\n")
	rel := filepath.Join(stateDir, reposDir, strconv.Itoa(i)+"-key.asc")
	if err := os.MkdirAll(filepath.Join(workDir, stateDir, reposDir), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(workDir, rel), buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path.Join(executor.SandboxWorkDir, filepath.ToSlash(rel)), nil
}

// aptLine is a one-line apt source, "deb [options] URI suite [components]".
type aptLine struct {
	typ     string
	options []string // "name=value"
	uri     string
	rest    []string
}

func parseAptLine(s string) (*aptLine, error) {
	fields := strings.Fields(s)
	if len(fields) < 3 {
		return nil, errors.New("expected \"deb [options] URI suite [components]\"")
	}
	l := &aptLine{typ: fields[0]}
	rest := fields[1:]
	if strings.HasPrefix(rest[0], "[") {
		end := slices.IndexFunc(rest, func(f string) bool { return strings.HasSuffix(f, "]") })
		if end < 0 {
			return nil, errors.New("options [ ... ] are not closed")
		}
		opts := strings.Join(rest[:end+1], " ")
		opts = strings.TrimSuffix(strings.TrimPrefix(opts, "["), "]")
		l.options = strings.Fields(opts)
		rest = rest[end+1:]
	}
	if len(rest) < 2 {
		return nil, errors.New("expected a URI and a suite after the options")
	}
	l.uri, l.rest = rest[0], rest[1:]
	return l, nil
}

// option returns the value of option name.
func (l *aptLine) option(name string) (string, bool) {
	for _, o := range l.options {
		if k, v, ok := strings.Cut(o, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// setOption sets option name, replacing any value it had.
func (l *aptLine) setOption(name, value string) {
	l.options = slices.DeleteFunc(l.options, func(o string) bool {
		k, _, _ := strings.Cut(o, "=")
		return k == name
	})
	l.options = append(l.options, name+"="+value)
}

func (l *aptLine) String() string {
	parts := []string{l.typ}
	if len(l.options) > 0 {
		parts = append(parts, "["+strings.Join(l.options, " ")+"]")
	}
	return strings.Join(append(append(parts, l.uri), l.rest...), " ")
}

// unverified says why the buildroot would take repository r's packages
// without checking a signature, or "" when they are verified.
func unverified(r Repository) string {
	if r.Apt != "" {
		if l, err := parseAptLine(r.Apt); err == nil {
			if v, _ := l.option("trusted"); v == "yes" {
				return "[trusted=yes] turns off signature checks"
			}
		}
		return ""
	}
	if r.KeyFile == "" {
		return "no key_file: dnf cannot check its signatures"
	}
	return ""
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

// aptSourceURI returns the URI of a one-line apt source.
func aptSourceURI(line string) string {
	l, err := parseAptLine(line)
	if err != nil {
		return ""
	}
	return l.uri
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
		case d.Type()&fs.ModeSymlink != 0:
			// The publisher's dists -> .dists/<generation>: a relative link
			// that stays in the repository is kept; any other is dropped.
			to, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(to) || !filepath.IsLocal(filepath.Join(filepath.Dir(r), to)) {
				return nil
			}
			return os.Symlink(to, target)
		}
		return nil // devices and the like are not part of a repository
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

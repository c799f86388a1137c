package pkgbuild

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// cleanMember returns the cleaned relative path of an archive member, or a
// *badSourceError when it would land outside the tree.
func cleanMember(what, name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return "", badSource("%s: member %q escapes the source tree (absolute or empty path); remove it", what, name)
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") || hasDotDot(name) {
		return "", badSource("%s: member %q escapes the source tree (.. path); remove it", what, name)
	}
	return clean, nil
}

func hasDotDot(name string) bool {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// checkSymlink rejects a symlink at name whose target leaves the tree.
func checkSymlink(what, name, target string) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return badSource("%s: symlink %q points outside the source tree (to %q); make it relative and inside the tree", what, name, target)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return badSource("%s: symlink %q points outside the source tree (to %q); make it point inside the tree", what, name, target)
	}
	return nil
}

// nextMember reads the next tar member that is a file-system entry and
// checks it: a clean relative name, and a symlink that stays inside the
// tree. Every member is checked, also those the caller leaves out. It
// returns io.EOF at the end of the archive.
func nextMember(what string, tr *tar.Reader) (*tar.Header, string, error) {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, "", io.EOF
		}
		if err != nil {
			return nil, "", badSource("%s: unreadable archive: %v", what, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanMember(what, hdr.Name)
		if err != nil {
			return nil, "", err
		}
		if hdr.Typeflag == tar.TypeSymlink {
			if err := checkSymlink(what, name, hdr.Linkname); err != nil {
				return nil, "", err
			}
		}
		return hdr, name, nil
	}
}

// extractTar unpacks the tar stream r into root, refusing members that
// would land outside it. keep, when set, selects the members (by cleaned
// path) to extract; strip is removed from the front of every path first.
func extractTar(what string, r io.Reader, root *os.Root, strip string, keep func(string) bool) error {
	tr := tar.NewReader(r)
	for {
		hdr, name, err := nextMember(what, tr)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if strip != "" {
			if name == strip {
				continue
			}
			rest, ok := strings.CutPrefix(name, strip+"/")
			if !ok {
				continue
			}
			name = rest
			// The link now sits higher up: check its target again.
			if hdr.Typeflag == tar.TypeSymlink {
				if err := checkSymlink(what, name, hdr.Linkname); err != nil {
					return err
				}
			}
		}
		if keep != nil && !keep(name) {
			continue
		}
		if name == "." {
			continue
		}
		if err := checkParents(root, what, name); err != nil {
			return err
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return wrapTreeErr(what, name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return wrapTreeErr(what, name, err)
			}
		case tar.TypeReg:
			if err := removeIfLink(root, name); err != nil {
				return wrapTreeErr(what, name, err)
			}
			mode := fs.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return wrapTreeErr(what, name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return wrapTreeErr(what, name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return wrapTreeErr(what, name, err)
			}
		case tar.TypeSymlink:
			if err := removeIfLink(root, name); err != nil {
				return wrapTreeErr(what, name, err)
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return wrapTreeErr(what, name, err)
			}
		default:
			return badSource("%s: member %q has unsupported type %q; only files, directories and symlinks are allowed", what, name, string(hdr.Typeflag))
		}
	}
}

// checkParents refuses a member that lies under a symlink already in the
// tree: a link's target was checked where the link is, not where a member
// written through it lands.
func checkParents(root *os.Root, what, name string) error {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if fi, err := root.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return badSource("%s: member %q lies under the symlink %q; an archive may not write through its own links", what, name, dir)
		}
	}
	return nil
}

// removeIfLink removes a symlink at name so that writing there never
// follows it.
func removeIfLink(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return root.Remove(name)
	}
	return nil
}

// wrapTreeErr turns an escape caught by os.Root into a bad-source error
// and anything else into an infrastructure error.
func wrapTreeErr(what, name string, err error) error {
	if strings.Contains(err.Error(), "path escapes from parent") {
		return badSource("%s: %q would be written outside the source tree through a symlink; remove the symlink", what, name)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(err, fs.ErrExist) {
		return badSource("%s: %q: %v", what, name, err)
	}
	return fmt.Errorf("%s: write %s: %w", what, name, err)
}

// writeTarball writes the tar stream r as a gzip-compressed tarball whose
// members are under prefix/, leaving out members for which skip is true.
// The output depends only on the input, so it is the same on every worker.
func writeTarball(what string, r io.Reader, w io.Writer, prefix string, skip func(string) bool) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(r)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: prefix + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for {
		hdr, name, err := nextMember(what, tr)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if skip != nil && skip(name) {
			continue
		}
		out := &tar.Header{
			Typeflag: hdr.Typeflag,
			Name:     prefix + "/" + name,
			Linkname: hdr.Linkname,
			Size:     hdr.Size,
			Mode:     hdr.Mode,
			ModTime:  hdr.ModTime,
			Uname:    "root",
			Gname:    "root",
			Format:   tar.FormatPAX,
		}
		if hdr.Typeflag == tar.TypeDir {
			out.Name += "/"
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

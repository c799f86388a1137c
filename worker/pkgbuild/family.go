package pkgbuild

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Format names a package family.
type Format string

// The package families Kiln builds.
const (
	FormatDeb Format = "deb"
	FormatRPM Format = "rpm"
)

// family is one package family's part of a build: it finds its recipe in
// a packaging tree, prepares the sources on the host and plans the steps
// the builder runs in the buildroot (evaluation, source package,
// dependencies, build, check, collect). Adding a family (Alpine's apk,
// Arch's pacman) means adding one implementation to families.
type family interface {
	format() Format
	// find returns where the family's recipe is in the packaging tree,
	// "" when the tree has none. dists are the directories that may hold
	// a distribution's packaging; separate says the tree is a packaging
	// repository of its own.
	find(root *os.Root, separate bool, dists []string) (string, error)
	// describe names the recipe found at where, for messages.
	describe(where string) string
	// plan prepares the sources and plans the build.
	plan(ctx context.Context, b *Builder, in prepInput, where string) (*plan, error)
}

// families in the order their recipes are looked for.
var families = []family{debFamily{}, rpmFamily{}}

// debFamily builds Debian and Ubuntu packages: debian/ read by
// dpkg-source, dependencies by apt, dpkg-buildpackage.
type debFamily struct{}

func (debFamily) format() Format { return FormatDeb }

// find returns the directory holding debian/: "." or a distribution's.
func (debFamily) find(root *os.Root, separate bool, dists []string) (string, error) {
	cands := []string{"."}
	if separate {
		cands = append(cands, dists...)
	}
	for _, d := range cands {
		if !isDirIn(root, path.Join(d, "debian")) {
			continue
		}
		if !isFileIn(root, path.Join(d, "debian/changelog")) || !isFileIn(root, path.Join(d, "debian/control")) {
			return "", fmt.Errorf("%s/debian has no regular changelog and control files; add them", d)
		}
		return d, nil
	}
	return "", nil
}

func (debFamily) describe(where string) string { return path.Join(where, "debian") + "/" }

func (debFamily) plan(ctx context.Context, b *Builder, in prepInput, where string) (*plan, error) {
	return b.prepareDeb(ctx, in, where)
}

// rpmFamily builds RPM packages: the spec evaluated by the buildroot's
// rpm, BuildRequires installed by the host's dnf, rpmbuild.
type rpmFamily struct{}

func (rpmFamily) format() Format { return FormatRPM }

// find returns the path of the one spec file at the top, in a
// distribution's directory or in rpm/.
func (rpmFamily) find(root *os.Root, _ bool, dists []string) (string, error) {
	for _, d := range append(append([]string{"."}, dists...), "rpm") {
		if !isDirIn(root, d) {
			continue
		}
		entries, err := fs.ReadDir(root.FS(), d)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", d, err)
		}
		var specs []string
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".spec") && e.Type().IsRegular() {
				specs = append(specs, path.Join(d, e.Name()))
			}
		}
		if len(specs) > 1 {
			return "", fmt.Errorf("more than one spec file in %s (%s); keep one", d, strings.Join(specs, ", "))
		}
		if len(specs) == 1 {
			return specs[0], nil
		}
	}
	return "", nil
}

func (rpmFamily) describe(where string) string { return where }

func (rpmFamily) plan(_ context.Context, b *Builder, in prepInput, where string) (*plan, error) {
	return b.prepareRPM(in, where)
}

func isDirIn(root *os.Root, p string) bool {
	fi, err := root.Lstat(p)
	return err == nil && fi.IsDir()
}

func isFileIn(root *os.Root, p string) bool {
	fi, err := root.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

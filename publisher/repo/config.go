// Package repo keeps a publisher's repositories: the packages in each (in
// an SQLite store, with each package's index metadata computed once when it
// is included), the content-addressed files, and the atomic publication of
// signed Debian and RPM repositories and of immutable snapshots.
//
// Layout below the root directory:
//
//	state.db                   repositories, packages, snapshots, requests
//	objects/ab/abcdef…         every included file, by sha256
//	tmp/0 … tmp/f              files being received or read, renamed (or, unnamed, linked) into objects/
//	public/<repo>/pool/…       deb pool (hard links to objects)
//	public/<repo>/dists        symlink to .dists/<generation>: switched in one rename
//	public/<repo>/Packages/…   rpm files (hard links), repodata/ switched by publisher/rpm
//	public/snapshots/<name>/   a published snapshot, same shape
package repo

import (
	"fmt"
	"regexp"
	"time"
)

// Formats.
const (
	FormatDeb = "deb"
	FormatRPM = "rpm"
)

// Config describes one repository.
type Config struct {
	Name   string `yaml:"name" json:"name"`
	Format string `yaml:"format" json:"format"`
	// Deb only.
	Suite         string        `yaml:"suite" json:"suite,omitempty"`
	Codename      string        `yaml:"codename" json:"codename,omitempty"`
	Component     string        `yaml:"component" json:"component,omitempty"`
	Origin        string        `yaml:"origin" json:"origin,omitempty"`
	Label         string        `yaml:"label" json:"label,omitempty"`
	Description   string        `yaml:"description" json:"description,omitempty"`
	Architectures []string      `yaml:"architectures" json:"architectures,omitempty"`
	ValidFor      time.Duration `yaml:"valid_for" json:"valid_for,omitempty"`
	Compressions  []string      `yaml:"compressions" json:"compressions,omitempty"`
	// Contents adds Contents-<arch> indexes (for apt-file) to each
	// publish; off by default, because the first publish with it reads
	// every package's data.
	Contents bool `yaml:"contents" json:"contents,omitempty"`
	// XZBlockSize, in bytes of index text, writes each .xz index as one
	// stream of blocks of about this size, cut at stanzas so that a
	// publish recompresses only the blocks whose stanzas changed (the
	// blocks are kept in xzblocks/ below the root). 0, the default,
	// writes one block, the smallest file; 4 MiB blocks make Packages.xz
	// about 3% larger, 2 MiB about 5%, 1 MiB about 7.5% (see README).
	XZBlockSize int `yaml:"xz_block_size" json:"xz_block_size,omitempty"`
	// RPM only: "header+payload" (the default) or "header"; see
	// rpm.Signatures.
	RPMSignatures string `yaml:"rpm_signatures" json:"rpm_signatures,omitempty"`
	// BaseOf names the repository whose base this repository is (see
	// BaseName); empty for every other repository. The publisher sets it,
	// a config file cannot.
	BaseOf string `yaml:"-" json:"base_of,omitempty"`
}

var (
	safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	// Release file values must stay on one line.
	oneLine = regexp.MustCompile(`^[^\n\r]*$`)
)

// CheckName validates a repository or snapshot name, which becomes a path.
func CheckName(what, name string) error {
	if !safeName.MatchString(name) || len(name) > 128 {
		return fmt.Errorf("%s name %q is not allowed: use letters, digits, '.', '_', '+' and '-', starting with a letter or digit", what, name)
	}
	return nil
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if f, err := familyOf(c.Format); err == nil {
		c = f.defaults(c)
	}
	return c
}

// Validate checks c; it names the bad value and what to do.
func (c Config) Validate() error {
	if err := CheckName("repository", c.Name); err != nil {
		return err
	}
	if c.Name == "snapshots" {
		return fmt.Errorf("repository name %q is reserved for published snapshots (public/snapshots/); choose another", c.Name)
	}
	if c.Format == "" {
		return fmt.Errorf("repository %s: no format: set format %s (--format)", c.Name, orList(formatNames()))
	}
	f, err := familyOf(c.Format)
	if err != nil {
		return fmt.Errorf("repository %s: %w", c.Name, err)
	}
	return f.validate(c)
}

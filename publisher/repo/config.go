// Package repo keeps a publisher's repositories: the packages in each (in
// an SQLite store, with each package's index metadata computed once when it
// is included), the content-addressed files, and the atomic publication of
// signed Debian and RPM repositories and of immutable snapshots.
//
// Layout below the root directory:
//
//	state.db                   repositories, packages, snapshots, requests
//	objects/ab/abcdef…         every included file, by sha256
//	tmp/0 … tmp/f              files being received or read, renamed into objects/
//	public/<repo>/pool/…       deb pool (hard links to objects)
//	public/<repo>/dists        symlink to .dists/<generation>: switched in one rename
//	public/<repo>/Packages/…   rpm files (hard links), repodata/ switched by publisher/rpm
//	public/snapshots/<name>/   a published snapshot, same shape
package repo

import (
	"fmt"
	"regexp"
	"time"

	"github.com/kiln-build/kiln/publisher/rpm"
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
	if c.Format == FormatDeb {
		if c.Component == "" {
			c.Component = "main"
		}
		if c.Codename == "" {
			c.Codename = c.Suite
		}
		if c.Compressions == nil {
			c.Compressions = []string{"gz", "xz"}
		}
		if c.Origin == "" {
			c.Origin = "Kiln"
		}
		if c.Label == "" {
			c.Label = c.Origin
		}
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
	switch c.Format {
	case FormatDeb:
		if c.Suite == "" {
			return fmt.Errorf("repository %s: deb repositories need a suite (--suite or suite:)", c.Name)
		}
		for _, f := range [][2]string{{"suite", c.Suite}, {"codename", c.Codename}, {"component", c.Component}} {
			if err := CheckName(f[0], f[1]); err != nil {
				return fmt.Errorf("repository %s: %w", c.Name, err)
			}
		}
		for _, f := range [][2]string{{"origin", c.Origin}, {"label", c.Label}, {"description", c.Description}} {
			if !oneLine.MatchString(f[1]) {
				return fmt.Errorf("repository %s: %s must be one line", c.Name, f[0])
			}
		}
		for _, a := range c.Architectures {
			if err := CheckName("architecture", a); err != nil {
				return fmt.Errorf("repository %s: %w", c.Name, err)
			}
		}
		for _, z := range c.Compressions {
			if z != "gz" && z != "xz" {
				return fmt.Errorf("repository %s: compression %q is not supported: use gz and/or xz", c.Name, z)
			}
		}
		if c.ValidFor < 0 {
			return fmt.Errorf("repository %s: valid_for %s is negative", c.Name, c.ValidFor)
		}
	case FormatRPM:
		if c.Contents {
			return fmt.Errorf("repository %s: contents is for deb repositories (Contents-<arch> indexes); remove it from this rpm repository", c.Name)
		}
		if _, err := rpm.ParseSignatures(c.RPMSignatures); err != nil {
			return fmt.Errorf("repository %s: %w", c.Name, err)
		}
	case "":
		return fmt.Errorf("repository %s: no format: set format deb or rpm (--format)", c.Name)
	default:
		return fmt.Errorf("repository %s: format %q is not supported: use deb or rpm", c.Name, c.Format)
	}
	return nil
}

package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/publisher/rpm"
)

// family is one package family's part of a repository: its settings,
// which files it accepts and how it reads one into a row, where the
// package files lie in a published tree, and how it writes and signs the
// indexes. Everything else (the store, the pool, snapshots, bases) is the
// same for every family. Adding a family (Alpine's apk, Arch's pacman)
// means adding one implementation to families.
type family interface {
	// format is the name a repository's Config.Format gives.
	format() string
	// defaults fills the family's unset settings of c.
	defaults(c Config) Config
	// validate checks the family's settings of c, naming the bad value.
	validate(c Config) error
	// base adjusts b, the configuration of the base of repository of.
	base(b, of Config) Config
	// extensions are the file name extensions the family accepts.
	extensions() []string
	// read reads one input with one of the extensions into a row (and
	// temporary store files). signer signs a package as it enters, for
	// families that sign packages (signsOnInclude).
	read(ctx context.Context, s *Store, in Input, cfg Config, resolve Resolver, signer Signer) (*row, error)
	// signsOnInclude says an include needs the signing key.
	signsOnInclude() bool
	// poolTop is the directory, in a published tree, below which the
	// package files lie.
	poolTop() string
	// needsMeta says publish reads each row's stored metadata.
	needsMeta() bool
	// publish writes the signed indexes of rows (read from src) below
	// dir and makes them live at once. generation names the index set
	// where the family keeps generations, "" otherwise.
	publish(ctx context.Context, s *Store, dir string, cfg Config, src rowSource, rows []*row, signer Signer) (generation string, err error)
}

// families in the order their names and extensions are listed in messages.
var families = []family{debFamily{}, rpmFamily{}}

// familyOf returns the family of format.
func familyOf(format string) (family, error) {
	for _, f := range families {
		if f.format() == format {
			return f, nil
		}
	}
	return nil, fmt.Errorf("format %q is not supported: use %s", format, orList(formatNames()))
}

func formatNames() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.format())
	}
	return out
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// SignsOnInclude says an include into a repository of cfg needs the
// signing key (rpm packages are signed as they enter).
func SignsOnInclude(cfg Config) bool {
	f, err := familyOf(cfg.Format)
	return err == nil && f.signsOnInclude()
}

// debFamily keeps Debian repositories: pool/ and dists/ with a signed
// Release and InRelease, switched in one rename of dists.
type debFamily struct{}

func (debFamily) format() string { return FormatDeb }

func (debFamily) defaults(c Config) Config {
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
	return c
}

func (debFamily) validate(c Config) error {
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
	if c.XZBlockSize != 0 {
		if c.XZBlockSize < minXZBlockSize || c.XZBlockSize > maxXZBlockSize {
			return fmt.Errorf("repository %s: xz_block_size %d is out of range: use 0 (one block) or %d to %d bytes, e.g. 4194304 (4 MiB)", c.Name, c.XZBlockSize, minXZBlockSize, maxXZBlockSize)
		}
		if !slices.Contains(c.Compressions, "xz") {
			return fmt.Errorf("repository %s: xz_block_size %d is set but compressions %v has no xz: add xz or remove xz_block_size", c.Name, c.XZBlockSize, c.Compressions)
		}
	}
	return nil
}

// The range of xz_block_size: blocks below a few KiB compress badly, and
// one above 256 MiB is as good as one block.
const (
	minXZBlockSize = 1 << 10
	maxXZBlockSize = 256 << 20
)

func (debFamily) base(b, of Config) Config {
	b.Label = of.Label + " base"
	b.Description = "Base of " + of.Name + ": the upstream packages its buildroots installed"
	if of.Description != "" {
		b.Description += " (" + of.Description + ")"
	}
	return b
}

func (debFamily) extensions() []string { return []string{".deb", ".udeb", ".dsc"} }

func (debFamily) read(_ context.Context, s *Store, in Input, cfg Config, resolve Resolver, _ Signer) (*row, error) {
	if ext := path.Ext(in.Name); ext != ".dsc" {
		return s.readBinary(in, ext == ".udeb", cfg)
	}
	if resolve == nil {
		dir := filepath.Dir(in.Path)
		resolve = func(name string) (string, bool) {
			p := filepath.Join(dir, name)
			_, err := os.Stat(p)
			return p, err == nil
		}
	}
	return s.readDSC(in, resolve, cfg)
}

func (debFamily) signsOnInclude() bool { return false }
func (debFamily) poolTop() string      { return "pool" }
func (debFamily) needsMeta() bool      { return false }

func (debFamily) publish(ctx context.Context, s *Store, dir string, cfg Config, src rowSource, rows []*row, signer Signer) (string, error) {
	return s.publishDeb(ctx, dir, cfg, src, rows, signer)
}

// rpmFamily keeps RPM repositories: Packages/ with every package signed as
// it enters, and repodata/ with a signed repomd.xml, switched by
// publisher/rpm.
type rpmFamily struct{}

func (rpmFamily) format() string { return FormatRPM }

func (rpmFamily) defaults(c Config) Config { return c }

func (rpmFamily) validate(c Config) error {
	if c.Contents {
		return fmt.Errorf("repository %s: contents is for deb repositories (Contents-<arch> indexes); remove it from this rpm repository", c.Name)
	}
	if c.XZBlockSize != 0 {
		return fmt.Errorf("repository %s: xz_block_size is for deb repositories (Packages.xz, Sources.xz); remove it from this rpm repository", c.Name)
	}
	if _, err := rpm.ParseSignatures(c.RPMSignatures); err != nil {
		return fmt.Errorf("repository %s: %w", c.Name, err)
	}
	return nil
}

func (rpmFamily) base(b, _ Config) Config { return b }

func (rpmFamily) extensions() []string { return []string{".rpm"} }

func (rpmFamily) read(ctx context.Context, s *Store, in Input, cfg Config, _ Resolver, signer Signer) (*row, error) {
	return s.readRPM(ctx, in, signer, cfg)
}

func (rpmFamily) signsOnInclude() bool { return true }
func (rpmFamily) poolTop() string      { return "Packages" }
func (rpmFamily) needsMeta() bool      { return true }

func (rpmFamily) publish(ctx context.Context, s *Store, dir string, _ Config, _ rowSource, rows []*row, signer Signer) (string, error) {
	pkgs := make([]*rpm.Package, 0, len(rows))
	for _, r := range rows {
		p := &rpm.Package{}
		if err := json.Unmarshal([]byte(r.meta), p); err != nil {
			return "", fmt.Errorf("read metadata of %s: %w", r.name, err)
		}
		pkgs = append(pkgs, p)
	}
	return "", rpm.WriteRepodata(ctx, dir, pkgs, rpm.RepodataOptions{Signer: signer, Time: s.now()})
}

package repo

import (
	"context"
	"errors"
	"fmt"
)

// A repository's base is every upstream package its builds' buildroots
// installed (the chroot's own packages and every build dependency), kept at
// the bytes used so that the release can be rebuilt from itself alone.
//
// The base of repository R is a repository of its own beside R, named
// BaseName(R) ("R-base"): created on first use, with R's format, suite,
// codename, component, architectures, compressions and rpm signatures, a
// Label and Description saying whose base it is, and BaseOf set to R. It
// is published (public/R-base/), signed, pushed to mirrors, snapshotted and
// collected like any repository, so apt and dnf use it as a source of its
// own:
//
//	deb [signed-by=/etc/apt/keyrings/mos.asc] http://mirror/mos-9.0-bookworm-base bookworm main
//
// A package in the base obeys the rule of every repository: the same name,
// version and architecture with other bytes is refused, naming both
// digests. A package that is in R and in its base (a release's own package
// that a later build installed) is stored once: objects are addressed by
// sha256.

// BaseSuffix ends the name of every base repository.
const BaseSuffix = "-base"

// BaseName returns the name of repository name's base.
func BaseName(name string) string { return name + BaseSuffix }

// ErrBase is wrapped when a repository cannot have, or cannot be, a base:
// the base's name is taken by another repository, or the repository is a
// base itself.
var ErrBase = errors.New("base repository not possible")

// baseConfig derives the configuration of the base of c.
func baseConfig(c Config) Config {
	b := c
	b.Name = BaseName(c.Name)
	b.BaseOf = c.Name
	if f, err := familyOf(c.Format); err == nil {
		b = f.base(b, c)
	}
	return b
}

// EnsureBase returns the configuration of repository name's base, creating
// the base when it does not exist yet and bringing its configuration in
// line with name's when it does.
func (s *Store) EnsureBase(ctx context.Context, name string) (Config, error) {
	cfg, err := s.Repo(ctx, name)
	if err != nil {
		return Config{}, err
	}
	if cfg.BaseOf != "" {
		return Config{}, fmt.Errorf("%w: repository %s is the base of %s and has no base of its own: give --repo %s", ErrBase, name, cfg.BaseOf, cfg.BaseOf)
	}
	b := baseConfig(cfg).WithDefaults()
	if err := b.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: the base of repository %s: %w", ErrBase, name, err)
	}
	old, err := s.Repo(ctx, b.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		s.log.Info("base repository created", "repository", name, "base", b.Name)
	case err != nil:
		return Config{}, err
	case old.BaseOf != name:
		return Config{}, fmt.Errorf("%w: the base of repository %s would be %s, but a repository of that name exists and is not its base: rename that repository", ErrBase, name, b.Name)
	}
	if err := s.putRepo(ctx, b); err != nil {
		return Config{}, err
	}
	return b, nil
}

// Base returns the configuration of repository name's base, which exists
// once a base package was included.
func (s *Store) Base(ctx context.Context, name string) (Config, error) {
	cfg, err := s.Repo(ctx, name)
	if err != nil {
		return Config{}, err
	}
	if cfg.BaseOf != "" {
		return Config{}, fmt.Errorf("%w: repository %s is the base of %s and has no base of its own: give --repo %s", ErrBase, name, cfg.BaseOf, cfg.BaseOf)
	}
	b, err := s.Repo(ctx, BaseName(name))
	if errors.Is(err, ErrNotFound) {
		return Config{}, fmt.Errorf("repository %s has no base yet: %w: it is made when the first base package is included (publisher include --base, or a build's base/ artifacts)", name, ErrNotFound)
	}
	if err != nil {
		return Config{}, err
	}
	if b.BaseOf != name {
		return Config{}, fmt.Errorf("%w: repository %s is not the base of %s", ErrBase, b.Name, name)
	}
	return b, nil
}

package fleet

import (
	"fmt"
	"maps"
	"slices"

	"github.com/kiln-build/kiln/coordinator/job"
)

// Release configures how builds of one release are versioned.
type Release struct {
	// DebSuffix and RPMSuffix are patterns with {revision}, e.g.
	// "~mos9.0+{revision}" and ".mos9.0.{revision}".
	DebSuffix string `yaml:"deb_suffix"`
	RPMSuffix string `yaml:"rpm_suffix"`
	// Formats maps target names to deb or rpm.
	Targets map[string]string `yaml:"targets"`
	// Profiles and BuildOptions (DEB_BUILD_PROFILES, DEB_BUILD_OPTIONS)
	// apply to the release's builds that name none of their own;
	// PerTarget replaces them for one target.
	Profiles     []string               `yaml:"profiles"`
	BuildOptions []string               `yaml:"build_options"`
	PerTarget    map[string]BuildConfig `yaml:"per_target"`
}

// BuildConfig is the profiles and build options of one target's builds.
type BuildConfig struct {
	Profiles     []string `yaml:"profiles"`
	BuildOptions []string `yaml:"build_options"`
}

// BuildDefaults returns the profiles and options a build of target gets
// when it names none: the target's own, else the release's.
func (r Release) BuildDefaults(target string) (profiles, options []string) {
	profiles, options = r.Profiles, r.BuildOptions
	if t, ok := r.PerTarget[target]; ok {
		if t.Profiles != nil {
			profiles = t.Profiles
		}
		if t.BuildOptions != nil {
			options = t.BuildOptions
		}
	}
	return slices.Clone(profiles), slices.Clone(options)
}

// Validate checks the release's settings; errors name the setting.
func (r Release) Validate(name string) error {
	for t, f := range r.Targets {
		if f != "deb" && f != "rpm" {
			return fmt.Errorf("release %s target %s: format %q: use deb or rpm", name, t, f)
		}
	}
	for t := range r.PerTarget {
		if _, ok := r.Targets[t]; !ok {
			return fmt.Errorf("release %s per_target: %q is not one of its targets", name, t)
		}
	}
	for _, t := range append([]string{""}, slices.Sorted(maps.Keys(r.PerTarget))...) {
		p, o := r.BuildDefaults(t)
		b := job.Build{Profiles: p, Options: o}
		if err := b.CheckProfiles(); err != nil {
			where := "release " + name
			if t != "" {
				where += " per_target " + t
			}
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

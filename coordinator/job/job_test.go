package job

import (
	"fmt"
	"strings"
	"testing"
)

func build() *Build {
	return &Build{Release: "mos-9.0", Target: "bookworm-amd64", Package: "nova", Recipe: "deb",
		Sources: []Source{
			{URL: "ssh://gerrit/mos/openstack/nova", Commit: strings.Repeat("a", 40), Role: "code"},
			{URL: "ssh://gerrit/mos/openstack-build/nova", Commit: strings.Repeat("b", 40), Role: "packaging"},
		}}
}

func TestBuildKey(t *testing.T) {
	t.Parallel()
	base := build().Key()
	// Only sources, release, target, package and recipe count: the
	// revision, publish flag and pinned build dependencies do not, so a
	// changed build dependency never makes a new key.
	same := build()
	same.Revision, same.VersionSuffix, same.Publish = 7, "~mos9.0+7", true
	same.Pinned = []Package{{Name: "gcc", Version: "13"}}
	same.Sources[0], same.Sources[1] = same.Sources[1], same.Sources[0]
	same.Sources[0].Ref = "refs/changes/1/1/1"
	if same.Key() != base {
		t.Fatal("key depends on something besides sources, target and recipe")
	}
	for name, mod := range map[string]func(*Build){
		"commit":  func(b *Build) { b.Sources[0].Commit = strings.Repeat("c", 40) },
		"target":  func(b *Build) { b.Target = "focal-amd64" },
		"recipe":  func(b *Build) { b.Recipe = "deb-nocheck" },
		"release": func(b *Build) { b.Release = "mos-10.0" },
		"url":     func(b *Build) { b.Sources[1].URL = "ssh://gerrit/other" },
		"role":    func(b *Build) { b.Sources[0].Role = "combined" },
		"profile": func(b *Build) { b.Profiles = []string{"nocheck"} },
		"option":  func(b *Build) { b.Options = []string{"parallel=4"} },
	} {
		b := build()
		mod(b)
		if b.Key() == base {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
}

func TestBuildKeyProfilesAndOptions(t *testing.T) {
	t.Parallel()
	// A build without them keeps the key it always had (kiln-build-key-v1
	// over release, target, package, recipe and the sources).
	if got, want := build().Key(), "26d3078216d1f39e623aa0c597060d46e48243ccabe7af1dc67d77d5cb12b9a4"; got != want {
		t.Fatalf("key of a build without profiles or options = %s, want %s as before", got, want)
	}
	a, b := build(), build()
	a.Profiles, a.Options = []string{"nocheck", "nodoc"}, []string{"parallel=4", "nostrip"}
	b.Profiles, b.Options = []string{"nodoc", "nocheck"}, []string{"nostrip", "parallel=4"}
	if a.Key() != b.Key() {
		t.Error("the order of profiles or options changes the key")
	}
	c := build()
	c.Profiles, c.Options = []string{"nocheck", "nodoc", "parallel=4", "nostrip"}, nil
	if c.Key() == a.Key() {
		t.Error("profiles and options are not told apart in the key")
	}
	for _, tc := range []struct {
		mod  func(*Build)
		want string
	}{
		{func(b *Build) { b.Profiles = []string{"no check"} }, `build profile "no check"`},
		{func(b *Build) { b.Options = []string{"parallel=$(rm)"} }, `build option "parallel=$(rm)"`},
	} {
		b := build()
		tc.mod(b)
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want %q", err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Spec{Kind: Command, Command: []string{"make"}, Labels: map[string]string{"os": "linux"}, ArtifactGlobs: []string{"out/*.deb"}, Env: []string{"A=b"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		mod  func(*Spec)
		want string
	}{
		"nul":         {func(s *Spec) { s.Command = []string{"a\x00b"} }, "NUL"},
		"env":         {func(s *Spec) { s.Env = []string{"NOEQUALS"} }, "KEY=VALUE"},
		"glob escape": {func(s *Spec) { s.ArtifactGlobs = []string{"a/../../x"} }, "escapes"},
		"bad glob":    {func(s *Spec) { s.ArtifactGlobs = []string{"["} }, "syntax"},
		"label":       {func(s *Spec) { s.Labels = map[string]string{"os": "linux\nx"} }, "letters"},
		"both":        {func(s *Spec) { s.Build = build() }, "choose one"},
		"build no src": {func(s *Spec) {
			s.Kind, s.Command, s.Build = PackageBuild, nil, &Build{Release: "r", Target: "t", Package: "p"}
		}, "0 sources"},
		"three srcs": {func(s *Spec) {
			b := build()
			b.Sources = append(b.Sources, b.Sources[0])
			s.Kind, s.Command, s.Build = PackageBuild, nil, b
		}, "3 sources"},
		"bad role": {func(s *Spec) {
			b := build()
			b.Sources[0].Role = "docs"
			s.Kind, s.Command, s.Build = PackageBuild, nil, b
		}, `role "docs"`},
		"url newline": {func(s *Spec) {
			b := build()
			b.Sources[0].URL = "x\ny"
			s.Kind, s.Command, s.Build = PackageBuild, nil, b
		}, "control characters"},
	}
	for name, tc := range cases {
		s := ok
		s.Labels = map[string]string{"os": "linux"}
		tc.mod(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// An error about a value quotes a few dozen bytes of it, never megabytes.
func TestValidateDoesNotEchoLargeInput(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("y", 3<<20)
	for name, s := range map[string]Spec{
		"env without =":   {Kind: Command, Command: []string{"true"}, Env: []string{big}},
		"NUL in argument": {Kind: Command, Command: []string{"true", big[:100<<10] + "\x00"}},
		"long label":      {Kind: Command, Command: []string{"true"}, Labels: map[string]string{"os": big}},
		"bad glob":        {Kind: Command, Command: []string{"true"}, ArtifactGlobs: []string{"[" + big}},
	} {
		err := s.Validate()
		if err == nil || len(err.Error()) > 300 {
			t.Errorf("%s: error of %d bytes: %.200v", name, len(fmt.Sprint(err)), err)
		}
	}
}

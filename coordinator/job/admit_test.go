package job

import (
	"errors"
	"strings"
	"testing"
)

func TestReleasesCheck(t *testing.T) {
	t.Parallel()
	rels := Releases{
		"mos-9.0":  {"bookworm-amd64": "deb", "centos7-x86_64": "rpm"},
		"mos-10.0": {"trixie-amd64": "deb"},
	}
	okDeb := build()
	okDeb.Target = "bookworm-amd64"
	if err := rels.Check(okDeb); err != nil {
		t.Fatalf("a configured release and target: %v", err)
	}
	okRPM := build()
	okRPM.Target, okRPM.Package = "centos7-x86_64", "Python_Foo"
	if err := rels.Check(okRPM); err != nil {
		t.Fatalf("an rpm name with capitals and _: %v", err)
	}
	cases := map[string]struct {
		mod  func(*Build)
		want []string
	}{
		"unknown release": {func(b *Build) { b.Release = "mos-9.1" }, []string{`release "mos-9.1"`, "mos-10.0, mos-9.0"}},
		"unknown target":  {func(b *Build) { b.Target = "bookworm-arm64" }, []string{`target "bookworm-arm64"`, "mos-9.0", "bookworm-amd64, centos7-x86_64"}},
		"upper-case deb":  {func(b *Build) { b.Package = "Nova" }, []string{`package name "Nova"`, "lower-case"}},
		"one letter":      {func(b *Build) { b.Package = "n" }, []string{`package name "n"`}},
		"leading dash":    {func(b *Build) { b.Package = "-nova" }, []string{`package name "-nova"`}},
		"underscore":      {func(b *Build) { b.Package = "no_va" }, []string{`package name "no_va"`}},
		"relative source": {func(b *Build) { b.Sources[0].URL = "repos/hello" }, []string{`"repos/hello"`, "relative", "absolute"}},
		"dot source":      {func(b *Build) { b.Sources[0].URL = "./hello" }, []string{`"./hello"`, "relative"}},
	}
	for name, c := range cases {
		b := build()
		b.Target = "bookworm-amd64"
		c.mod(b)
		err := rels.Check(b)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: got %v, want a refusal", name, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
	}
	for _, u := range []string{"/srv/git/hello", "file:///srv/git/hello", "https://git.example/x.git", "ssh://gerrit:29418/x", "git@git.example:x.git", "git://h/x"} {
		b := build()
		b.Target = "bookworm-amd64"
		b.Sources = b.Sources[:1]
		b.Sources[0].URL, b.Sources[0].Role = u, "combined"
		if err := rels.Check(b); err != nil {
			t.Errorf("source %s: %v", u, err)
		}
	}
	var none Releases
	err := none.Check(okDeb)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no releases are configured") {
		t.Errorf("no releases configured: %v", err)
	}
}

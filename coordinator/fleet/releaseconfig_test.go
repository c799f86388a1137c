package fleet

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/coordinator/job"
	"github.com/kiln-build/kiln/coordinator/store"
)

// A build that names no profiles gets its target's, else its release's,
// and they are part of its key; one that names its own keeps them; a
// rebuild keeps what its original had even when the config changed.
func TestReleaseAndTargetBuildDefaults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "coordinator.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rel := Release{Targets: map[string]string{"bookworm": "deb", "trixie": "deb"},
		Profiles: []string{"nodoc"}, BuildOptions: []string{"nostrip"},
		PerTarget: map[string]BuildConfig{"trixie": {Profiles: []string{"nocheck"}}}}
	if err := rel.Validate("r"); err != nil {
		t.Fatal(err)
	}
	f, err := New(ctx, Config{StateDir: dir, LostAfter: time.Minute, Clock: fixedClock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
		Releases: map[string]Release{"r": rel}}, st, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	spec := func(target string, profiles ...string) job.Spec {
		return job.Spec{Kind: job.PackageBuild, Build: &job.Build{Release: "r", Target: target, Package: "hello", Profiles: profiles,
			Sources: []job.Source{{URL: "https://git.example.org/hello", Commit: strings.Repeat("c", 40), Role: "combined"}}}}
	}
	submit := func(s job.Spec) *job.Job {
		t.Helper()
		j, _, err := f.Submit(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	bookworm := submit(spec("bookworm"))
	if b := bookworm.Spec.Build; !slices.Equal(b.Profiles, []string{"nodoc"}) || !slices.Equal(b.Options, []string{"nostrip"}) {
		t.Errorf("bookworm build: profiles %v options %v, want the release's [nodoc] [nostrip]", b.Profiles, b.Options)
	}
	trixie := submit(spec("trixie"))
	if b := trixie.Spec.Build; !slices.Equal(b.Profiles, []string{"nocheck"}) || !slices.Equal(b.Options, []string{"nostrip"}) {
		t.Errorf("trixie build: profiles %v options %v, want the target's [nocheck] and the release's [nostrip]", b.Profiles, b.Options)
	}
	own := submit(spec("bookworm", "stage1"))
	if b := own.Spec.Build; !slices.Equal(b.Profiles, []string{"stage1"}) || len(b.Options) != 0 {
		t.Errorf("build with its own profiles: %v %v, want [stage1] and no options", b.Profiles, b.Options)
	}
	plain := spec("bookworm").Build
	if bookworm.BuildKey == plain.Key() || own.BuildKey == bookworm.BuildKey {
		t.Error("the profiles a build got are not part of its key")
	}
	got, err := st.Get(ctx, trixie.ID)
	if err != nil || !slices.Equal(got.Spec.Build.Profiles, []string{"nocheck"}) {
		t.Fatalf("stored trixie build: %v %v", got, err)
	}
	// The config changes; a rebuild still builds as the original did.
	f.cfg.Releases["r"] = Release{Targets: rel.Targets, Profiles: []string{"nocheck", "nodoc"}}
	if _, err := f.Cancel(ctx, bookworm.ID, "test"); err != nil {
		t.Fatal(err)
	}
	rb, err := f.Rebuild(ctx, bookworm.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if b := rb.Spec.Build; !slices.Equal(b.Profiles, []string{"nodoc"}) || !slices.Equal(b.Options, []string{"nostrip"}) {
		t.Errorf("rebuild: profiles %v options %v, want the original's", b.Profiles, b.Options)
	}
}

func TestReleaseConfigErrorsNameTheSetting(t *testing.T) {
	for _, tt := range []struct {
		rel  Release
		want string
	}{
		{Release{Targets: map[string]string{"b": "tgz"}}, `release r target b: format "tgz"`},
		{Release{Targets: map[string]string{"b": "deb"}, PerTarget: map[string]BuildConfig{"c": {}}}, `release r per_target: "c" is not one of its targets`},
		{Release{Targets: map[string]string{"b": "deb"}, Profiles: []string{"No Check"}}, `release r: build profile "No Check"`},
		{Release{Targets: map[string]string{"b": "deb"}, PerTarget: map[string]BuildConfig{"b": {BuildOptions: []string{"-j4"}}}}, `release r per_target b: build option "-j4"`},
	} {
		if err := tt.rel.Validate("r"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.rel, err, tt.want)
		}
	}
}

package pkgbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/worker/executor"
)

// TestLayoutErrorsSayWhatToDo: a source whose layout cannot be built
// fails before any build with a reason that names the repository, what
// was found there and the fix.
func TestLayoutErrorsSayWhatToDo(t *testing.T) {
	testenv.Tool(t, "patch")
	testenv.Tool(t, "pristine-tar")
	srv := newGitServer(t)
	setLine := func(dir, file, line string) {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setVersion := func(dir, pkg, version string) {
		cl, err := os.ReadFile(filepath.Join(dir, "debian/changelog"))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(cl), "\n")
		os.WriteFile(filepath.Join(dir, "debian/changelog"), []byte(pkg+" ("+version+") unstable; urgency=medium\n"+rest), 0o644)
	}
	codeOnly := srv.repo(t, "code-only", "hello-split-code", nil)
	nativeRev := srv.repo(t, "native-rev", "hello-native", func(dir string) { setVersion(dir, "hello-native", "1.2-1") })
	quiltNoRev := srv.repo(t, "quilt-norev", "hello-quilt", func(dir string) { setVersion(dir, "hello-quilt", "2.0") })
	pcUnknown := srv.repo(t, "pc-unknown", "hello-quilt", func(dir string) {
		applyPatches(t, dir, true)
		setLine(dir, ".pc/applied-patches", "gone.patch")
	})
	seriesMissing := srv.repo(t, "series-missing", "hello-quilt", func(dir string) {
		setLine(dir, "debian/patches/series", "greeting.patch\nmissing.patch")
	})
	pcStale := srv.repo(t, "pc-stale", "hello-quilt", func(dir string) {
		// .pc/ says the patch is applied; the tree does not have it.
		applyPatches(t, dir, true)
		setLine(dir, "hello", "#!/bin/sh\necho something else entirely")
	})
	// A pristine-tar branch whose delta pristine-tar cannot use.
	brokenDelta := srv.repo(t, "broken-delta", "hello-quilt", nil)
	dir := filepath.Join(srv.base, "broken-delta")
	tree := strings.TrimSpace(runGit(t, dir, "rev-parse", "HEAD^{tree}"))
	runGit(t, dir, "checkout", "--quiet", "--orphan", "pristine-tar")
	runGit(t, dir, "rm", "--quiet", "-r", "--cached", ".")
	for _, e := range []string{"debian", "hello", "README"} {
		os.RemoveAll(filepath.Join(dir, e))
	}
	setLine(dir, "hello-quilt_2.0.orig.tar.gz.delta", "not a delta")
	setLine(dir, "hello-quilt_2.0.orig.tar.gz.id", tree)
	runGit(t, dir, "add", ".")
	runGit(t, dir, "commit", "--quiet", "-m", "pristine-tar data")

	tests := []struct {
		name, pkg, repo, commit string
		want                    []string
	}{
		{"code without packaging", "hello-split", "code-only", codeOnly,
			[]string{"no packaging found", "(it holds README, hello)", "if the packaging is kept in a repository of its own", "--source CODE@REV#code --source PACKAGING@REV#packaging"}},
		{"native with a revision", "hello-native", "native-rev", nativeRev,
			[]string{`debian/source/format says 3.0 (native), but debian/changelog's version 1.2-1 has the Debian revision -1`, "drop the revision (1.2)", `set debian/source/format to "3.0 (quilt)"`}},
		{"quilt without a revision", "hello-quilt", "quilt-norev", quiltNoRev,
			[]string{`debian/source/format says 3.0 (quilt), but debian/changelog's version 2.0 has no Debian revision`, "add one (2.0-1)", `set debian/source/format to "3.0 (native)"`}},
		{".pc names a patch the series does not", "hello-quilt", "pc-unknown", pcUnknown,
			[]string{`.pc/applied-patches names "gone.patch", which debian/patches/series does not list`, "remove .pc/ or refresh it with quilt"}},
		{"series names a missing patch", "hello-quilt", "series-missing", seriesMissing,
			[]string{"debian/patches/series lists missing.patch, but debian/patches/missing.patch is not a regular file", "add it or remove it from the series"}},
		{".pc says applied, the tree disagrees", "hello-quilt", "pc-stale", pcStale,
			[]string{".pc/applied-patches says debian/patches/greeting.patch is applied, but it does not revert cleanly", "refresh the patch with quilt or commit the tree with the patches unapplied"}},
		{"pristine-tar delta unusable", "hello-quilt", "broken-delta", brokenDelta,
			[]string{"the pristine-tar branch has hello-quilt_2.0.orig.tar.gz.delta, but pristine-tar checkout failed", "fix the branch (pristine-tar commit) or remove the delta"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opener := &fakeOpener{handle: skipRootSteps}
			b := New(testConfig(t), opener, nil)
			job := newJob(t, executor.PackageBuild{Package: tt.pkg, Sources: []executor.Source{{URL: srv.url(tt.repo), Commit: tt.commit}}})
			var log bytes.Buffer
			res, err := b.Run(context.Background(), job, &log)
			if err != nil {
				t.Fatalf("a bad layout must be a failed result, not an error: %v", err)
			}
			if !res.Failed() {
				t.Fatalf("built:\n%s", log.String())
			}
			// The repository is named in every reason.
			for _, want := range append(tt.want, srv.url(tt.repo)) {
				if !strings.Contains(res.Reason, want) {
					t.Errorf("reason lacks %q:\n%s", want, res.Reason)
				}
			}
			if len(opener.opened) != 0 {
				t.Error("a sandbox was opened for a bad layout")
			}
		})
	}
}

package pkgbuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// Dynamic BuildRequires, the way mock installs them: `rpmbuild -br` runs
// the spec's %prep and %generate_buildrequires as the build user, without
// network, and writes a .buildreqs.nosrc.rpm that requires everything the
// build needs. rpmbuild exits with status 11 when some of it is not
// installed; the worker host's dnf then installs it into the buildroot
// (--installroot) and rpmbuild -br runs again, until it finds nothing
// missing. A generator may ask for more once its first answers are
// installed (a build backend that names its own requirements).

const (
	// rpmGeneratesFile, in stateDir, is there when the source package
	// requires rpmlib(DynamicBuildRequires): rpm's word that the spec
	// has a %generate_buildrequires section.
	rpmGeneratesFile = "rpm-generates-buildrequires"
	// rpmGeneratedFile, in stateDir, holds what the last rpmbuild -br
	// required, one capability a line, rpmlib() ones left out.
	rpmGeneratedFile = "rpm-generated-buildrequires"
	// rpmMissingDeps is rpmbuild's exit status for missing build
	// dependencies.
	rpmMissingDeps = 11
	// maxGeneratePasses bounds the rounds. Each round must ask for
	// something not asked for before, or the loop ends; the bound stops
	// a generator that asks for something new every time.
	maxGeneratePasses = 10
)

// rpmNeededRE is how rpmbuild names a build dependency that is missing.
var rpmNeededRE = regexp.MustCompile(`(?m)^\s+(.+?) is needed by `)

// listDepsScript writes the source package's BuildRequires into
// rpmRequireFile, and leaves rpmGeneratesFile when it says the spec
// generates more.
const listDepsScript = "reqs=$(rpm -qp --requires SRPMS/*.src.rpm)\n" +
	"printf '%s\\n' \"$reqs\" | grep -v '^rpmlib(' > ../" + stateDir + "/" + rpmRequireFile + " || true\n" +
	"sed 's/^/kiln: BuildRequires: /' ../" + stateDir + "/" + rpmRequireFile + "\n" +
	"if printf '%s\\n' \"$reqs\" | grep -q '^rpmlib(DynamicBuildRequires)'; then\n" +
	"  : > ../" + stateDir + "/" + rpmGeneratesFile + "\n" +
	"  echo 'kiln: the spec generates more BuildRequires (%generate_buildrequires)'\n" +
	"fi\n"

// generateScript runs rpmbuild -br with defs on specIn (relative to the
// rpm top dir, the step's dir) and writes the requirements of the package
// it made (a .buildreqs.nosrc.rpm when some are missing) into
// rpmGeneratedFile. rpmbuild writes into a scratch dir, not SRPMS: the
// source package stays the one rpmbuild -bs made. The exit status is
// rpmbuild's.
func generateScript(defs []string, specIn string) string {
	out := "../" + stateDir + "/" + rpmGeneratedFile
	dir := shellQuote(path.Join(executor.SandboxWorkDir, stateDir, "buildreqs"))
	return "rm -rf " + dir + "\nmkdir " + dir + "\n" +
		": > " + out + "\n" +
		"rc=0\nrpmbuild -br --define " + shellQuote("_srcrpmdir "+path.Join(executor.SandboxWorkDir, stateDir, "buildreqs")) + " " + shellJoin(defs) + " " + specIn + " || rc=$?\n" +
		"for f in " + dir + "/*.rpm; do\n" +
		"  [ -e \"$f\" ] || continue\n" +
		"  rpm -qp --requires \"$f\" | grep -v '^rpmlib(' > " + out + " || true\n" +
		"done\n" +
		"rm -rf " + dir + "\n" +
		"sed 's/^/kiln: rpmbuild -br requires: /' " + out + "\n" +
		"exit $rc\n"
}

// generatedDeps runs step (generateScript) until rpmbuild finds every
// build dependency installed, installing what it asks for with the
// bootstrap in between. asked are the capabilities already installed
// (the static BuildRequires and pinned packages).
func (b *Builder) generatedDeps(ctx context.Context, job executor.Job, sb executor.Sandbox, bs bootstrapper, step executor.Step, asked []string, log io.Writer, record func(string)) (executor.StepResult, error) {
	var got []executor.PackageFile
	fail := func(r executor.StepResult) (executor.StepResult, error) {
		r.ExitCode, r.Packages = 1, got
		return r, nil
	}
	asked = slices.Clone(asked)
	for pass := 1; ; pass++ {
		fmt.Fprintf(log, "kiln: %%generate_buildrequires, pass %d: rpmbuild -br (build user, no network)\n", pass)
		record(shellJoin(step.Argv))
		var out bytes.Buffer
		r, err := sb.Exec(ctx, step, io.MultiWriter(log, &out))
		if err != nil {
			return executor.StepResult{Packages: got}, fmt.Errorf("%%generate_buildrequires: %w", err)
		}
		if !r.Failed() {
			fmt.Fprintf(log, "kiln: %%generate_buildrequires: every build dependency is installed\n")
			return executor.StepResult{Packages: got}, nil
		}
		if r.Reason != "" || r.ExitCode != rpmMissingDeps {
			// %prep or the generator failed: the package's fault.
			if r.Reason == "" {
				r.Reason = fmt.Sprintf("%%generate_buildrequires failed: rpmbuild -br exit status %d", r.ExitCode)
				if line := lastErrorLine(out.Bytes()); line != "" {
					r.Reason = "%generate_buildrequires failed: " + line
				}
			}
			return fail(r)
		}
		data, err := readState(job.WorkDir, rpmGeneratedFile)
		if err != nil {
			return executor.StepResult{Packages: got}, err
		}
		var want []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(asked, l) && !slices.Contains(want, l) {
				want = append(want, l)
			}
		}
		if len(want) == 0 {
			var missing []string
			for _, m := range rpmNeededRE.FindAllStringSubmatch(out.String(), -1) {
				missing = append(missing, m[1])
			}
			return fail(executor.StepResult{Reason: "rpmbuild -br finds build dependencies missing that dnf was asked to install: " +
				strings.Join(missing, ", ") + "; check what provides them in the target's repositories"})
		}
		if pass == maxGeneratePasses {
			return fail(executor.StepResult{Reason: fmt.Sprintf("%%generate_buildrequires asked for new build dependencies in each of %d passes (last: %s); make it settle",
				maxGeneratePasses, strings.Join(want, ", "))})
		}
		fmt.Fprintf(log, "kiln: %%generate_buildrequires asks for %s\n", strings.Join(want, ", "))
		ir, err := b.bootstrapInstall(ctx, job, bs, want, "generated by the spec's %generate_buildrequires", log, record)
		got = append(got, ir.Packages...)
		if err != nil {
			return executor.StepResult{Packages: got}, err
		}
		if ir.Failed() {
			return fail(ir)
		}
		asked = append(asked, want...)
	}
}

package pkgbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// An RPM build is planned in two halves, the way mock does it. The host
// stages the spec and the files beside it; the target's own rpm evaluates
// the spec inside the buildroot (macros, conditionals, %{?dist}); then the
// host makes what rpm named and did not find (the upstream tarball, from
// the code repository, with the top directory %setup expects), and the
// worker host's dnf installs the BuildRequires into the buildroot
// (--installroot), whatever package manager the buildroot has.

var (
	rpmNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	rpmSuffixRE = regexp.MustCompile(`^[A-Za-z0-9._+~]*$`)
	// A Source or Patch tag of the spec as rpm prints it, expanded.
	rpmSourceRE = regexp.MustCompile(`^(?i)(source|patch)([0-9]*)\s*:\s*(\S+)\s*$`)
	// The line %setup writes when it unpacks: the directory it expects.
	rpmSetupDirRE = regexp.MustCompile(`^rm -rf '([^'/]+)'$`)
	releaseTagRE  = regexp.MustCompile(`(?m)^(Release\s*:[ \t]*)(\S.*?)[ \t]*$`)
)

// Files the evaluation step writes into stateDir.
const (
	rpmDistFile    = "rpm-dist"
	rpmParsedFile  = "rpm-parsed.spec"
	rpmNEVRFile    = "rpm-nevr"
	rpmRequireFile = "rpm-buildrequires"
)

// evaluatedSpec is what the target's rpm said about a spec.
type evaluatedSpec struct {
	Name, Epoch, Version, Release string
	// Source0 is the file name of the first source (the upstream tarball).
	Source0 string
	// Sources are the file names of every Source and Patch tag.
	Sources []string
	// SetupDir is the directory %setup or %autosetup unpacks into, empty
	// when the spec does not unpack a tarball.
	SetupDir string
}

// parseEvaluated reads rpm's answers: nevr is `rpmspec -q --srpm` of
// NAME, EPOCH, VERSION and RELEASE one a line, parsed is `rpmspec -P`.
func parseEvaluated(nevr, parsed []byte) (evaluatedSpec, error) {
	var s evaluatedSpec
	f := strings.Split(strings.TrimRight(string(nevr), "\n"), "\n")
	if len(f) < 4 {
		return s, fmt.Errorf("rpmspec printed %q, not name, epoch, version and release", nevr)
	}
	s.Name, s.Epoch, s.Version, s.Release = f[0], f[1], f[2], f[3]
	if s.Epoch == "(none)" {
		s.Epoch = ""
	}
	if !rpmNameRE.MatchString(s.Name) {
		return s, badSource("spec: Name %q is not a package name", s.Name)
	}
	inPrep, inPreamble := false, true
	sc := bufio.NewScanner(bytes.NewReader(parsed))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "%") {
			// Sources are tags of the preamble, before any section.
			inPrep, inPreamble = strings.HasPrefix(line, "%prep"), false
			continue
		}
		if inPrep {
			if m := rpmSetupDirRE.FindStringSubmatch(line); m != nil && s.SetupDir == "" && m[1] != "." && m[1] != ".." {
				s.SetupDir = m[1]
			}
			continue
		}
		m := rpmSourceRE.FindStringSubmatch(line)
		if m == nil || !inPreamble {
			continue
		}
		base := path.Base(m[3])
		if base == "." || base == ".." || base == "/" {
			return s, badSource("spec: %s%s %q names no file", m[1], m[2], m[3])
		}
		if strings.EqualFold(m[1], "source") && (m[2] == "" || m[2] == "0") && s.Source0 == "" {
			s.Source0 = base
		}
		s.Sources = append(s.Sources, base)
	}
	return s, sc.Err()
}

// version is the [epoch:]version-release rpm gives the built packages.
func (s evaluatedSpec) version() string {
	v := s.Version + "-" + s.Release
	if s.Epoch != "" {
		v = s.Epoch + ":" + v
	}
	return v
}

// appendRelease appends suffix to the spec's first Release tag: the
// fallback for a spec whose Release does not end in %{?dist}.
func appendRelease(data []byte, suffix string) ([]byte, bool) {
	loc := releaseTagRE.FindSubmatchIndex(data)
	if loc == nil {
		return data, false
	}
	out := append([]byte(nil), data[:loc[5]]...)
	out = append(out, suffix...)
	return append(out, data[loc[5]:]...), true
}

func (b *Builder) prepareRPM(in prepInput, specPath string) (*plan, error) {
	pb := in.job.Build
	if !rpmSuffixRE.MatchString(pb.VersionSuffix) {
		return nil, badSource("version suffix %q may only hold letters, digits and . _ + ~", pb.VersionSuffix)
	}
	data, err := in.root.ReadFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", specPath, err)
	}
	top := filepath.Join(in.job.WorkDir, rpmDir)
	for _, d := range []string{"SPECS", "SOURCES", "BUILD", "RPMS", "SRPMS"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			return nil, fmt.Errorf("prepare rpm tree: %w", err)
		}
	}
	specName := path.Base(specPath)
	specFile := filepath.Join(top, "SPECS", specName)
	if err := os.WriteFile(specFile, data, 0o644); err != nil {
		return nil, fmt.Errorf("write spec: %w", err)
	}
	// Every regular file beside the spec is a source rpm may name.
	specDir := path.Dir(specPath)
	entries, err := fs.ReadDir(in.root.FS(), specDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", specDir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == specName {
			continue
		}
		p := path.Join(specDir, e.Name())
		body, err := in.root.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if err := os.WriteFile(filepath.Join(top, "SOURCES", e.Name()), body, 0o644); err != nil {
			return nil, fmt.Errorf("copy %s: %w", p, err)
		}
	}

	topIn := path.Join(executor.SandboxWorkDir, rpmDir)
	state := "../" + stateDir + "/"
	baseDefs := []string{
		"--define", "_topdir " + topIn,
		"--define", "_buildhost kiln.invalid",
		"--define", "use_source_date_epoch_as_buildtime 1",
		"--define", "clamp_mtime_to_source_date_epoch 1",
	}
	env := append(buildEnv(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", in.date.Unix()))
	specIn := "SPECS/" + specName
	p := &plan{format: FormatRPM}
	limits := func(s executor.Step) executor.Step {
		s.Dir, s.Env, s.Timeout, s.IdleTimeout = topIn, env, b.cfg.BuildTimeout, b.cfg.IdleLimit
		return s
	}
	// The revision goes into %{dist}, which `Release: N%{?dist}` picks up:
	// the distribution's own dist with the suffix after it.
	evalScript := "dist=$(rpm --eval '%{?dist}')\nprintf '%s\\n' \"$dist\" > " + state + rpmDistFile + "\n" +
		"d=\"${dist}" + pb.VersionSuffix + "\"\nset --\nif [ -n \"$d\" ]; then set -- --define \"dist $d\"; fi\n" +
		"rpmspec -P \"$@\" " + shellJoin(baseDefs) + " " + specIn + " > " + state + rpmParsedFile + "\n" +
		"rpmspec -q --srpm \"$@\" " + shellJoin(baseDefs) +
		" --qf '%{NAME}\\n%{EPOCH}\\n%{VERSION}\\n%{RELEASE}\\n' " + specIn + " > " + state + rpmNEVRFile + "\n" +
		"echo \"kiln: the buildroot's rpm evaluates the spec: $(tr '\\n' ' ' < " + state + rpmNEVRFile + ")(name epoch version release; the distribution's dist is '$dist')\"\n"
	ev := limits(executor.Step{Argv: []string{"sh", "-ec", evalScript, "kiln-evaluate"}})
	p.evaluate = &ev
	// generate runs the spec's %generate_buildrequires, when the source
	// package says it has one.
	var generate executor.Step
	p.afterEvaluate = func() error {
		dist, err := readState(in.job.WorkDir, rpmDistFile)
		if err != nil {
			return err
		}
		nevr, err := readState(in.job.WorkDir, rpmNEVRFile)
		if err != nil {
			return err
		}
		parsed, err := readState(in.job.WorkDir, rpmParsedFile)
		if err != nil {
			return err
		}
		spec, err := parseEvaluated(nevr, parsed)
		if err != nil {
			if _, ok := isBadSource(err); ok {
				return badSource("%s: %s: %v", in.what, specPath, err)
			}
			return err
		}
		if pb.Package != "" && spec.Name != pb.Package {
			return badSource("%s: %s names package %q, the build asked for %q; check the source mapping", in.what, specPath, spec.Name, pb.Package)
		}
		distDef := strings.TrimSpace(string(dist)) + pb.VersionSuffix
		if !strings.HasSuffix(spec.Release, pb.VersionSuffix) {
			// Release does not end in %{?dist}: the suffix is appended
			// to the tag itself, after whatever macros it holds.
			edited, ok := appendRelease(data, pb.VersionSuffix)
			if !ok {
				return badSource("%s: %s: rpm read Release %q, but no Release: line to add the revision %q to; write Release: N%%{?dist}", in.what, specPath, spec.Release, pb.VersionSuffix)
			}
			if err := os.WriteFile(specFile, edited, 0o644); err != nil {
				return fmt.Errorf("write spec: %w", err)
			}
			distDef = strings.TrimSpace(string(dist))
			spec.Release += pb.VersionSuffix
		}
		if err := b.rpmSources(in, top, spec); err != nil {
			return err
		}
		if err := chownTree(filepath.Join(in.job.WorkDir, rpmDir)); err != nil {
			return err
		}
		p.version = spec.version()
		p.versionFromSRPM = spec.Name
		defs := baseDefs
		if distDef != "" {
			defs = append([]string{"--define", "dist " + distDef}, baseDefs...)
		}
		p.source = limits(executor.Step{Argv: append(append([]string{"rpmbuild", "-bs", "--nodeps"}, defs...), specIn)})
		p.listDeps = limits(executor.Step{Argv: []string{"sh", "-ec", listDepsScript, "kiln-buildrequires"}})
		// Where phase 1 could not install the BuildRequires (it leaves a
		// marker saying so) rpmbuild must not check them.
		p.build = limits(executor.Step{Argv: []string{"sh", "-ec", "nodeps=; if [ -e " + state + noDepsMarker + " ]; then nodeps=--nodeps; fi; exec rpmbuild -bb $nodeps " +
			shellJoin(defs) + " " + specIn, "kiln-build"}})
		generate = limits(executor.Step{Argv: []string{"sh", "-ec", generateScript(defs, specIn), "kiln-generate-buildrequires"}})
		return nil
	}

	repos, err := b.stageRepositories(in.job)
	if err != nil {
		return nil, err
	}
	// Without the bootstrap (a buildroot not made with dnf) phase 1 runs
	// in the buildroot: dnf builddep where it has dnf, nothing otherwise.
	p.deps = executor.Step{
		Argv: []string{"sh", "-ec", rpmDepsScript(repos, pb.Pinned), "kiln-deps"},
		Dir:  topIn, Root: true, Network: true, Env: env,
		AllowHosts: repositoryHosts(repos),
		Timeout:    b.cfg.DependencyTimeout, IdleTimeout: b.cfg.IdleLimit,
	}
	p.bootstrap = func(ctx context.Context, sb executor.Sandbox, log io.Writer, record func(string)) (executor.StepResult, bool, error) {
		var gen *executor.Step
		if _, err := readState(in.job.WorkDir, rpmGeneratesFile); err == nil {
			gen = &generate
		}
		r, handled, err := b.bootstrapDeps(ctx, in.job, sb, gen, log, record)
		if gen != nil && !handled {
			fmt.Fprintf(log, "kiln: warning: only the bootstrap (a method dnf target) installs what %%generate_buildrequires asks for; rpmbuild checks it here\n")
		}
		return r, handled, err
	}
	scratch := path.Join(executor.SandboxWorkDir, stateDir, unpackDir)
	p.unpack = executor.Step{
		Argv: []string{"sh", "-ec", unpackScript("rpm -i --nodeps --dbpath " + scratch + "/db --define " + shellQuote("_topdir "+scratch+"/top") + " " + topIn + "/SRPMS/*.src.rpm"), "kiln-unpack"},
		Dir:  path.Join(executor.SandboxWorkDir, stateDir), Env: env, Timeout: b.cfg.BuildTimeout, IdleTimeout: b.cfg.IdleLimit,
	}
	p.collect = []collectRule{
		{dir: rpmDir + "/SRPMS", patterns: []string{"*.src.rpm"}},
		{dir: rpmDir + "/RPMS", patterns: []string{"*.rpm"}, depth: 1},
	}
	return p, nil
}

// rpmSources makes sure every file rpm named is in SOURCES: the first
// source, when the packaging does not keep it, is the upstream tarball made
// from the code repository at the recorded commit, under the directory
// %setup expects.
func (b *Builder) rpmSources(in prepInput, top string, spec evaluatedSpec) error {
	for _, name := range spec.Sources {
		if _, err := os.Lstat(filepath.Join(top, "SOURCES", name)); err == nil {
			continue
		}
		if name != spec.Source0 {
			return badSource("%s: the spec names %q (a Source or Patch), which is not beside the spec; add it to the packaging", in.what, name)
		}
		if !strings.HasSuffix(name, ".tar.gz") && !strings.HasSuffix(name, ".tgz") {
			return badSource("%s: Source0 %q is not beside the spec, and Kiln makes upstream tarballs as .tar.gz only; name it NAME-VERSION.tar.gz or keep it beside the spec", in.what, name)
		}
		prefix := spec.SetupDir
		if prefix == "" {
			prefix = spec.Name + "-" + spec.Version
		}
		err := writeFileFrom(filepath.Join(top, "SOURCES", name), func(w io.Writer) error {
			f, err := os.Open(in.archives[in.codeRole])
			if err != nil {
				return err
			}
			defer f.Close()
			return writeTarball(in.codeWhat, f, w, prefix, nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// bootstrapper is a sandbox whose packages the worker host's dnf installs
// (--installroot), as mock's bootstrap does.
type bootstrapper interface {
	BootstrapInstall(ctx context.Context, req executor.BootstrapInstall, log io.Writer) (executor.StepResult, error)
}

// noMatchRE is how dnf names a capability nothing provides.
var noMatchRE = regexp.MustCompile(`(?m)^No match for argument: (.+)$`)

// bootstrapDeps installs the BuildRequires (and for a pinned rebuild the
// recorded packages at their versions) with the worker host's dnf, then,
// when generate is set, the ones the spec's %generate_buildrequires asks
// for. handled is false when the sandbox has no bootstrap: phase 1 then
// runs in it.
func (b *Builder) bootstrapDeps(ctx context.Context, job executor.Job, sb executor.Sandbox, generate *executor.Step, log io.Writer, record func(string)) (r executor.StepResult, handled bool, err error) {
	bs, ok := sb.(bootstrapper)
	if !ok {
		return r, false, nil
	}
	reqs, err := readState(job.WorkDir, rpmRequireFile)
	if err != nil {
		return r, true, err
	}
	var pkgs []string
	for _, p := range job.Build.Pinned {
		if p.Name == "gpg-pubkey" {
			continue // the keys dnf imports, not packages
		}
		nevra := p.Name + "-" + p.Version
		if p.Architecture != "" && p.Architecture != "(none)" {
			nevra += "." + p.Architecture
		}
		pkgs = append(pkgs, nevra)
	}
	for _, l := range strings.Split(string(reqs), "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(pkgs, l) {
			pkgs = append(pkgs, l)
		}
	}
	if len(pkgs) == 0 {
		fmt.Fprintln(log, "kiln: the spec has no BuildRequires")
	} else {
		r, err = b.bootstrapInstall(ctx, job, bs, pkgs, "BuildRequires of the spec", log, record)
		if errors.Is(err, executor.ErrNoBootstrap) {
			return executor.StepResult{}, false, nil
		}
		if err != nil || r.Failed() {
			return r, true, err
		}
	}
	if generate == nil {
		return r, true, nil
	}
	g, err := b.generatedDeps(ctx, job, sb, bs, *generate, pkgs, log, record)
	if errors.Is(err, executor.ErrNoBootstrap) {
		// No static BuildRequires asked the bootstrap first.
		return executor.StepResult{}, false, nil
	}
	g.Packages = append(r.Packages, g.Packages...)
	return g, true, err
}

// bootstrapInstall has the worker host's dnf install pkgs into the
// sandbox. what says where pkgs come from, for the failure's reason. A
// capability nothing provides fails the build (exit status 1) and is
// named; an unreachable repository is an infrastructure error.
func (b *Builder) bootstrapInstall(ctx context.Context, job executor.Job, bs bootstrapper, pkgs []string, what string, log io.Writer, record func(string)) (executor.StepResult, error) {
	var repos []executor.RPMRepo
	for i, rr := range b.cfg.repositories(job.Build.Release, job.Build.Target) {
		if rr.BaseURL == "" {
			continue
		}
		repos = append(repos, executor.RPMRepo{Name: fmt.Sprintf("kiln-release-%d", i), BaseURL: rr.BaseURL, KeyFile: rr.KeyFile})
	}
	var out bytes.Buffer
	r, err := bs.BootstrapInstall(ctx, executor.BootstrapInstall{Packages: pkgs, Repos: repos}, io.MultiWriter(log, &out))
	if errors.Is(err, executor.ErrNoBootstrap) {
		return executor.StepResult{}, err
	}
	record("dnf --installroot=<buildroot> install " + shellJoin(pkgs) + " # the worker host's dnf")
	if err != nil {
		return r, err
	}
	if r.Failed() {
		text := out.String()
		if strings.Contains(text, "Failed to download metadata") || strings.Contains(text, "Cannot download repomd.xml") {
			return r, fmt.Errorf("install build dependencies: a repository cannot be reached (dnf exit status %d)", r.ExitCode)
		}
		var missing []string
		for _, m := range noMatchRE.FindAllStringSubmatch(text, -1) {
			missing = append(missing, strings.TrimSpace(m[1]))
		}
		r.ExitCode = 1
		if len(missing) > 0 {
			r.Reason = "nothing in the repositories provides " + strings.Join(missing, ", ") + " (" + what + ")"
		}
	}
	return r, nil
}

// rpmDepsScript installs BuildRequires with dnf where the buildroot has it.
func rpmDepsScript(repos []Repository, pinned []executor.Package) string {
	var s strings.Builder
	s.WriteString("if ! command -v dnf >/dev/null 2>&1; then\n")
	s.WriteString("  echo 'kiln: this buildroot has no dnf: BuildRequires are not installed; the build goes on with what the buildroot holds'\n")
	s.WriteString("  rpmspec -q --buildrequires SPECS/*.spec 2>/dev/null | sed 's/^/kiln: not installed: /' || true\n")
	if len(pinned) > 0 {
		// A Debian-based rpm buildroot: its record lists dpkg packages.
		s.WriteString("  if command -v apt-get >/dev/null 2>&1; then\n    echo 'kiln: installing pinned packages with apt'\n    apt-get update -o APT::Color=0\n    apt-get install -y --no-install-recommends --allow-downgrades -o Dpkg::Use-Pty=0" + debPins(pinned) + "\n  fi\n")
	}
	s.WriteString("  touch ../" + stateDir + "/" + noDepsMarker + "\n  " + dpkgList + "\n  exit 0\nfi\n")
	for i, r := range repos {
		if r.BaseURL == "" {
			continue
		}
		check := "gpgcheck=0\n"
		if r.KeyFile != "" {
			check = "gpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://" + r.KeyFile + "\n"
		} else {
			fmt.Fprintf(&s, "echo %s\n", shellQuote("kiln: warning: release repository "+r.BaseURL+" is not verified: "+unverified(r)+"; give its key with key_file"))
		}
		repo := fmt.Sprintf("[kiln-release-%d]\nname=kiln release repository\nbaseurl=%s\n%senabled=1\n", i, r.BaseURL, check)
		fmt.Fprintf(&s, "printf '%%s' %s > /etc/yum.repos.d/kiln-release-%d.repo\n", shellQuote(repo), i)
	}
	s.WriteString(httpsViaProxy("/etc/yum.repos.d/*.repo"))
	if len(pinned) > 0 {
		s.WriteString("dnf install -y --allowerasing")
		for _, p := range pinned {
			s.WriteString(" " + shellQuote(p.Name+"-"+p.Version))
		}
		s.WriteString("\n")
	}
	s.WriteString("dnf builddep -y SRPMS/*.src.rpm\n")
	s.WriteString(rpmList + "\n")
	return s.String()
}

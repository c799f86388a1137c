// Package pkgbuild turns a source state in git into binary packages the way
// the distributions do it themselves: dpkg-source, apt and dpkg-buildpackage
// for Debian and Ubuntu targets, rpmbuild (and dnf where the buildroot has
// it) for RPM targets, all inside one throw-away buildroot per build.
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
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-build/kiln/worker/executor"
)

// Builder runs package builds. It implements executor.Executor for jobs
// with Build set.
type Builder struct {
	cfg    Config
	opener executor.SandboxOpener
	logger hclog.Logger
	git    *gitCache
}

// New returns a Builder that opens buildroots with opener.
func New(cfg Config, opener executor.SandboxOpener, logger hclog.Logger) *Builder {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	for _, r := range cfg.Repositories {
		if why := unverified(r); why != "" {
			logger.Warn("release repository is not verified", "release", r.Release, "repository", r.Apt+r.BaseURL, "reason", why)
		}
	}
	return &Builder{
		cfg:    cfg,
		opener: opener,
		logger: logger.Named("build"),
		git:    newGitCache(cfg.CacheDir, cfg.GitTimeout, cfg.GitProtocols),
	}
}

// Work dir layout, relative to the job's work dir (SandboxWorkDir inside
// the buildroot).
const (
	outDir   = "out"
	srcDir   = "src"
	rpmDir   = "rpm"
	stateDir = ".kiln"
	// noDepsMarker, in stateDir, says phase 1 could not install the
	// BuildRequires of an rpm build.
	noDepsMarker = "no-builddeps"
)

var (
	packageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_-]*$`)
	// Debian build profile names and DEB_BUILD_OPTIONS entries.
	profileRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	buildOptionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.+-]*(=[A-Za-z0-9_.+,:-]+)?$`)
)

// plan is one package build prepared on the host: the steps to run in the
// buildroot and how to read their results.
type plan struct {
	format  Format
	version string
	// layout says how the source was found, for the build log.
	layout string
	// source builds the source package (build user, no network).
	source executor.Step
	// deps installs build dependencies (root, network).
	deps executor.Step
	// resolve, when set, writes what deps would install to resolvedPath
	// (root, network), for the build-dependency layer cache.
	resolve *executor.Step
	// build builds the binary packages (build user, no network).
	build executor.Step
	// unpack checks that the source package the build produced unpacks
	// (build user, no network, in a scratch dir).
	unpack executor.Step
	// collect lists the directories (relative to the work dir) whose
	// matching files are artifacts, and the patterns they match.
	collect []collectRule
	// versionFromSRPM derives the built version from the .src.rpm name.
	versionFromSRPM string

	// evaluate, when set, runs first (build user, no network): the
	// target's own tools read the recipe; afterEvaluate then reads what
	// they wrote and completes the plan on the host.
	evaluate      *executor.Step
	afterEvaluate func() error
	// listDeps, when set, lists the build dependencies (build user, no
	// network) before phase 1.
	listDeps executor.Step
	// bootstrap, when set, is phase 1 done from outside the buildroot;
	// handled false means the sandbox has no bootstrap and deps runs.
	// record adds the command it runs to the build record.
	bootstrap func(ctx context.Context, sb executor.Sandbox, log io.Writer, record func(cmd string)) (r executor.StepResult, handled bool, err error)
}

type collectRule struct {
	dir      string
	patterns []string
	depth    int // 0: files directly in dir; 1: files in its subdirectories
}

// Run builds job.Build. See executor.Executor for how errors and results
// are told apart.
func (b *Builder) Run(ctx context.Context, job executor.Job, log io.Writer) (executor.Result, error) {
	if job.Build == nil {
		return executor.Result{}, executor.ErrUnsupported
	}
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, job.Timeout, errJobTimeout)
		defer cancel()
	}
	logger := b.logger.With("job_id", job.ID, "package", job.Build.Package, "target", job.Build.Target)
	rec := &executor.Record{Sources: append([]executor.Source(nil), job.Build.Sources...)}
	start := time.Now()
	res, err := b.run(ctx, job, log, rec)
	if bad, ok := isBadSource(err); ok {
		fmt.Fprintf(log, "kiln: bad input: %s\n", bad.Msg)
		logger.Info("bad build input", "reason", bad.Msg)
		return executor.Result{ExitCode: 1, Reason: "bad input: " + bad.Msg, Record: rec}, nil
	}
	if err != nil && errors.Is(context.Cause(ctx), errJobTimeout) {
		reason := fmt.Sprintf("time limit %s reached", job.Timeout)
		fmt.Fprintf(log, "kiln: %s\n", reason)
		return executor.Result{ExitCode: 1, Reason: reason, Record: rec}, nil
	}
	if err != nil {
		return executor.Result{}, err
	}
	res.Record = rec
	fmt.Fprintf(log, "kiln: done in %s: %s\n", time.Since(start).Round(time.Millisecond), resultText(res))
	logger.Info("package build finished", "exit_code", res.ExitCode, "reason", res.Reason, "version", rec.Version, "duration", time.Since(start))
	return res, nil
}

var errJobTimeout = errors.New("job time limit reached")

func resultText(r executor.Result) string {
	if r.Failed() {
		return "failed: " + r.Reason
	}
	return "success"
}

func (b *Builder) run(ctx context.Context, job executor.Job, log io.Writer, rec *executor.Record) (executor.Result, error) {
	pb := job.Build
	if err := checkJob(job); err != nil {
		return executor.Result{}, err
	}
	// Each phase's line says when it started, counted from the job's start.
	start := time.Now()
	phase := func(format string, args ...any) {
		fmt.Fprintf(log, "kiln: [%7.3fs] === %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	phase("fetch sources")
	repos := map[string]string{} // role -> bare repo dir
	srcs := map[string]executor.Source{}
	for _, s := range pb.Sources {
		dir, err := b.git.Fetch(ctx, s, log)
		if err != nil {
			return executor.Result{}, err
		}
		role := s.Role
		if role == "" {
			role = "combined"
		}
		repos[role], srcs[role] = dir, s
	}
	phase("prepare source tree")
	p, err := b.prepare(ctx, job, repos, srcs)
	if err != nil {
		return executor.Result{}, err
	}
	rec.Version, rec.SourceLayout = p.version, p.layout
	if p.layout != "" {
		fmt.Fprintf(log, "kiln: layout: %s\n", p.layout)
	}
	if err := chownTree(job.WorkDir); err != nil {
		return executor.Result{}, err
	}

	phase("open buildroot %s", pb.Target)
	sb, err := b.open(ctx, job, log)
	if err != nil {
		return executor.Result{}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := sb.Close(cctx); err != nil {
			b.logger.Warn("close buildroot", "job_id", job.ID, "error", err)
		}
	}()
	rec.ChrootDigest = sb.ChrootDigest()

	run := sb.Exec
	exec := func(name string, step executor.Step, out io.Writer) (executor.StepResult, error) {
		phase("%s: %s (%s)", name, readableStep(step.Argv), stepMode(step))
		rec.Commands = append(rec.Commands, shellJoin(step.Argv))
		r, err := run(ctx, step, out)
		if err != nil {
			return r, fmt.Errorf("%s in buildroot %s: %w", name, pb.Target, err)
		}
		return r, nil
	}
	failed := func(phase string, r executor.StepResult) executor.Result {
		reason := r.Reason
		if reason == "" {
			reason = fmt.Sprintf("exit status %d", r.ExitCode)
		}
		code := r.ExitCode
		if code == 0 {
			code = 1
		}
		return executor.Result{ExitCode: code, Reason: phase + " failed: " + reason}
	}

	if p.evaluate != nil {
		var evalOut bytes.Buffer
		if r, err := exec("evaluate the recipe in the buildroot", *p.evaluate, io.MultiWriter(log, &evalOut)); err != nil || r.Failed() {
			res := failed("recipe evaluation", r)
			res.ExitCode = 1 // the package's fault: the target's own tool refused it
			if line := lastErrorLine(evalOut.Bytes()); line != "" {
				res.Reason = "the target's rpm cannot evaluate the spec: " + line
			}
			return res, err
		}
		if err := p.afterEvaluate(); err != nil {
			return executor.Result{}, err
		}
		rec.Version = p.version
	}
	if r, err := exec("source package", p.source, log); err != nil || r.Failed() {
		return failed("source package", r), err
	}
	var depsRes executor.StepResult
	handled := false
	if p.bootstrap != nil {
		if r, err := exec("list build dependencies", p.listDeps, log); err != nil || r.Failed() {
			return failed("listing build dependencies", r), err
		}
		phase("phase 1: build dependencies, installed from the bootstrap")
		depsRes, handled, err = p.bootstrap(ctx, sb, log, func(cmd string) { rec.Commands = append(rec.Commands, cmd) })
		if err != nil {
			return executor.Result{}, fmt.Errorf("build dependencies in buildroot %s: %w", pb.Target, err)
		}
		if handled && depsRes.Failed() {
			return failed("build dependencies", depsRes), nil
		}
		if handled {
			step := executor.Step{Argv: []string{"sh", "-ec", rpmList}, Root: true, Env: buildEnv(), Timeout: b.cfg.DependencyTimeout}
			if r, err := exec("list installed packages", step, log); err != nil || r.Failed() {
				return failed("listing installed packages", r), err
			}
		}
	}
	if !handled {
		run = withLayer(ctx, sb, p.resolve, job.WorkDir, log, phase)
		depsRes, err = exec("phase 1: build dependencies", p.deps, log)
		run = sb.Exec
		if err != nil || depsRes.Failed() {
			return failed("build dependencies", depsRes), err
		}
	}
	// Phase 1 ends by listing what the buildroot holds; nothing else has
	// run since, so the list is the buildroot's own.
	listing, err := readState(job.WorkDir, installedFile)
	if err != nil {
		return executor.Result{}, err
	}
	rec.Installed = parseInstalled(listing)
	fmt.Fprintf(log, "kiln: %d packages installed in the buildroot\n", len(rec.Installed))

	if r, err := exec("phase 2: build", p.build, log); err != nil || r.Failed() {
		return failed("build", r), err
	}
	// A source package that does not unpack must never be published.
	var unpackOut bytes.Buffer
	if r, err := exec("check source package", p.unpack, io.MultiWriter(log, &unpackOut)); err != nil || r.Failed() {
		res := failed("source package check", r)
		res.ExitCode = 1 // the package's fault, whatever the tool's status
		if line := lastErrorLine(unpackOut.Bytes()); line != "" {
			res.Reason = "the source package does not unpack: " + line
		}
		return res, err
	}

	phase("collect artifacts")
	// The base is captured once the build no longer runs: nothing in the
	// buildroot can touch it.
	if b.cfg.CaptureBase {
		if err := b.captureBase(job.WorkDir, sb, depsRes.Packages, log); err != nil {
			return executor.Result{}, err
		}
	}
	files, err := collect(job.WorkDir, p.collect)
	if err != nil {
		return executor.Result{}, err
	}
	if p.versionFromSRPM != "" {
		for _, f := range files {
			if v, ok := strings.CutPrefix(f, p.versionFromSRPM+"-"); ok && strings.HasSuffix(v, ".src.rpm") {
				rec.Version = strings.TrimSuffix(v, ".src.rpm")
			}
		}
	}
	if len(files) == 0 {
		fmt.Fprintf(log, "kiln: the build produced no packages\n")
		return executor.Result{ExitCode: 1, Reason: "build produced no packages"}, nil
	}
	for _, f := range files {
		fmt.Fprintf(log, "kiln: artifact %s\n", f)
	}
	return executor.Result{}, nil
}

// checkJob rejects a malformed build description.
func checkJob(job executor.Job) error {
	pb := job.Build
	if !filepath.IsAbs(job.WorkDir) {
		return fmt.Errorf("job %s: work dir %q is not an absolute path", job.ID, job.WorkDir)
	}
	if pb.Target == "" {
		return badSource("build of %q names no target; set the target", pb.Package)
	}
	if pb.Package != "" && !packageNameRE.MatchString(pb.Package) {
		return badSource("package name %q is not a valid package name", pb.Package)
	}
	for _, p := range pb.Profiles {
		if !profileRE.MatchString(p) {
			return badSource("build profile %q: use a Debian build profile name such as nocheck, nodoc or stage1", p)
		}
	}
	for _, o := range pb.Options {
		if !buildOptionRE.MatchString(o) {
			return badSource("build option %q: use NAME or NAME=VALUE as in DEB_BUILD_OPTIONS, e.g. parallel=4", o)
		}
	}
	roles := map[string]int{}
	for _, s := range pb.Sources {
		r := s.Role
		if r == "" {
			r = "combined"
		}
		switch r {
		case "combined", "code", "packaging":
			roles[r]++
		default:
			return badSource("source %s has role %q; use combined, code or packaging", s.URL, s.Role)
		}
	}
	switch {
	case len(pb.Sources) == 1 && roles["combined"] == 1:
	case len(pb.Sources) == 2 && roles["code"] == 1 && roles["packaging"] == 1:
	default:
		return badSource("build of %q has %d sources (%v); give one combined source or one code and one packaging source", pb.Package, len(pb.Sources), roles)
	}
	return nil
}

// prepare assembles the source tree in the work dir and plans the steps.
func (b *Builder) prepare(ctx context.Context, job executor.Job, repos map[string]string, srcs map[string]executor.Source) (*plan, error) {
	pb := job.Build
	for _, d := range []string{stateDir, srcDir, outDir} {
		if err := os.MkdirAll(filepath.Join(job.WorkDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("prepare work dir: %w", err)
		}
	}
	pkgRole := "combined"
	if _, ok := repos["packaging"]; ok {
		pkgRole = "packaging"
	}
	codeRole := "combined"
	if _, ok := repos["code"]; ok {
		codeRole = "code"
	}
	// Archives of the commits, kept for the tree and the upstream tarball.
	archives := map[string]string{}
	for role, dir := range repos {
		f := filepath.Join(job.WorkDir, stateDir, role+".tar")
		if err := writeFileFrom(f, func(w io.Writer) error { return b.git.Archive(ctx, dir, srcs[role].Commit, w) }); err != nil {
			return nil, err
		}
		archives[role] = f
	}
	// The packaging tree, extracted where nothing can follow it out.
	pkgTree := filepath.Join(job.WorkDir, stateDir, "packaging")
	what := "source " + srcs[pkgRole].URL + "@" + short(srcs[pkgRole].Commit)
	if err := extractArchive(what, archives[pkgRole], pkgTree, "", nil); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(pkgTree)
	if err != nil {
		return nil, fmt.Errorf("open packaging tree: %w", err)
	}
	defer root.Close()

	fam, where, err := findRecipe(root, pkgRole == "packaging", distDirs(pb.Target), pb.Recipe)
	if err != nil && pkgRole == "packaging" {
		return nil, b.wrongOrder(job, archives["code"], srcs, root, err)
	}
	if err != nil {
		return nil, badSource("%s: %v (it holds %s); if the packaging is kept in a repository of its own, give both and mark them: --source CODE@REV#code --source PACKAGING@REV#packaging", what, err, topEntries(root))
	}
	date, err := b.git.CommitTime(ctx, repos[pkgRole], srcs[pkgRole].Commit)
	if err != nil {
		return nil, err
	}
	in := prepInput{
		job: job, repoDirs: repos, srcs: srcs, root: root, what: what, archives: archives, pkgRole: pkgRole, codeRole: codeRole,
		codeWhat: "source " + srcs[codeRole].URL + "@" + short(srcs[codeRole].Commit), date: date,
	}
	return fam.plan(ctx, b, in, where)
}

// wrongOrder explains a packaging source without packaging: it names both
// repositories, says what each holds and, when the code source holds the
// packaging, that they were given the wrong way round.
func (b *Builder) wrongOrder(job executor.Job, codeArchive string, srcs map[string]executor.Source, pkgRoot *os.Root, findErr error) error {
	code, pkg := srcs["code"], srcs["packaging"]
	codeWhat := fmt.Sprintf("code source %s@%s", code.URL, short(code.Commit))
	pkgWhat := fmt.Sprintf("packaging source %s@%s", pkg.URL, short(pkg.Commit))
	probe := filepath.Join(job.WorkDir, stateDir, "code-probe")
	defer os.RemoveAll(probe)
	if err := extractArchive(codeWhat, codeArchive, probe, "", nil); err != nil {
		return err
	}
	codeRoot, err := os.OpenRoot(probe)
	if err != nil {
		return fmt.Errorf("open code tree: %w", err)
	}
	defer codeRoot.Close()
	fam, where, cerr := findRecipe(codeRoot, true, distDirs(job.Build.Target), job.Build.Recipe)
	if cerr != nil {
		return badSource("%s: %v (it holds %s); the %s holds %s", pkgWhat, findErr, topEntries(pkgRoot), codeWhat, topEntries(codeRoot))
	}
	found := fam.describe(where)
	return badSource("the repositories are the wrong way round: the %s has no packaging (it holds %s), and the %s has %s. "+
		"Give the code repository first and the packaging repository second, or mark them: --source %s@%s#packaging --source %s@%s#code",
		pkgWhat, topEntries(pkgRoot), codeWhat, found, code.URL, short(code.Commit), pkg.URL, short(pkg.Commit))
}

// topEntries lists the top of a tree for an error message: at most eight
// names, directories with a trailing "/".
func topEntries(root *os.Root) string {
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil || len(entries) == 0 {
		return "nothing"
	}
	var names []string
	for i, e := range entries {
		if i == 8 {
			names = append(names, fmt.Sprintf("and %d more", len(entries)-8))
			break
		}
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

type prepInput struct {
	job               executor.Job
	repoDirs          map[string]string // role -> cached bare repository
	srcs              map[string]executor.Source
	root              *os.Root
	what, codeWhat    string
	archives          map[string]string
	pkgRole, codeRole string
	date              time.Time
}

// findRecipe finds the recipe of the first family (in the order of
// families) whose recipe the packaging tree holds; recipe, when set, names
// the only family looked for. dists are the directories that may hold a
// distribution's packaging (see distDirs).
func findRecipe(root *os.Root, separate bool, dists []string, recipe string) (family, string, error) {
	for _, f := range families {
		if recipe != "" && recipe != string(f.format()) {
			continue
		}
		where, err := f.find(root, separate, dists)
		if err != nil {
			return nil, "", err
		}
		if where != "" {
			return f, where, nil
		}
	}
	where := "debian/ or a .spec file at the top"
	if separate {
		where = fmt.Sprintf("debian/ or a .spec file at the top or under %s/", strings.Join(dists, "/, "))
	}
	return nil, "", fmt.Errorf("no packaging found: expected %s; add the packaging or check the source", where)
}

// distDirs names the directories of a packaging repository that may hold
// a target's packaging: the target name, and its distribution part before
// the first "/", "-" or "_" ("trusty/amd64", "trusty-amd64" -> "trusty").
func distDirs(target string) []string {
	var out []string
	add := func(d string) {
		if d != "" && d != "." && d != ".." && !strings.Contains(d, "/") && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	add(target)
	if i := strings.IndexAny(target, "/-_"); i > 0 {
		add(target[:i])
	}
	return out
}

// unpackDir, in stateDir, is the scratch dir the source package is
// unpacked in after the build.
const unpackDir = "unpack"

// unpackScript runs cmd in an empty scratch dir (the current dir is
// stateDir) and removes it when cmd succeeds.
func unpackScript(cmd string) string {
	return "rm -rf " + unpackDir + "\nmkdir " + unpackDir + "\ncd " + unpackDir + "\n" + cmd +
		"\ncd ..\nrm -rf " + unpackDir + "\necho 'kiln: the source package unpacks'\n"
}

// lastErrorLine returns the last line of out that reports an error, as
// dpkg-source and rpm print them.
func lastErrorLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.Contains(l, "error:") || strings.HasPrefix(l, "error") {
			return l
		}
	}
	return ""
}

// The end of phase 1 lists the installed packages into installedFile, in
// stateDir, one "name\tversion\tarch" a line.
const (
	installedFile = "installed"
	installedPath = executor.SandboxWorkDir + "/" + stateDir + "/" + installedFile
	dpkgList      = `dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' > ` + installedPath
	rpmList       = `rpm -qa --qf '%{NAME}\t%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\t%{ARCH}\n' > ` + installedPath
)

// readState reads a file the buildroot wrote into stateDir, following no
// symlink out of the work dir.
func readState(workDir, name string) ([]byte, error) {
	root, err := os.OpenRoot(workDir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer root.Close()
	p := path.Join(stateDir, name)
	fi, err := root.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s: not a regular file", p)
	}
	data, err := root.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return data, nil
}

// buildEnv is the environment every step starts from, the same on every
// worker so that builds are reproducible.
func buildEnv() []string {
	return []string{"LC_ALL=C.UTF-8", "TZ=UTC", "LANG=C.UTF-8"}
}

// parseInstalled reads "name\tversion\tarch" lines.
func parseInstalled(data []byte) []executor.Package {
	var out []executor.Package
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			continue
		}
		out = append(out, executor.Package{Name: f[0], Version: f[1], Architecture: f[2]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Architecture < out[j].Architecture
	})
	return out
}

// open makes the job's sandbox: on the target's chroot, or for a sealed
// release on the chroot made from the release's base.
func (b *Builder) open(ctx context.Context, job executor.Job, log io.Writer) (executor.Sandbox, error) {
	pb := job.Build
	if !pb.Sealed {
		sb, err := b.opener.Open(ctx, pb.Target, job.WorkDir)
		if err != nil {
			return nil, fmt.Errorf("open buildroot %s: %w", pb.Target, err)
		}
		return sb, nil
	}
	src, err := b.cfg.baseSource(pb.Release, pb.Target)
	if err != nil {
		return nil, err
	}
	so, ok := b.opener.(executor.SealedOpener)
	if !ok {
		return nil, fmt.Errorf("release %s is sealed, and this worker's buildroot cannot make chroots from a release's base", pb.Release)
	}
	fmt.Fprintf(log, "kiln: release %s is sealed: the chroot and the build dependencies come from its base %s and its own repositories only\n", pb.Release, src.URL)
	sb, err := so.OpenSealed(ctx, pb.Target, src, job.WorkDir, log)
	if err != nil {
		return nil, fmt.Errorf("open buildroot %s of sealed release %s: %w", pb.Target, pb.Release, err)
	}
	return sb, nil
}

package pkgbuild

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kiln-build/kiln/worker/executor"
)

// prepareDeb plans a Debian build: the source tree with its orig tarball,
// the build-dependency and build scripts, the unpack check and what to
// collect.
func (b *Builder) prepareDeb(ctx context.Context, in prepInput, debDir string) (*plan, error) {
	pb := in.job.Build
	if !debSuffixRE.MatchString(pb.VersionSuffix) {
		return nil, badSource("version suffix %q may only hold letters, digits and . + ~", pb.VersionSuffix)
	}
	clPath := path.Join(debDir, "debian/changelog")
	cl, err := in.root.ReadFile(clPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", clPath, err)
	}
	head, err := parseChangelogHead(cl)
	if err != nil {
		return nil, badSource("%s: %v", in.what, err)
	}
	if pb.Package != "" && head.Source != pb.Package {
		return nil, badSource("%s: debian/changelog names source package %q, the build asked for %q; check the source mapping", in.what, head.Source, pb.Package)
	}
	fmtData, err := in.root.ReadFile(path.Join(debDir, "debian/source/format"))
	format, ferr := parseSourceFormat(fmtData, err == nil)
	if ferr != nil {
		return nil, badSource("%s: %v", in.what, ferr)
	}
	if err := formatFitsVersion(format, head.Version); err != nil {
		return nil, badSource("%s: %v", in.what, err)
	}
	version := head.Version + pb.VersionSuffix
	upver := upstreamVersion(head.Version)
	treeName := head.Source + "-" + upver
	tree := filepath.Join(in.job.WorkDir, srcDir, treeName)

	// Source tree: the code, then debian/ from the packaging.
	if in.pkgRole == "combined" {
		if err := os.Rename(filepath.Join(in.job.WorkDir, stateDir, "packaging"), tree); err != nil {
			return nil, fmt.Errorf("prepare source tree: %w", err)
		}
	} else {
		if err := extractArchive(in.codeWhat, in.archives[in.codeRole], tree, "", func(n string) bool { return !inDebian(n) }); err != nil {
			return nil, err
		}
		strip := ""
		if debDir != "." {
			strip = debDir
		}
		if err := extractArchive(in.what, in.archives[in.pkgRole], tree, strip, inDebian); err != nil {
			return nil, err
		}
	}
	layout := "one repository"
	if in.pkgRole == "packaging" {
		layout = "two repositories (code + packaging)"
	}
	layout += ", format " + string(format)
	// The upstream tarball: from the code commit, or, when the tree holds
	// its quilt patches applied, from the tree with them reverted, so that
	// the source package unpacks.
	upstreamTar := in.archives[in.codeRole]
	if format == formatQuilt {
		how, upstream, err := patchesApplied(ctx, in, tree, filepath.Join(in.job.WorkDir, stateDir, "upstream"))
		if err != nil {
			return nil, err
		}
		layout += ", " + how
		if upstream != "" {
			// The unpatched tree with debian/ is the source tree:
			// dpkg-source applies the patches itself.
			if err := os.Rename(filepath.Join(tree, "debian"), filepath.Join(upstream, "debian")); err != nil {
				return nil, fmt.Errorf("prepare source tree: %w", err)
			}
			if err := os.RemoveAll(tree); err != nil {
				return nil, fmt.Errorf("prepare source tree: %w", err)
			}
			if err := os.Rename(upstream, tree); err != nil {
				return nil, fmt.Errorf("prepare source tree: %w", err)
			}
			upstreamTar = filepath.Join(in.job.WorkDir, stateDir, "upstream.tar")
			if err := writeFileFrom(upstreamTar, func(w io.Writer) error { return tarDir(tree, in.date, w, inDebian) }); err != nil {
				return nil, err
			}
		}
	}
	if needsOrig(format, head.Version) {
		from, err := b.writeOrig(ctx, in, head.Source, upver, debDir, upstreamTar)
		if err != nil {
			return nil, err
		}
		layout += "; upstream tarball: " + from
	}
	if pb.VersionSuffix != "" {
		troot, err := os.OpenRoot(tree)
		if err != nil {
			return nil, fmt.Errorf("open source tree: %w", err)
		}
		defer troot.Close()
		old, err := troot.ReadFile("debian/changelog")
		if err != nil {
			return nil, wrapTreeErr(in.what, "debian/changelog", err)
		}
		entry := changelogEntry(head, version, pb.Release, pb.Revision, b.cfg.Maintainer, in.date)
		if err := removeIfLink(troot, "debian/changelog"); err != nil {
			return nil, wrapTreeErr(in.what, "debian/changelog", err)
		}
		if err := troot.WriteFile("debian/changelog", append([]byte(entry), old...), 0o644); err != nil {
			return nil, wrapTreeErr(in.what, "debian/changelog", err)
		}
	}

	repos, err := b.stageRepositories(in.job)
	if err != nil {
		return nil, err
	}
	dsc := head.Source + "_" + withoutEpoch(version) + ".dsc"
	srcWork := path.Join(executor.SandboxWorkDir, srcDir)
	env := buildEnv()
	p := &plan{format: FormatDeb, version: version, layout: layout}
	p.source = executor.Step{Argv: []string{"dpkg-source", "-b", treeName}, Dir: srcWork, Env: env, Timeout: b.cfg.BuildTimeout, IdleTimeout: b.cfg.IdleLimit}
	p.deps = executor.Step{
		Argv: []string{"sh", "-ec", debDepsScript(repos, pb.Pinned, dsc, pb.Profiles), "kiln-deps"},
		Dir:  srcWork + "/" + treeName, Root: true, Network: true,
		AllowHosts: repositoryHosts(repos),
		Env:        append(env, "DEBIAN_FRONTEND=noninteractive"),
		Timeout:    b.cfg.DependencyTimeout, IdleTimeout: b.cfg.IdleLimit,
	}
	resolve := p.deps
	resolve.Argv = []string{"sh", "-ec", debResolveScript(repos, pb.Pinned, dsc, pb.Profiles), "kiln-resolve"}
	p.resolve = &resolve
	p.build = executor.Step{Argv: []string{"sh", "-ec", debBuildScript(pb.Profiles, pb.Options), "kiln-build"}, Dir: srcWork + "/" + treeName, Env: env, Timeout: b.cfg.BuildTimeout, IdleTimeout: b.cfg.IdleLimit}
	p.unpack = executor.Step{
		Argv: []string{"sh", "-ec", unpackScript("dpkg-source -x " + shellQuote(srcWork+"/"+dsc) + " tree"), "kiln-unpack"},
		Dir:  path.Join(executor.SandboxWorkDir, stateDir), Env: env, Timeout: b.cfg.BuildTimeout, IdleTimeout: b.cfg.IdleLimit,
	}
	p.collect = []collectRule{{dir: srcDir, patterns: []string{"*.deb", "*.udeb", "*.ddeb", "*.dsc", "*.tar.*", "*.diff.gz", "*.changes", "*.buildinfo"}}}
	return p, nil
}

// debDepsScript installs build dependencies as root: the release's
// repository as an extra apt source, the pinned versions when rebuilding
// from a record, then whatever the .dsc's Build-Depends still lacks.
func debDepsScript(repos []Repository, pinned []executor.Package, dsc string, profiles []string) string {
	var s strings.Builder
	// The buildroot is thrown away after the build: dpkg need not sync
	// each file it unpacks, and no translated descriptions are needed.
	s.WriteString("apt_opts='-y --no-install-recommends -o Dpkg::Use-Pty=0 -o APT::Color=0 -o Dpkg::Options::=--force-unsafe-io'\nupdated=\n")
	s.WriteString("update() { if [ -z \"$updated\" ]; then apt-get update -o APT::Color=0 -o Acquire::Languages=none; updated=1; fi; }\n")
	for _, r := range repos {
		if r.Apt != "" {
			if why := unverified(r); why != "" {
				fmt.Fprintf(&s, "echo %s\n", shellQuote("kiln: warning: release repository "+aptSourceURI(r.Apt)+" is not verified: "+why+"; give its key with key_file or signed-by"))
			}
			fmt.Fprintf(&s, "echo %s >> /etc/apt/sources.list.d/kiln-release.list\n", shellQuote(r.Apt))
		}
	}
	s.WriteString(httpsViaProxy(aptSources...))
	if len(repos) > 0 {
		s.WriteString("update\n")
	}
	if len(pinned) > 0 {
		s.WriteString("update\n" + debPinCheck(pinned))
		s.WriteString("echo 'kiln: installing pinned build dependencies'\napt-get install $apt_opts --allow-downgrades" + debPins(pinned) + "\n")
	}
	prof := ""
	if len(profiles) > 0 {
		prof = " -P " + shellQuote(strings.Join(profiles, ","))
	}
	fmt.Fprintf(&s, "if dpkg-checkbuilddeps%s; then\n  echo 'kiln: build dependencies already satisfied'\nelse\n  update\n  apt-get build-dep $apt_opts%s %s\nfi\n", prof, prof, shellQuote("../"+dsc))
	s.WriteString(dpkgList + "\n")
	return s.String()
}

// aptSources are apt's source files in a buildroot.
var aptSources = []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"}

// httpsViaProxy is the shell that, when the step reaches its sources
// through the package source proxy (http_proxy set), names every https
// source in the files (globs) as http://host:443/... (the port kept when
// given): apt and dnf then send those requests to the proxy in the open,
// and the proxy fetches them over https, so their package files are
// cached and captured into the base instead of passing through a tunnel
// it cannot see. apt and dnf verify them against the signed Release or
// repomd.xml as before.
func httpsViaProxy(files ...string) string {
	return `if [ -n "${http_proxy:-}" ]; then
  for f in ` + strings.Join(files, " ") + `; do
    if [ -f "$f" ] && grep -q 'https://' "$f"; then
      sed -i -E 's#https://([^]/:[]+)/#http://\1:443/#g; s#https://(\[[^]]+\])/#http://\1:443/#g; s#https://([^/]+)/#http://\1/#g' "$f"
      echo "kiln: https sources in $f fetched through the package source proxy as http://host:443/, over https from there"
    fi
  done
fi
`
}

// debResolveScript writes to resolvedPath what debDepsScript would install
// (apt's plan with the sha256 of each package file, aptPlan), from the
// chroot as it is, and leaves no apt source behind; it writes nothing when
// the build dependencies are already satisfied.
func debResolveScript(repos []Repository, pinned []executor.Package, dsc string, profiles []string) string {
	var s strings.Builder
	s.WriteString("apt_opts='-y --no-install-recommends -o APT::Color=0'\n: > " + resolvedPath + "\n")
	prof := ""
	if len(profiles) > 0 {
		prof = " -P " + shellQuote(strings.Join(profiles, ","))
	}
	if len(repos) == 0 && len(pinned) == 0 {
		fmt.Fprintf(&s, "if dpkg-checkbuilddeps%s >/dev/null 2>&1; then exit 0; fi\n", prof)
	}
	for _, r := range repos {
		if r.Apt != "" {
			fmt.Fprintf(&s, "echo %s >> /etc/apt/sources.list.d/kiln-release.list\n", shellQuote(r.Apt))
		}
	}
	s.WriteString(httpsViaProxy(aptSources...))
	s.WriteString("apt-get update -o APT::Color=0 -o Acquire::Languages=none\n{\n")
	if len(pinned) > 0 {
		s.WriteString("  apt-get install " + aptPlan + " $apt_opts --allow-downgrades" + debPins(pinned) + "\n")
	}
	fmt.Fprintf(&s, "  if ! dpkg-checkbuilddeps%s >/dev/null 2>&1; then\n", prof)
	fmt.Fprintf(&s, "    apt-get build-dep %s $apt_opts%s %s\n", aptPlan, prof, shellQuote("../"+dsc))
	s.WriteString("  fi\n} > " + resolvedPath + "\nrm -f /etc/apt/sources.list.d/kiln-release.list\n")
	return s.String()
}

// aptPlan makes apt-get say what it would do, without doing it: the
// packages it would install, upgrade, downgrade and remove, and the URI,
// size and sha256 of every package file it would fetch.
const aptPlan = "--print-uris -q -o Acquire::ForceHash=SHA256"

// aptResolution keeps, sorted, the lines of apt's plan (aptPlan: the
// lists of packages and the URIs with each file's sha256) that say what
// phase 1 installs and removes.
func aptResolution(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "'") || strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "The following ") ||
			strings.Contains(l, " upgraded, ") && strings.Contains(l, " newly installed, ") {
			keep = append(keep, strings.TrimRight(l, " "))
		}
	}
	slices.Sort(keep)
	return strings.Join(keep, "\n")
}

// debBuildScript runs dpkg-buildpackage with the build's profiles and
// options; without parallel=N it adds parallel=<the buildroot's CPUs>: its
// cgroup CPU limit, rounded up, or else the CPUs it may run on.
// The nocheck and nodoc profiles come with the same build options, as
// Debian policy asks, since packages test for those.
func debBuildScript(profiles, options []string) string {
	options = slices.Clone(options)
	for _, p := range profiles {
		if (p == "nocheck" || p == "nodoc") && !slices.Contains(options, p) {
			options = append(options, p)
		}
	}
	var s strings.Builder
	fmt.Fprintf(&s, "opts=%s\n", shellQuote(strings.Join(options, " ")))
	s.WriteString(`case " $opts " in *" parallel="*) ;; *)
  n=$(nproc)
  if [ -r /sys/fs/cgroup/cpu.max ]; then
    read -r quota period < /sys/fs/cgroup/cpu.max
    if [ "$quota" != max ]; then n=$(( (quota + period - 1) / period )); fi
  fi
  opts="${opts:+$opts }parallel=$n" ;;
esac
export DEB_BUILD_OPTIONS="$opts"
`)
	fmt.Fprintf(&s, "export DEB_BUILD_PROFILES=%s\n", shellQuote(strings.Join(profiles, " ")))
	s.WriteString("echo \"kiln: DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS DEB_BUILD_PROFILES=$DEB_BUILD_PROFILES\"\n")
	s.WriteString("exec dpkg-buildpackage -us -uc")
	if len(profiles) > 0 {
		s.WriteString(" " + shellQuote("-P"+strings.Join(profiles, ",")))
	}
	s.WriteString("\n")
	return s.String()
}

// debPinCheck is a script that ends the step, naming every recorded
// version that none of the buildroot's apt sources hold, before apt-get
// gives up on the first one with a message about that one alone. For a
// sealed release it means the release's base lacks them (they were
// installed before it captured its base); otherwise the upstream mirror
// no longer carries them.
func debPinCheck(pinned []executor.Package) string {
	var s strings.Builder
	s.WriteString("missing=\nfor p in" + debPins(pinned) + "; do\n  apt-cache show \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\"\ndone\n")
	s.WriteString(`if [ -n "$missing" ]; then
  echo "kiln: the build record names versions that none of this buildroot's sources hold:$missing" >&2
  echo "kiln: a sealed release builds only from what its base captured, and an unsealed one from what the upstream mirror still carries; rebuild without --verify to take current versions" >&2
  exit 100
fi
`)
	return s.String()
}

// debPins is the apt-get install arguments for exact versions, each
// " name[:arch]=version".
func debPins(pinned []executor.Package) string {
	var s strings.Builder
	for _, p := range pinned {
		spec := p.Name
		if p.Architecture != "" && p.Architecture != "all" {
			spec += ":" + p.Architecture
		}
		s.WriteString(" " + shellQuote(spec+"="+p.Version))
	}
	return s.String()
}

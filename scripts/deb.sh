#!/bin/sh
# Build Kiln's Debian packages, one per role, with dpkg-deb:
#
#   scripts/deb.sh [OUTDIR]     (default: bin/deb; `make deb`)
#
#   kiln-coordinator  /usr/bin/coordinator (server and the CLI Jenkins calls), user kiln
#   kiln-worker       /usr/bin/worker, kiln-containerd.service and its config
#   kiln-publisher    /usr/bin/publisher, user kiln-publisher, /etc/kiln/publisher (0750)
#   kiln-mirror       /usr/bin/mirror
#
# Each package has its man page, its systemd unit in /lib/systemd/system,
# /etc/kiln/<role>.yaml (from examples/) as a conffile, and maintainer
# scripts that follow dh_installsystemd's --no-enable --no-start snippets:
# installing enables and starts nothing (the config must be edited first),
# an upgrade restarts a running service, and nothing calls systemctl where
# systemd does not run.
#
# Reproducible: the same tree gives byte-identical .debs. Binaries are built
# with -trimpath and no build id, file times are SOURCE_DATE_EPOCH (default:
# the last commit's time), owners root:root, modes fixed.
#
# Environment: VERSION (default: from git describe, or 0~gitYYYYMMDD.HASH
# without a v* tag; +dirty when the tree has changes), SOURCE_DATE_EPOCH
# (both needed outside a git checkout),
# DEB_ARCH (default: dpkg --print-architecture), MAINTAINER, GO (default go).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${1:-$top/bin/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
GO=${GO:-go}
MAINTAINER=${MAINTAINER:-Kiln maintainers <kiln@kiln-build.org>}

die() { echo "deb.sh: $*" >&2; exit 1; }

for tool in dpkg-deb gzip git "$GO"; do
	command -v "$tool" >/dev/null || die "$tool is needed (apt-get install dpkg-dev git; Go on PATH)"
done
cd "$top"

commit="" dirty=""
if git rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git rev-parse HEAD)
	[ -z "$(git status --porcelain --untracked-files=no)" ] || dirty="+dirty"
	SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
elif [ -z "${VERSION:-}" ] || [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	die "$top is not a git checkout: set VERSION and SOURCE_DATE_EPOCH"
fi
export SOURCE_DATE_EPOCH
if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		# v1.2.3 -> 1.2.3; v1.2.3-4-gabcdef -> 1.2.3+git4.abcdef
		VERSION=$(echo "${tag#v}" | sed -E 's/-([0-9]+)-g([0-9a-f]+)$/+git\1.\2/')$dirty
	else
		VERSION=0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$(git rev-parse --short=12 HEAD)$dirty
	fi
fi
echo "$VERSION" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$' ||
	die "VERSION $VERSION is not a Debian version without a revision (digits first; letters, digits, . + ~)"
DEB_ARCH=${DEB_ARCH:-$(dpkg --print-architecture)}
case $DEB_ARCH in
amd64 | arm64 | riscv64 | s390x | ppc64le) goarch=$DEB_ARCH ;;
i386) goarch=386 ;;
armhf) goarch=arm ;;
*) die "DEB_ARCH $DEB_ARCH: no Go architecture known for it (amd64, arm64, i386, armhf, riscv64, s390x, ppc64le)" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
date_rfc2822=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)

# Depends and the rest of each package's control fields. What each binary
# runs is in README.md and scripts/setup.sh.
control_fields() {
	case $1 in
	coordinator)
		echo "Depends: adduser, git"
		echo "Recommends: openssh-client, ca-certificates"
		echo "Suggests: diffoscope-minimal"
		echo "Description: Kiln package build farm: coordinator and command line client"
		echo " The coordinator takes Gerrit events and requests from Jenkins pipelines,"
		echo " schedules jobs onto the build workers over gRPC and hands successful"
		echo " release builds to the publisher. The same binary is the command line"
		echo " client that Jenkins pipelines and people run (coordinator build, jobs)."
		;;
	worker)
		echo "Depends: containerd, runc, mmdebstrap, git, xz-utils, ca-certificates"
		echo "Recommends: zstd"
		echo "Suggests: dnf, rpm"
		echo "Description: Kiln package build farm: build worker"
		echo " The worker pulls jobs from the Kiln coordinator and builds .deb and .rpm"
		echo " packages in clean containerd buildroots (a read-only chroot made with"
		echo " mmdebstrap or dnf, with a tmpfs overlay per build), or runs plain commands."
		echo " It runs its own containerd (kiln-containerd.service). dnf is needed for"
		echo " RPM targets made with method dnf."
		;;
	publisher)
		echo "Depends: adduser, xz-utils, rsync"
		echo "Recommends: openssh-client, gnupg"
		echo "Description: Kiln package build farm: publisher of signed repositories"
		echo " The publisher keeps signed Debian and RPM repositories with an OpenPGP"
		echo " key the operator chooses, takes builds from the coordinator over gRPC,"
		echo " keeps snapshots and pushes the repositories to mirrors with rsync. The"
		echo " signing key lives on the publisher host only (/etc/kiln/publisher)."
		;;
	mirror)
		echo "Recommends: rsync"
		echo "Description: Kiln package build farm: repository mirror"
		echo " The mirror serves the repositories the Kiln publisher pushes to it by"
		echo " rsync to apt and dnf over HTTP."
		;;
	esac
}

# The system user a role's service runs as (none: root or DynamicUser).
role_user() {
	case $1 in
	coordinator) echo kiln ;;
	publisher) echo kiln-publisher ;;
	esac
}

# units of a role's package.
role_units() {
	case $1 in
	worker) echo "kiln-worker.service kiln-containerd.service" ;;
	*) echo "kiln-$1.service" ;;
	esac
}

write_postinst() { # role units
	role=$1
	shift
	user=$(role_user "$role")
	{
		echo "#!/bin/sh"
		echo "set -e"
		echo
		if [ -n "$user" ]; then
			cat <<EOF
if [ "\$1" = configure ]; then
	adduser --system --group --quiet --home /nonexistent --no-create-home $user
fi
EOF
		fi
		if [ "$role" = publisher ]; then
			cat <<'EOF'
# The signing key's directory: readable by the publisher's group only.
if [ "$1" = configure ] && ! dpkg-statoverride --list /etc/kiln/publisher >/dev/null; then
	dpkg-statoverride --update --add root kiln-publisher 0750 /etc/kiln/publisher
fi
EOF
		fi
		for unit in "$@"; do
			cat <<EOF

# As dh_installsystemd --no-enable --no-start: record the unit, enable and
# start nothing; restart it after an upgrade if it runs.
if [ "\$1" = configure ] || [ "\$1" = abort-upgrade ] || [ "\$1" = abort-deconfigure ] || [ "\$1" = abort-remove ]; then
	if command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper unmask '$unit' >/dev/null || true
		deb-systemd-helper update-state '$unit' >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "\$2" ]; then
			deb-systemd-invoke try-restart '$unit' >/dev/null || true
		fi
	fi
fi
EOF
		done
	} >"$pkg/DEBIAN/postinst"
}

write_prerm() { # units
	{
		echo "#!/bin/sh"
		echo "set -e"
		for unit in "$@"; do
			cat <<EOF

if [ -d /run/systemd/system ] && [ "\$1" = remove ]; then
	deb-systemd-invoke stop '$unit' >/dev/null || true
fi
EOF
		done
	} >"$pkg/DEBIAN/prerm"
}

write_postrm() { # role units
	role=$1
	shift
	{
		echo "#!/bin/sh"
		echo "set -e"
		echo
		echo 'if [ -d /run/systemd/system ]; then'
		echo '	systemctl --system daemon-reload >/dev/null || true'
		echo 'fi'
		for unit in "$@"; do
			cat <<EOF

if [ "\$1" = remove ] && command -v deb-systemd-helper >/dev/null; then
	deb-systemd-helper mask '$unit' >/dev/null || true
fi
if [ "\$1" = purge ] && command -v deb-systemd-helper >/dev/null; then
	deb-systemd-helper purge '$unit' >/dev/null || true
	deb-systemd-helper unmask '$unit' >/dev/null || true
fi
EOF
		done
		if [ "$role" = publisher ]; then
			cat <<'EOF'

if [ "$1" = purge ] && dpkg-statoverride --list /etc/kiln/publisher >/dev/null; then
	dpkg-statoverride --remove /etc/kiln/publisher
fi
EOF
		fi
	} >"$pkg/DEBIAN/postrm"
}

roles="coordinator worker publisher mirror"
# One go build links the four binaries side by side.
mkdir -p "$work/bin"
# shellcheck disable=SC2046
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch "$GO" build -trimpath -buildvcs=false \
	-ldflags '-s -w -buildid=' -o "$work/bin/" $(for role in $roles; do echo "./$role"; done)

for role in $roles; do
	name=kiln-$role
	pkg=$work/$name
	units=$(role_units "$role")
	mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/$name" \
		"$pkg/lib/systemd/system" "$pkg/etc/kiln"

	mv "$work/bin/$role" "$pkg/usr/bin/$role"
	gzip -9n <"docs/man/$role.1" >"$pkg/usr/share/man/man1/$role.1.gz"
	for unit in $units; do
		cp "dist/systemd/$unit" "$pkg/lib/systemd/system/$unit"
		grep -q '^ExecStart=/usr/bin/' "$pkg/lib/systemd/system/$unit" ||
			die "dist/systemd/$unit: ExecStart is not in /usr/bin, where the packages put the binaries"
	done
	cp "examples/$role.yaml" "$pkg/etc/kiln/$role.yaml"
	echo "/etc/kiln/$role.yaml" >"$pkg/DEBIAN/conffiles"
	case $role in
	worker)
		mkdir -p "$pkg/etc/kiln/containerd"
		cp scripts/containerd/config.toml "$pkg/etc/kiln/containerd/config.toml"
		echo /etc/kiln/containerd/config.toml >>"$pkg/DEBIAN/conffiles"
		;;
	publisher)
		mkdir -p "$pkg/etc/kiln/publisher"
		;;
	esac

	cat >"$pkg/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kiln
Source: https://github.com/kiln-build/kiln

Files: *
Copyright: $year the Kiln authors
License: other
 The source tree carries no license file; ask the Kiln authors for the terms
 under which this binary may be used and passed on. The binary also contains
 the Go modules listed in the source's go.mod, under their own licenses.
EOF
	# Go binaries are static (CGO_ENABLED=0, the SQLite driver is pure Go),
	# as Debian's own Go packages are.
	mkdir -p "$pkg/usr/share/lintian/overrides"
	printf '# Go binary built with CGO_ENABLED=0: static by design.\n%s: statically-linked-binary [usr/bin/%s]\n' \
		"$name" "$role" >"$pkg/usr/share/lintian/overrides/$name"
	printf '%s (%s) unstable; urgency=medium\n\n  * Built from %s%s.\n\n -- %s  %s\n' \
		"$name" "$VERSION" "${commit:+git commit }${commit:-a source tree outside git}" "$dirty" "$MAINTAINER" "$date_rfc2822" |
		gzip -9n >"$pkg/usr/share/doc/$name/changelog.gz"

	# shellcheck disable=SC2086
	write_postinst "$role" $units
	# shellcheck disable=SC2086
	write_prerm $units
	# shellcheck disable=SC2086
	write_postrm "$role" $units

	find "$pkg" -type d -exec chmod 0755 {} +
	find "$pkg" -type f -exec chmod 0644 {} +
	chmod 0755 "$pkg/usr/bin/$role" "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
	(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
		xargs md5sum >DEBIAN/md5sums)
	size=$(du -sk --apparent-size --exclude=DEBIAN "$pkg" | cut -f1)
	{
		echo "Package: $name"
		echo "Version: $VERSION"
		echo "Architecture: $DEB_ARCH"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		echo "Section: devel"
		echo "Priority: optional"
		echo "Homepage: https://github.com/kiln-build/kiln"
		control_fields "$role"
	} >"$pkg/DEBIAN/control"
	find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
done

# The four compressions run side by side; the packages are printed in order.
pids=""
for role in $roles; do
	dpkg-deb --root-owner-group -Zxz -z2 --build "$work/kiln-$role" \
		"$out/kiln-${role}_${VERSION}_$DEB_ARCH.deb" >/dev/null &
	pids="$pids $!"
done
for pid in $pids; do
	wait "$pid" || die "dpkg-deb failed (its message is above)"
done
for role in $roles; do
	echo "$out/kiln-${role}_${VERSION}_$DEB_ARCH.deb"
done

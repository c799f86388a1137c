#!/bin/sh
# Make the stand-in RPM distribution the tests build against: Debian's
# packages for a small buildroot (a shell, coreutils, rpm with rpmbuild,
# tar/gzip/cpio/patch, make: enough for noarch builds), each repacked as an
# RPM with rpmbuild from its own files, plus a few native RPMs only this
# distribution provides.
# createrepo_c writes the repository; its packages and repomd.xml are signed
# with a key made here.
#
#   scripts/rpmdist.sh OUT
#
# OUT gets:
#   repo/                 the repository (Packages/*.rpm, repodata/,
#                         repodata/repomd.xml.asc), served as dnf's baseurl
#   RPM-GPG-KEY-kiln-dist the public key (armored) that signs it
#   gnupg/                the signing key's home (tests only)
#
# How a Debian package becomes an RPM: Name, Epoch:Version-Release and
# Architecture (all -> noarch, amd64 -> x86_64) are kept; Depends and
# Pre-Depends become Requires (alternatives become rich dependencies
# "(a or b)"), Provides stay Provides; rpm's own automatic dependencies are
# off. Files under /bin, /sbin and /lib* move under /usr (the distribution
# is merged-/usr, its filesystem package holds the links). Maintainer
# scripts are not carried: what they would set up (users, /bin/sh, awk, the
# rpm database location) is in the native kiln-dist-setup package.
# Conflicts and Breaks are dropped.
#
# The itests (itest/rpmdist_test.go) run this once per machine and cache
# OUT under $KILN_TEST_CACHE/rpmdist/, keyed by this file's sha256: edit it
# (e.g. the package list) and the next test run makes a new one.
set -eu

# What the buildroot needs, resolved against Debian's archive with apt.
packages="
	base-files bash coreutils dash diffutils findutils grep gzip sed tar
	util-linux mawk passwd libc-bin
	rpm cpio patch make xz-utils bzip2 file
"
# Native packages' versions: kiln-dist-devel exists in two, so that a pinned
# rebuild can be told from one that takes the newest.
devel_versions="1.0 1.1"

# rpmbuild settings for a repacked or native package: files as they are,
# no automatic dependencies, no debuginfo, no post-processing.
rpmdefs() {
	printf '%s\n' \
		"--define=_topdir $work/top" \
		"--define=_rpmdir $repo/Packages" \
		"--define=_build_id_links none" \
		"--define=debug_package %{nil}" \
		"--define=__spec_install_pre %{nil}" \
		"--define=__os_install_post %{nil}" \
		"--define=__arch_install_post %{nil}" \
		"--define=_binary_payload w3.zstdio" \
		"--define=_buildhost kiln-dist.invalid" \
		"--define=_rpmfilename %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm"
}

# deps FIELD-VALUE: a Debian relationship field as RPM dependencies, one a line.
deps() {
	printf '%s\n' "$1" | tr ',' '\n' | awk '
	function one(s,   n, op, v, m) {
		gsub(/^[ \t]+|[ \t]+$/, "", s)
		if (match(s, /\(.*\)/)) {
			m = substr(s, RSTART + 1, RLENGTH - 2)
			n = substr(s, 1, RSTART - 1)
			gsub(/[ \t]+/, "", n)
			split(m, p, /[ \t]+/)
			op = p[1]; v = p[2]
			if (op == "<<") op = "<"
			if (op == ">>") op = ">"
			sub(/:(any|native)$/, "", n)
			return n " " op " " v
		}
		sub(/:(any|native)$/, "", s)
		return s
	}
	{
		gsub(/^[ \t]+|[ \t]+$/, "")
		if ($0 == "") next
		n = split($0, alt, /\|/)
		if (n == 1) { print one(alt[1]); next }
		r = "(" one(alt[1])
		for (i = 2; i <= n; i++) r = r " or " one(alt[i])
		print r ")"
	}'
}

# repack DEB: build the RPM of one Debian package.
repack() {
	deb=$1
	name=$(dpkg-deb -f "$deb" Package)
	dver=$(dpkg-deb -f "$deb" Version)
	darch=$(dpkg-deb -f "$deb" Architecture)
	epoch=
	case $dver in *:*) epoch=${dver%%:*}; dver=${dver#*:} ;; esac
	case $dver in
	*-*) ver=${dver%-*}; rel=${dver##*-} ;;
	*) ver=$dver; rel=0 ;;
	esac
	ver=$(printf '%s' "$ver" | tr '-' '_')
	case $darch in all) arch=noarch ;; amd64) arch=x86_64 ;; *) arch=$darch ;; esac
	root=$work/roots/$name
	rm -rf "$root"
	mkdir -p "$root"
	dpkg-deb -x "$deb" "$root"
	for d in bin sbin lib lib32 lib64 libx32; do
		if [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
			mkdir -p "$root/usr/$d"
			cp -a "$root/$d/." "$root/usr/$d/"
			rm -rf "${root:?}/$d"
		fi
	done
	spec=$work/specs/$name.spec
	{
		echo "Name: $name"
		[ -z "$epoch" ] || echo "Epoch: $epoch"
		echo "Version: $ver"
		echo "Release: $rel"
		echo "Summary: Debian package $name $(dpkg-deb -f "$deb" Version), repacked"
		echo "License: see /usr/share/doc/$name/copyright"
		echo "AutoReqProv: no"
		echo "Requires(pre): kiln-dist-filesystem"
		deps "$(dpkg-deb -f "$deb" Pre-Depends)" | sed 's/^/Requires(pre): /'
		deps "$(dpkg-deb -f "$deb" Depends)" | sed 's/^/Requires: /'
		deps "$(dpkg-deb -f "$deb" Provides)" | sed 's/^/Provides: /'
		echo "%description"
		echo "Debian's $name, repacked for Kiln's stand-in RPM distribution."
		echo "%files"
		# Top-level entries: shared directories are owned alike by
		# every package that has files below them, as rpm allows.
		for e in "$root"/* "$root"/.[!.]*; do
			[ -e "$e" ] || [ -L "$e" ] || continue
			echo "/${e#"$root"/}"
		done
	} >"$spec"
	# shellcheck disable=SC2046
	(IFS='
'; rpmbuild -bb --quiet --target "$arch" --buildroot "$root" $(rpmdefs) "$spec") >"$work/specs/$name.log" 2>&1 || {
		cat "$work/specs/$name.log" >&2
		echo "rpmdist.sh: repacking $deb failed" >&2
		return 1
	}
	rm -rf "$root"
}

# native NAME VERSION ARCH FILES-SETUP EXTRA-PREAMBLE: build a native package
# whose buildroot FILES-SETUP (a shell snippet, $r is the root) fills.
native() {
	name=$1 ver=$2 arch=$3 setup=$4 extra=$5
	root=$work/roots/$name-$ver
	rm -rf "$root"
	mkdir -p "$root"
	r=$root
	eval "$setup"
	spec=$work/specs/$name-$ver.spec
	{
		echo "Name: $name"
		echo "Version: $ver"
		echo "Release: 1"
		echo "Summary: $name, only in Kiln's stand-in RPM distribution"
		echo "License: Apache-2.0"
		echo "BuildArch: $arch"
		echo "AutoReqProv: no"
		printf '%s\n' "$extra"
		echo "%description"
		echo "$name of Kiln's stand-in RPM distribution."
		echo "%files"
		for e in "$root"/*; do
			[ -e "$e" ] || [ -L "$e" ] || continue
			echo "/${e#"$root"/}"
		done
	} >"$spec"
	# shellcheck disable=SC2046
	(IFS='
'; rpmbuild -bb --quiet --buildroot "$root" $(rpmdefs) "$spec") >"$work/specs/$name-$ver.log" 2>&1 || {
		cat "$work/specs/$name-$ver.log" >&2
		exit 1
	}
	rm -rf "$root"
}

[ $# = 1 ] || [ "${1:-}" = --repack ] || { echo "usage: $0 OUT" >&2; exit 2; }
out=$1
for tool in apt-get dpkg-deb rpmbuild rpmsign createrepo_c gpg; do
	command -v "$tool" >/dev/null || { echo "rpmdist.sh: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done

if [ "${1:-}" = --repack ]; then
	# One package, for the parallel step 4.
	out=$2 work=$2/work repo=$2/repo
	repack "$3"
	exit
fi
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/work
repo=$out/repo
mkdir -p "$work/apt/cache" "$work/apt/etc" "$work/debs/partial" "$work/specs" "$repo/Packages"
: >"$work/apt/status"

# 1. The closure, downloaded by apt from an empty system's point of view.
# shellcheck disable=SC2086
apt-get -q -y -o Debug::NoLocking=1 -o APT::Install-Recommends=0 \
	-o Dir::State::status="$work/apt/status" -o Dir::Cache="$work/apt/cache" \
	-o Dir::Cache::archives="$work/debs" -o APT::Sandbox::User=root \
	install --download-only $packages >"$work/apt.log" 2>&1 || {
	cat "$work/apt.log" >&2
	exit 1
}
echo "rpmdist.sh: $(ls "$work"/debs/*.deb | wc -l) Debian packages in the closure"

# 2. The signing key.
gnupg=$out/gnupg
mkdir -m 700 "$gnupg"
gpg --batch --quiet --homedir "$gnupg" --passphrase '' --quick-gen-key "Kiln stand-in RPM distribution <dist@kiln.invalid>" ed25519 sign never
gpg --batch --quiet --homedir "$gnupg" --armor --export >"$out/RPM-GPG-KEY-kiln-dist"

# 3. The native packages.
native kiln-dist-filesystem 1 noarch '
	mkdir -p $r/usr/bin $r/usr/sbin $r/usr/lib $r/usr/lib64 $r/etc $r/var/tmp $r/var/lib/rpm $r/root $r/home $r/tmp $r/proc $r/sys $r/dev $r/run
	chmod 1777 $r/tmp $r/var/tmp
	chmod 700 $r/root
	for d in bin sbin lib lib64; do ln -s usr/$d $r/$d; done
' ''
native kiln-dist-setup 1 noarch '
	mkdir -p $r/etc/rpm $r/usr/bin
	printf "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" >$r/etc/passwd
	printf "root:x:0:\nmail:x:8:\nutmp:x:43:\ntty:x:5:\nshadow:x:42:\nusers:x:100:\nnogroup:x:65534:\n" >$r/etc/group
	printf "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n" >$r/etc/shadow
	printf "root:*::\nmail:*::\nutmp:*::\ntty:*::\nshadow:*::\nusers:*::\nnogroup:*::\n" >$r/etc/gshadow
	chmod 640 $r/etc/shadow $r/etc/gshadow
	ln -s mawk $r/usr/bin/awk
	# The rpm database where RPM distributions keep it (Debian s rpm
	# defaults to ~/.rpmdb).
	printf "%%_dbpath /var/lib/rpm\n" >$r/etc/rpm/macros.dbpath
' 'Requires(pre): kiln-dist-filesystem'
native kiln-dist-release 1 noarch '
	mkdir -p $r/etc/rpm $r/etc/pki/rpm-gpg $r/etc/yum.repos.d
	echo "Kiln stand-in RPM distribution release 1" >$r/etc/kiln-dist-release
	printf "%%dist .kd1\n%%kiln_dist 1\n" >$r/etc/rpm/macros.dist
	cp "$out/RPM-GPG-KEY-kiln-dist" $r/etc/pki/rpm-gpg/RPM-GPG-KEY-kiln-dist
' 'Provides: system-release = 1
Provides: system-release(releasever) = 1
Requires(pre): kiln-dist-filesystem'
for v in $devel_versions; do
	native kiln-dist-devel "$v" noarch '
		mkdir -p $r/usr/share/kiln-dist-devel $r/etc/rpm
		echo "$v" >$r/usr/share/kiln-dist-devel/version
		printf "%%kiln_dist_devel_version %s\n" "$v" >$r/etc/rpm/macros.kiln-dist-devel
	' "Provides: kiln-dist-devel(api) = ${v%%.*}"
done

# 4. The Debian packages, repacked, two at a time.
mkdir -p "$work/roots" "$work/top"
ls "$work"/debs/*.deb | xargs -P 2 -n 1 "$0" --repack "$out"

# 5. The repository, signed.
rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name dist@kiln.invalid" --define "_gpg_path $gnupg" "$repo"/Packages/*.rpm >"$work/rpmsign.log" 2>&1 || {
	cat "$work/rpmsign.log" >&2
	exit 1
}
createrepo_c --quiet "$repo"
gpg --batch --quiet --homedir "$gnupg" --armor --detach-sign "$repo/repodata/repomd.xml"
rm -rf "$work"
echo "rpmdist.sh: $(ls "$repo"/Packages/*.rpm | wc -l) packages in $repo"

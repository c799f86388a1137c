#!/bin/sh
# Prepare a Debian 12 machine for Kiln's demo and tests: install the
# distribution tools Kiln drives and the clients that judge what it writes,
# then start Kiln's own containerd. Idempotent; needs root.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

packages="
	containerd runc mmdebstrap uidmap
	git rsync
	dpkg-dev debhelper fakeroot build-essential apt-utils reprepro
	patch pristine-tar git-buildpackage
	rpm createrepo-c dnf cpio
	gnupg gpgv apt-file xfsprogs
	diffoscope-minimal
	zstd xz-utils ca-certificates curl openssh-client procps iproute2
	chromium
	postgresql
	lintian puppet puppet-lint
"

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and starts containerd)" >&2; exit 1; }

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup.sh: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

command -v go >/dev/null || { echo "setup.sh: Go 1.26 is needed on PATH (/usr/local/go/bin)" >&2; exit 1; }

"$here/containerd.sh" start
"$here/postgres.sh" start

#!/bin/bash
# Wall time of Kiln's whole package build pipeline (fetch, source package,
# build dependencies, build, collection) for worker/pkgbuild's testdata Debian
# package, against plain dpkg-buildpackage of the same source in the same
# chroot, in one run. Goal: Kiln's overhead under 3 s per build.
#
# Needs root and the project's containerd (scripts/containerd.sh start); the
# test chroot is made with mmdebstrap the first time on a machine.
#
# Usage: bench/pkgbuild/run.sh [BUILDS]   (default 10 builds of each)
set -euo pipefail
cd "$(dirname "$0")/../.."
builds=${1:-10}
if [[ ! $builds =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 [BUILDS]: BUILDS must be a positive number, got '$builds'" >&2
	exit 2
fi
# The buildroot's debug log goes to the benchmark's log; keep only ours.
KILN_TEST_STRICT=1 go test -run '^$' -bench '^BenchmarkPipeline$' \
	-benchtime "${builds}x" -timeout 30m ./worker/pkgbuild/ |
	grep -v 'buildroottest.go:'

#!/bin/sh
# Measures a clean buildroot's costs in one run on one chroot: container
# start overhead (prepare to exit of `true`, median and p95), `cp -a` of the
# chroot, and a fresh mmdebstrap; prints the ratios. Results are recorded in
# worker/buildroot/BENCHMARKS.md.
#
#   bench/buildroot/run.sh [-n 100] [-mirror URL] [-suite bookworm] [-dir /var/tmp/kiln-bench]
#
# Needs root, mmdebstrap, Debian's archive and Kiln's containerd (started
# here if it is not running).
set -eu
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
scripts/containerd.sh start >/dev/null
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -r), $(nproc) CPUs, containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), cgroup $( [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
go run ./bench/buildroot "$@"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

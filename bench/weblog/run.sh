#!/bin/bash
# The live log benchmark: a real coordinator process (development mode)
# whose store holds 100,000 finished jobs, a real worker process, and
# server-sent-event clients following a running job's log on
# /jobs/ID/log/events. It prints, per number of followers, the delay from
# the job printing a line to the line reaching the followers (p50, p95,
# max) and the coordinator's resident memory before and while they follow.
#
#   bench/weblog/run.sh [-jobs 100000] [-clients 1,50] [-lines 200] [-every 50ms]
#
# Work files go under KILN_BENCH_DIR (default: a new temporary directory,
# removed afterwards).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-}
if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/kiln-bench-weblog.XXXXXX)
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
(cd "$repo_root" && go build -o "$work/coordinator" ./coordinator && go build -o "$work/worker" ./worker && go build -o "$work/weblog-bench" ./bench/weblog)

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(go version | awk '{print $3}'), commit $(cd "$repo_root" && git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/weblog-bench" -coordinator "$work/coordinator" -worker "$work/worker" -dir "$work" "$@"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

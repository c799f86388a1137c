#!/bin/bash
# The fleet benchmark: a real coordinator process on loopback gRPC, 200
# simulated workers (one gRPC client each: Register, heartbeats, long-poll
# PullJob, CompleteJob with exit 0 at once) and 10,000 no-op command jobs
# per phase submitted through the client API by 64 concurrent submitters.
#
#   bench/fleet/run.sh [fleet-bench flags...]
#
# e.g. bench/fleet/run.sh -phases burst,paced:2000 -workers 200 -jobs 10000
# (see `go run ./bench/fleet -h`). It builds the coordinator and the driver
# from this checkout, prints the machine, then one table column per phase:
#   - burst: submit as fast as acknowledged: the highest dispatch rate;
#   - paced:RATE: submit RATE jobs/s on a fixed schedule while idle slots
#     exist: queue-to-start latency at that rate.
# Queue-to-start is shown from the coordinator's kiln_queue_to_start_seconds
# histogram (queued to assigned, inside the scheduler) and client-side
# (SubmitJob acknowledged to the assignment arriving at the worker, which
# also counts the durable write of the assignment and its delivery).
# Work files go under KILN_BENCH_DIR (default: a new temporary directory,
# removed afterwards); the coordinator's log is state/coordinator.log there.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-}
if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/kiln-bench-fleet.XXXXXX)
	trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
(cd "$repo_root" && go build -o "$work/coordinator" ./coordinator && go build -o "$work/fleet-bench" ./bench/fleet)

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(go version | awk '{print $3}'), commit $(cd "$repo_root" && git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$work/state"
"$work/fleet-bench" -coordinator "$work/coordinator" -state-dir "$work/state" "$@"

#!/bin/sh
# Kiln's main job on one machine, with embedded defaults: a coordinator on
# loopback with its SQLite store, two workers, and a job run through the
# command line client the way a Jenkins pipeline runs it.
# Everything lives under $KILN_DEMO_DIR (default ./.state/demo) and is
# stopped when the script ends.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
demo=${KILN_DEMO_DIR:-$top/.state/demo}
addr=127.0.0.1:${KILN_DEMO_PORT:-7420}
http=127.0.0.1:${KILN_DEMO_HTTP_PORT:-7421}
export KILN_SERVER=$addr

pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

step() { printf '\n==> %s\n' "$*"; }

rm -rf "$demo"
mkdir -p "$demo"

step "coordinator on $addr (state in $demo/coordinator)"
"$bin/coordinator" serve --dev --state-dir "$demo/coordinator" --listen "$addr" --http-listen "$http" >"$demo/coordinator.log" 2>&1 &
pids="$pids $!"
for i in $(seq 1 100); do
	curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

step "two workers"
for w in w1 w2; do
	"$bin/worker" run --dev --coordinator "$addr" --name "$w" --labels os=linux,arch=amd64 --slots 2 --work-dir "$demo/$w" >"$demo/$w.log" 2>&1 &
	pids="$pids $!"
done
sleep 1
"$bin/coordinator" workers list

step "a job, as Jenkins runs it: live log, exit code, artifacts"
"$bin/coordinator" run --labels os=linux --artifacts 'dist/*' --wait -- sh -c '
	echo "building on $(hostname) in $(pwd)"
	mkdir -p dist
	for i in 1 2 3; do echo "step $i"; sleep 0.3; done
	uname -a > dist/uname.txt
	echo done'
echo "exit code: $?"

step "a failing job exits 1 with its log"
if "$bin/coordinator" run --labels os=linux --wait -- sh -c 'echo "tests: 1 failed"; exit 1'; then
	echo "unexpected success" >&2
	exit 1
else
	echo "exit code: $? (as expected)"
fi

step "a job no worker can take says why it waits"
id=$("$bin/coordinator" run --labels target=centos7 -- true)
sleep 0.5
"$bin/coordinator" jobs show "$id" | grep waiting
"$bin/coordinator" jobs cancel "$id"

step "jobs, artifacts and metrics"
"$bin/coordinator" jobs list
"$bin/coordinator" artifacts get 1 --dest "$demo/artifacts"
curl -fsS "http://$http/metrics" | grep -E '^kiln_(jobs|workers)\{' || true

step "done: state, logs and artifacts are in $demo"

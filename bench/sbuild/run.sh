#!/bin/bash
# Kiln end to end (submit to .debs in hand) beside sbuild --chroot-mode=unshare,
# building Debian's hello 2.10-3 (3.0 (quilt), with a test suite) from the same
# source, in chroots made from the same mirror with the same packages,
# interleaved in one run, with DEB_BUILD_OPTIONS parallel=1 and parallel=2.
# Goal (issue 12): Kiln's end-to-end time no more than sbuild's.
#
# Install first: apt-get install sbuild time bc python3 (mmdebstrap,
# git-buildpackage, pristine-tar and curl come with scripts/setup.sh; sbuild
# is needed by this benchmark only, so it is not in
# scripts/setup.sh). Needs root, Go, Debian's archive and the project's
# containerd (scripts/containerd.sh start).
#
# sbuild's unshare mode maps the user's subordinate ids: when /etc/subuid or
# /etc/subgid has no entry for root, this script adds root:100000:65536 to it
# (and says so).
#
# Cached in $KILN_BENCH_CACHE (default /var/cache/kiln-bench/sbuild): the
# downloaded source package, the sbuild chroot tarball (mmdebstrap, minbase
# plus build-essential, dpkg-dev, fakeroot, debhelper) and the worker's
# buildroot (containerd namespace kiln-bench-sbuild, the same target made with
# `worker chroot create`). The first run makes both chroots (a few minutes).
#
# Per round, for each P: Kiln parallel=P, then sbuild parallel=P (the other
# way round every other round). Timed:
#   sbuild: wall and user+sys of its whole process tree (/usr/bin/time).
#   Kiln:   wall of `coordinator build --wait --force` plus `coordinator
#           artifacts get` (the .debs in a directory, like sbuild's); CPU is
#           the buildroot's cgroup (cpuacct of /kiln/kiln-bench-sbuild, every
#           step container) plus the worker's, the coordinator's and the
#           client's own and reaped children's user+sys. containerd and its
#           shims are not counted.
#
# The builds' logs are kept in $KILN_BENCH_CACHE/last-run.
#
# A hello build takes 4-8 minutes on a 2-CPU machine at load 5-10: one round
# of both levels took 25 minutes here, so three rounds need well over an hour.
#
# Usage: bench/sbuild/run.sh [ROUNDS] [PARALLEL...]   (default: 3 rounds, 1 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
shift || true
levels=("$@")
[[ ${#levels[@]} -gt 0 ]] || levels=(1 2)
if [[ ! $rounds =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 [ROUNDS] [PARALLEL...]: ROUNDS must be a positive number, got '$rounds'" >&2
	exit 2
fi
for p in "${levels[@]}"; do
	if [[ ! $p =~ ^[1-9][0-9]*$ ]]; then
		echo "usage: $0 [ROUNDS] [PARALLEL...]: each PARALLEL must be a positive number, got '$p'" >&2
		exit 2
	fi
done
if [[ $(id -u) != 0 ]]; then
	echo "$0: needs root (containerd buildroots); run it as root" >&2
	exit 2
fi
for tool in sbuild mmdebstrap gbp pristine-tar curl go git sha256sum bc python3; do
	command -v "$tool" >/dev/null || {
		echo "$0: $tool is not installed: apt-get install sbuild mmdebstrap git-buildpackage pristine-tar curl bc python3" >&2
		exit 2
	}
done
[[ -x /usr/bin/time ]] || { echo "$0: /usr/bin/time is missing: apt-get install time" >&2; exit 2; }
[[ -S /run/kiln-containerd/containerd.sock ]] || {
	echo "$0: no containerd at /run/kiln-containerd/containerd.sock: run scripts/containerd.sh start" >&2
	exit 2
}

mirror=${KILN_BENCH_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
cache=${KILN_BENCH_CACHE:-/var/cache/kiln-bench/sbuild}
namespace=kiln-bench-sbuild
target=bench-bookworm
mkdir -p "$cache/src" "$cache/bin" "$cache/kiln"
run=$(mktemp -d /tmp/kiln-bench-sbuild.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# Every build's log stays, for the phases' times.
	rm -rf "$cache/last-run"
	mkdir -p "$cache/last-run"
	cp -r "$run"/kiln-* "$run"/sbuild-* "$run"/*.log "$cache/last-run/" 2>/dev/null || true
	rm -rf "$run"
}
trap cleanup EXIT

for f in /etc/subuid /etc/subgid; do
	if ! grep -q '^root:' "$f" 2>/dev/null; then
		echo "root:100000:65536" >>"$f"
		echo "# added root:100000:65536 to $f (sbuild's unshare mode needs it)"
	fi
done

# Debian's hello 2.10-3, checked against the .dsc's sums.
src=$cache/src
while read -r sum name; do
	if [[ ! -f $src/$name ]] || ! echo "$sum  $src/$name" | sha256sum -c --quiet - 2>/dev/null; then
		curl -fsS -o "$src/$name" "$mirror/pool/main/h/hello/$name"
		echo "$sum  $src/$name" | sha256sum -c --quiet -
	fi
done <<'EOF'
75296f5ef618ae2f1849e22b142a2b5ab52c452ebefa4e7b0564c44617db3790 hello_2.10-3.dsc
31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b hello_2.10.orig.tar.gz
4ea69de913428a4034d30dcdcb34ab84f5c4a76acf9040f3091f0d3fac411b60 hello_2.10.orig.tar.gz.asc
60ee7a466808301fbaa7fea2490b5e7a6d86f598956fb3e79c71b3295dc1f249 hello_2.10-3.debian.tar.xz
EOF

# The same chroot for both: minbase plus these, from the same mirror.
packages=build-essential,dpkg-dev,fakeroot,debhelper
tarball=$cache/$suite-sbuild.tar
if [[ ! -f $tarball ]]; then
	echo "# making the sbuild chroot $tarball with mmdebstrap (once; log $cache/mmdebstrap.log)"
	mmdebstrap --format=tar --variant=minbase --include=$packages "$suite" "$tarball.tmp" "$mirror" >"$cache/mmdebstrap.log" 2>&1
	mv "$tarball.tmp" "$tarball"
fi

bin=$cache/bin
for b in coordinator worker; do
	go build -o "$bin/$b" "./$b"
done

cat >"$cache/kiln/worker.yaml" <<EOF
name: bench
slots: 1
work_dir: $run/work
buildroot:
  address: /run/kiln-containerd/containerd.sock
  namespace: $namespace
  state_dir: $cache/kiln/buildroot
  tmpfs_size: 4G
  memory: 4G
  cpus: 2
  package_cache: {dir: $cache/kiln/packages}
  targets:
    - name: $target
      format: deb
      method: mmdebstrap
      suite: $suite
      mirror: $mirror
      components: [main]
      variant: minbase
      packages: [${packages//,/, }]
build:
  cache_dir: $run/gitcache
EOF
if ! "$bin/worker" chroot list --config "$cache/kiln/worker.yaml" --json | grep -q '"snapshot"'; then
	echo "# making the Kiln chroot of $target (once; log $cache/kiln/chroot.log)"
	"$bin/worker" chroot create "$target" --config "$cache/kiln/worker.yaml" >"$cache/kiln/chroot.log" 2>&1
fi

# The source in git as a maintainer keeps it: gbp import-dsc --pristine-tar,
# so the worker's upstream tarball is Debian's, byte for byte.
repo=$run/hello
git init --quiet --initial-branch=master "$repo"
(cd "$repo" && HOME=$repo GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@kiln.invalid \
	GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@kiln.invalid GIT_CONFIG_NOSYSTEM=1 \
	gbp import-dsc --pristine-tar --no-sign-tags "$src/hello_2.10-3.dsc" >"$run/gbp.log" 2>&1)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
addr=127.0.0.1:$(port)
http=127.0.0.1:$(port)
cat >"$run/coordinator.yaml" <<EOF
releases:
  bench:
    targets:
      $target: deb
EOF
"$bin/coordinator" serve --dev --config "$run/coordinator.yaml" --state-dir "$run/state" \
	--listen "$addr" --http-listen "$http" >"$run/coordinator.log" 2>&1 &
cpid=$!
pids+=("$cpid")
"$bin/worker" run --dev --config "$cache/kiln/worker.yaml" --coordinator "$addr" >"$run/worker.log" 2>&1 &
wpid=$!
pids+=("$wpid")
for _ in $(seq 300); do
	"$bin/coordinator" workers list --server "$addr" 2>/dev/null | grep -q "target=$target" && break
	sleep 0.2
done
"$bin/coordinator" workers list --server "$addr" | grep -q "target=$target" || {
	echo "$0: the worker did not register with target=$target; its log:" >&2
	tail -20 "$run/worker.log" >&2
	exit 1
}

# ticks of a process and its reaped children (utime stime cutime cstime)
tck=$(getconf CLK_TCK)
proccpu() { awk -v t="$tck" '{ print ($14 + $15 + $16 + $17) / t }' "/proc/$1/stat"; }
cgroupcpu() {
	local f=/sys/fs/cgroup/cpuacct/kiln/$namespace/cpuacct.usage
	[[ -f $f ]] || f=/sys/fs/cgroup/kiln/$namespace/cpu.stat
	if [[ $f == *cpu.stat ]]; then
		[[ -f $f ]] && awk '$1 == "usage_usec" { print $2 / 1e6 }' "$f" || echo 0
	else
		awk '{ print $1 / 1e9 }' "$f"
	fi
}
now() { date +%s.%N; }

results=$run/results
: >"$results"
sbuild_one() { # parallel round
	local out=$run/sbuild-$2-$1
	mkdir -p "$out"
	local t0 t1
	t0=$(now)
	if ! (cd "$out" && DEB_BUILD_OPTIONS=parallel=$1 /usr/bin/time -f '%U %S' -o "$out/time" \
		sbuild --chroot-mode=unshare --chroot="$tarball" -d "$suite" --no-run-lintian --no-run-piuparts \
		--no-run-autopkgtest "$src/hello_2.10-3.dsc" >"$out/log" 2>&1); then
		echo "$0: sbuild parallel=$1 failed; its log: $out/log" >&2
		tail -30 "$out/log" >&2
		cp "$out/log" "/tmp/kiln-bench-sbuild-failed.log"
		exit 1
	fi
	t1=$(now)
	ls "$out"/*.deb >/dev/null
	grep -q "^DEB_BUILD_OPTIONS=parallel=$1\$" "$out"/hello_*_amd64.build || echo "# warning: sbuild's log does not show DEB_BUILD_OPTIONS=parallel=$1"
	local cpu
	cpu=$(awk '{ print $1 + $2 }' "$out/time")
	echo "sbuild $1 $2 $(echo "$t1 - $t0" | bc) $cpu" | tee -a "$results"
}
kiln_one() { # parallel round
	local out=$run/kiln-$2-$1
	mkdir -p "$out"
	local t0 t1 c0 c1 w0 w1 k0 k1
	c0=$(cgroupcpu) w0=$(proccpu "$wpid") k0=$(proccpu "$cpid")
	t0=$(now)
	if ! /usr/bin/time -f '%U %S' -o "$out/time" "$bin/coordinator" build --server "$addr" --release bench \
		--target "$target" --package hello --source "$repo@master" --build-option "parallel=$1" \
		--force --wait >"$out/log" 2>&1; then
		echo "$0: Kiln parallel=$1 failed; its log: $out/log" >&2
		tail -30 "$out/log" >&2
		cp "$out/log" "/tmp/kiln-bench-kiln-failed.log"
		exit 1
	fi
	local id
	id=$(awk '$1 == "job" && ($3 == "queued" || $3 == "queued,") { print $2; exit }' "$out/log")
	/usr/bin/time -a -f '%U %S' -o "$out/time" "$bin/coordinator" artifacts get "$id" --server "$addr" --dest "$out/debs" >/dev/null
	t1=$(now)
	c1=$(cgroupcpu) w1=$(proccpu "$wpid") k1=$(proccpu "$cpid")
	ls "$out"/debs/out/*.deb >/dev/null
	grep -q "parallel=$1" "$out/log" || echo "# warning: Kiln's log does not show parallel=$1"
	local client cpu
	client=$(awk '{ s += $1 + $2 } END { print s }' "$out/time")
	cpu=$(echo "$c1 - $c0 + $w1 - $w0 + $k1 - $k0 + $client" | bc)
	echo "kiln $1 $2 $(echo "$t1 - $t0" | bc) $cpu buildroot=$(echo "$c1 - $c0" | bc)" | tee -a "$results"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# tool parallel round wall_s cpu_s"
for r in $(seq "$rounds"); do
	for p in "${levels[@]}"; do
		if ((r % 2)); then
			kiln_one "$p" "$r"
			sbuild_one "$p" "$r"
		else
			sbuild_one "$p" "$r"
			kiln_one "$p" "$r"
		fi
	done
done
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "# medians over $rounds rounds: tool parallel wall_s cpu_s"
for p in "${levels[@]}"; do
	for tool in sbuild kiln; do
		w=$(awk -v t=$tool -v p="$p" '$1 == t && $2 == p { print $4 }' "$results" | median)
		c=$(awk -v t=$tool -v p="$p" '$1 == t && $2 == p { print $5 }' "$results" | median)
		echo "$tool parallel=$p $w $c"
	done
done

#!/bin/sh
# Kiln's main job on one machine, with embedded defaults: a coordinator on
# loopback with its SQLite store, workers, and jobs run through the command
# line client the way a Jenkins pipeline runs them; then the whole package
# path: a sample package's source in a local git repository, built in a
# clean containerd buildroot, published into a repository signed with the
# operator's key, served by a mirror and installed by apt.
# Everything lives under $KILN_DEMO_DIR (default ./.state/demo) and is
# stopped when the script ends; the demo's chroot stays in Kiln's containerd
# (namespace kiln-demo) so that the next run starts faster.
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

# The fleet part is done; the package path gets its own coordinator.
kill $pids 2>/dev/null || true
wait 2>/dev/null || true
pids=""

step "the package path: operator's signing key (made here with gpg, as an operator would)"
export GNUPGHOME="$demo/gnupg"
mkdir -p -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key "Kiln Demo Repository <repo@kiln.invalid>" rsa3072 sign never
gpg --batch --armor --export-secret-keys > "$demo/operator-secret.asc"
gpg --batch --armor --export > "$demo/operator.asc"

step "publisher (holds the key), pushing to a mirror that serves what it receives"
pubaddr=127.0.0.1:${KILN_DEMO_PUBLISHER_PORT:-7430}
mirroraddr=127.0.0.1:${KILN_DEMO_MIRROR_PORT:-8080}
cat >"$demo/publisher.yaml" <<EOC
root: $demo/publisher
signing:
  key_file: $demo/operator-secret.asc
repositories:
  - name: demo-bookworm-amd64
    format: deb
    suite: bookworm
    component: main
serve:
  listen: $pubaddr
  dev: true
mirrors:
  - name: local-mirror
    dest: $demo/mirror/
EOC
"$bin/publisher" serve --config "$demo/publisher.yaml" >"$demo/publisher.log" 2>&1 &
pids="$pids $!"
mkdir -p "$demo/mirror"
"$bin/mirror" serve --root "$demo/mirror" --listen "$mirroraddr" >"$demo/mirror.log" 2>&1 &
pids="$pids $!"
"$bin/publisher" key show --config "$demo/publisher.yaml"

step "coordinator with the publisher, and a builder worker with a Debian buildroot"
cat >"$demo/coordinator.yaml" <<EOC
dev: true
listen: $addr
http_listen: $http
public_url: http://$http
state_dir: $demo/coordinator2
releases:
  demo:
    deb_suffix: "+demo{revision}"
    targets:
      bookworm-amd64: deb
publisher:
  address: $pubaddr
  dev: true
  repository: "{release}-{target}"
  retry_interval: 2s
EOC
"$bin/coordinator" serve --config "$demo/coordinator.yaml" >"$demo/coordinator2.log" 2>&1 &
pids="$pids $!"
for i in $(seq 1 100); do
	curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
mirror_url=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
cat >"$demo/worker.yaml" <<EOC
coordinator: $addr
dev: true
name: builder
slots: 1
work_dir: $demo/builder
buildroot:
  address: /run/kiln-containerd/containerd.sock
  namespace: kiln-demo
  state_dir: /var/lib/kiln-demo/buildroot
  tmpfs_size: 4G
  memory: 4G
  targets:
    - name: bookworm-amd64
      format: deb
      method: mmdebstrap
      suite: bookworm
      mirror: ${mirror_url:-http://deb.debian.org/debian}
      components: [main]
      variant: minbase
      packages: [build-essential, dpkg-dev, fakeroot, debhelper]
build:
  cache_dir: $demo/git-cache
EOC
if ! "$bin/worker" chroot list --json --config "$demo/worker.yaml" | grep -q '"digest"'; then
	echo "making the bookworm-amd64 chroot with mmdebstrap (a few minutes, once)"
	"$bin/worker" chroot create bookworm-amd64 --config "$demo/worker.yaml"
fi
"$bin/worker" chroot list --config "$demo/worker.yaml"
"$bin/worker" run --config "$demo/worker.yaml" >"$demo/builder.log" 2>&1 &
pids="$pids $!"

step "the sample package's source in a local git repository"
src="$demo/src/kiln-hello"
mkdir -p "$src"
cp -r "$top/examples/hello/." "$src/"
git -C "$src" init -q -b master
git -C "$src" add -A
git -C "$src" -c user.name=Demo -c user.email=demo@kiln.invalid commit -q -m "kiln-hello 1.0"

step "build it in a clean buildroot and publish it, as Jenkins would"
"$bin/coordinator" build --release demo --target bookworm-amd64 --package kiln-hello \
	--source "$src@master" --publish --wait

step "a second request for the same sources is not built again"
"$bin/coordinator" build --release demo --target bookworm-amd64 --package kiln-hello --source "$src@master" --json | grep -E '"deduplicated"|"id"' | head -3

step "the publisher pushed it to the mirror (rsync: packages first, signed indexes last)"
for i in $(seq 1 100); do
	cmp -s "$demo/mirror/demo-bookworm-amd64/dists/bookworm/InRelease" \
		"$demo/publisher/public/demo-bookworm-amd64/dists/bookworm/InRelease" && break
	sleep 0.2
done
sleep 1 # the push's last pass removes what no index names
ls "$demo/mirror/demo-bookworm-amd64/pool/main/k/kiln-hello/"

step "apt installs it from the mirror, verifying the signature"
apt_dir="$demo/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb [signed-by=$demo/operator.asc] http://$mirroraddr/demo-bookworm-amd64 bookworm main" >"$apt_dir/sources.list"
apt_opts="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache=$apt_dir/cache"
# shellcheck disable=SC2086
apt-get $apt_opts update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get $apt_opts install -y kiln-hello
kiln-hello
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get $apt_opts remove -y -qq kiln-hello >/dev/null

step "done: state, logs and artifacts are in $demo"

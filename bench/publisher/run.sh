#!/usr/bin/env bash
# Benchmarks the publisher against apt-ftparchive and reprepro on the same
# generated packages, in one run. Usage:
#   bench/publisher/run.sh [N...]        (default: 2000 20000)
# Prints one line per measurement: N, what, wall seconds, user+sys CPU
# seconds. Needs: go, gpg, apt-ftparchive (apt-utils), reprepro, gzip, xz.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)
work=$(mktemp -d /tmp/kiln-publisher-bench-XXXXXX)
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/publisher" ./publisher
go build -o "$work/gendebs" ./bench/publisher/gendebs
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-gen-key "Kiln Bench <bench@kiln.invalid>" rsa3072 sign never 2>/dev/null
fpr=$(gpg --with-colons --fingerprint bench@kiln.invalid | awk -F: '/^fpr/{print $10; exit}')
gpg --batch --armor --export-secret-keys "$fpr" > "$work/key.asc"

# measure LABEL N CMD...: runs CMD, prints N, LABEL, wall and user+sys CPU
# seconds (of CMD and its children).
measure() {
	local label=$1 n=$2; shift 2
	sync
	local TIMEFORMAT='%R %U %S' t
	t=$( { time "$@" > "$work/last.log" 2>&1 ; } 2>&1 ) || { cat "$work/last.log"; exit 1; }
	read -r wall user sys <<< "$t"
	awk -v n="$n" -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" \
		'BEGIN { printf "%6d  %-44s wall %7.2fs  cpu %7.2fs\n", n, l, w, u + s }'

}

reprepro_conf() {
	mkdir -p "$1/conf"
	cat > "$1/conf/distributions" <<CONF
Codename: stable
Suite: stable
Architectures: amd64
Components: main
SignWith: $fpr
DebIndices: Packages Release . .gz .xz
CONF
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${sizes[@]}"; do
	d="$work/$n"
	"$work/gendebs" -n "$n" -dir "$d/debs"
	"$work/gendebs" -n 1 -start 9000000 -dir "$d/one"
	"$work/gendebs" -n 1 -start 9000001 -dir "$d/two"
	kiln=("$work/publisher")
	opts=(--root "$d/kiln" --key "$work/key.asc" --log-level warn)

	measure "kiln include (read every .deb)" "$n" "${kiln[@]}" include "${opts[@]}" --repo r --format deb --suite stable "$d"/debs/*.deb
	measure "kiln publish (index, gz+xz, sign)" "$n" "${kiln[@]}" publish "${opts[@]}" --repo r
	measure "apt-ftparchive packages (plain Packages)" "$n" sh -c "cd '$d' && apt-ftparchive packages debs > Packages"
	measure "apt-ftparchive packages | gzip | xz" "$n" sh -c "cd '$d' && apt-ftparchive packages debs > P && gzip -9c P > P.gz && xz -c P > P.xz"
	reprepro_conf "$d/reprepro"
	measure "reprepro includedeb all (gz+xz, signed)" "$n" reprepro -b "$d/reprepro" includedeb stable "$d"/debs/*.deb
	measure "kiln add one + publish signed" "$n" "${kiln[@]}" include "${opts[@]}" --publish --repo r "$d"/one/*.deb
	measure "reprepro includedeb one (gz+xz, signed)" "$n" reprepro -b "$d/reprepro" includedeb stable "$d"/one/*.deb
	measure "kiln add one + publish signed (again)" "$n" "${kiln[@]}" include "${opts[@]}" --publish --repo r "$d"/two/*.deb
	measure "reprepro includedeb one (again)" "$n" reprepro -b "$d/reprepro" includedeb stable "$d"/two/*.deb
	rm -rf "$d"
done

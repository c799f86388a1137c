#!/usr/bin/env bash
# Benchmarks the publisher against aptly on the same generated packages, in
# one run, tools interleaved, REPS repetitions: the publisher with the files
# aptly's leanest mode writes (Packages and Packages.gz: "kiln-lean",
# compressions: [gz]), with its default .gz and .xz ("kiln"), and with
# Contents indexes too (contents: true in its config file), aptly in its
# three modes (default: Contents and .bz2; -skip-contents; -skip-contents
# -skip-bz2), each also adding one package to what it published and
# publishing again ("add one"). Usage:
#   bench/publisher/aptly.sh [-b OTHER_PUBLISHER_BINARY] [-r REPS] [-x BYTES] [N...]
# (default: 1 repetition at 2000 and 20000). -b adds another publisher
# binary (for example one built from main) to compare a change with; -x
# adds the publisher with xz_block_size: BYTES ("kiln-xzblocks"). Prints
# one line per measurement: N, repetition, what, wall seconds, user+sys CPU
# seconds, peak RSS (of the largest process of the command: the publisher
# or its xz child), and the index sizes. Needs: go, gpg, aptly, /usr/bin/time.
#
# Nothing is removed until the end, and every measured command writes into
# a directory of its own: on an ext4 without a journal (this project's
# machines) the kernel will not reuse an inode freed less than a minute or
# several ago and scans past each such inode for every file it creates, so
# a command that runs right after another's files were removed pays for
# them (20,000 debs included: 3.7 s of system time in a fresh directory,
# 10-16 s in one where the previous run's files had just been removed).
# KILN_BENCH_DIR (default /tmp) is where the work directory is made; a
# directory of its own at the top of the file system, where no other
# program removes files, gives the steadiest figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
other="" reps=1 xzblock=0
while getopts b:r:x: o; do
	case $o in
	b) other=$(realpath "$OPTARG") ;;
	r) reps=$OPTARG ;;
	x) xzblock=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2000 20000)
work=$(mktemp -d "${KILN_BENCH_DIR:-/tmp}/kiln-aptly-bench-XXXXXX")
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/publisher" ./publisher
go build -o "$work/gendebs" ./bench/publisher/gendebs
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' --quick-gen-key "Kiln Bench <bench@kiln.invalid>" rsa3072 sign never 2>/dev/null
fpr=$(gpg --with-colons --fingerprint bench@kiln.invalid | awk -F: '/^fpr/{print $10; exit}')
gpg --batch --armor --export-secret-keys "$fpr" > "$work/key.asc"

# measure LABEL N REP CMD...: runs CMD under /usr/bin/time and prints wall,
# user+sys CPU and peak RSS.
measure() {
	local label=$1 n=$2 rep=$3; shift 3
	sync
	/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }
	read -r wall user sys rss < "$work/time"
	awk -v n="$n" -v r="$rep" -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" \
		'BEGIN { printf "%6d #%d  %-40s wall %7.2fs  cpu %7.2fs  rss %6.1f MiB\n", n, r, l, w, u + s, m / 1024 }'
}

kiln() { # kiln LABEL BINARY N REP DIR CONTENTS(true|false) [XZ_BLOCK_SIZE [COMPRESSIONS]]
	local label=$1 bin=$2 n=$3 rep=$4 d=$5 contents=$6 xzblock=${7:-0} compressions=${8:-}
	mkdir -p "$d/$label"
	cat > "$d/$label.yaml" <<CONF
root: $d/$label
log:
  level: warn
signing:
  key_file: $work/key.asc
repositories:
  - name: r
    format: deb
    suite: stable
CONF
	# Only when on: a publisher from before Contents refuses the key.
	[ "$contents" = false ] || echo "    contents: true" >> "$d/$label.yaml"
	[ "$xzblock" = 0 ] || echo "    xz_block_size: $xzblock" >> "$d/$label.yaml"
	[ -z "$compressions" ] || echo "    compressions: [$compressions]" >> "$d/$label.yaml"
	local opts=(--config "$d/$label.yaml")
	# The directory, as aptly is given it: 50,000 paths are more than a
	# command line takes (a -b binary must take a directory too).
	measure "$label include" "$n" "$rep" "$bin" include "${opts[@]}" --repo r "$src"/debs
	measure "$label publish" "$n" "$rep" "$bin" publish "${opts[@]}" --repo r
	measure "$label add one + publish" "$n" "$rep" "$bin" include --publish "${opts[@]}" --repo r "$src"/one/*.deb
}

aptly_run() { # aptly_run LABEL N REP DIR FLAGS...
	local label=$1 n=$2 rep=$3 d=$4; shift 4
	local root="$d/$label"
	mkdir -p "$root"
	printf '{"rootDir": "%s", "gpgProvider": "gpg2"}\n' "$root" > "$root/aptly.conf"
	local a=(aptly -config="$root/aptly.conf")
	"${a[@]}" repo create -distribution=stable -component=main r > /dev/null
	measure "$label repo add" "$n" "$rep" "${a[@]}" repo add r "$src/debs"
	measure "$label publish" "$n" "$rep" "${a[@]}" publish repo -batch -gpg-key="$fpr" -passphrase="" -architectures=amd64 "$@" r
	# repo add of the one file, then publish update with the same flags.
	measure "$label add one + publish" "$n" "$rep" bash -c 'a=("${@:4}"); read -r -a f <<< "$3"
		"${a[@]}" repo add r "$1" > /dev/null && "${a[@]}" publish update -batch -gpg-key="$2" -passphrase="" "${f[@]}" stable' \
		_ "$src/one" "$fpr" "$*" "${a[@]}"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(aptly version)"
for n in "${sizes[@]}"; do
	src="$work/$n"
	"$work/gendebs" -n "$n" -dir "$src/debs"
	"$work/gendebs" -n 1 -prefix bench-one -dir "$src/one"
	# The first command measured is not the one to pay for cold caches:
	# the packages and both programs are read once before.
	find "$src" -type f -exec cat {} + > /dev/null
	"$work/publisher" --help > /dev/null
	aptly version > /dev/null
	for rep in $(seq "$reps"); do
		d="$src/$rep"
		mkdir "$d"
		kiln kiln-lean "$work/publisher" "$n" "$rep" "$d" false 0 gz
		aptly_run aptly-lean "$n" "$rep" "$d" -skip-contents -skip-bz2
		kiln kiln "$work/publisher" "$n" "$rep" "$d" false
		kiln kiln-contents "$work/publisher" "$n" "$rep" "$d" true
		aptly_run aptly-nocontents "$n" "$rep" "$d" -skip-contents
		[ -z "$other" ] || kiln kiln-other "$other" "$n" "$rep" "$d" false
		[ "$xzblock" = 0 ] || kiln kiln-xzblocks "$work/publisher" "$n" "$rep" "$d" false "$xzblock"
		aptly_run aptly-default "$n" "$rep" "$d"
		for f in "$d"/kiln*/public/r/dists/stable/main/binary-amd64/Packages* "$d"/kiln-contents/public/r/dists/stable/main/Contents-* \
			"$d"/aptly-default/public/dists/stable/main/binary-amd64/Packages* "$d"/aptly-default/public/dists/stable/main/Contents-*; do
			[ -f "$f" ] && printf '%6d #%d  %-52s %9d bytes\n' "$n" "$rep" "${f#"$d"/}" "$(stat -c %s "$f")"
		done
	done
	echo "# load $(cut -d' ' -f1-3 /proc/loadavg)"
done

#!/bin/bash
# Benchmarks Kiln's rpm repodata writer and rpm signer against createrepo_c
# and rpmsign on the same packages, in one run.
#
#   bench/publisher-rpm/run.sh [COUNT...]        (default: 2000 20000)
#
# For each COUNT it builds COUNT small noarch rpms with the real rpmbuild
# (specs of up to 2000 packages each), then times:
#   - fresh repodata: createrepo_c (default, with sqlite databases),
#     createrepo_c --no-database, and Kiln (reading every rpm, writing
#     repodata, keeping per-package metadata as the publisher's store does);
#   - adding one more rpm: createrepo_c --update (both modes) and Kiln
#     (reading only the new rpm, rewriting repodata from the kept metadata);
#   - signing (for COUNT <= KILN_BENCH_SIGN_MAX, default 2000) with the same
#     gpg-generated keys (KILN_BENCH_KEYS, default "rsa3072 ed25519"):
#     rpmsign --addsign (header signature), rpmsign --addsign --rpmv3
#     (header and header+payload), and Kiln, which signs with one worker
#     per CPU, both ways: header and header+payload (the publisher's
#     default) and header only (rpm_signatures: header).
# Repodata runs are repeated KILN_BENCH_REPEAT times (default 3) and the
# fastest is reported with all of them; rpmsign runs once.
# Results go to stdout; work files under KILN_BENCH_DIR (default: a new
# temporary directory, removed afterwards).
set -euo pipefail

counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2000 20000)
sign_max=${KILN_BENCH_SIGN_MAX:-2000}
keys=${KILN_BENCH_KEYS:-"rsa3072 ed25519"}
for tool in rpmbuild createrepo_c rpmsign gpg go; do
	command -v "$tool" >/dev/null || { echo "run.sh: needs $tool" >&2; exit 1; }
done

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
work=${KILN_BENCH_DIR:-}
keep_work=1
if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/kiln-bench-rpm.XXXXXX)
	keep_work=0
fi
mkdir -p "$work"
cleanup() {
	GNUPGHOME="$work/gnupg" gpgconf --kill gpg-agent 2>/dev/null || true
	[ "$keep_work" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
bench="$work/publisher-rpm-bench"
(cd "$repo_root" && go build -o "$bench" ./bench/publisher-rpm)

repeat=${KILN_BENCH_REPEAT:-3}
TIMEFORMAT=%R
# once CMD...: runs CMD quietly and prints its wall time in seconds.
once() {
	local t
	sync
	t=$( { time "$@" >/dev/null 2>"$work/last.err"; } 2>&1 ) || { cat "$work/last.err" >&2; exit 1; }
	echo "$t"
}
# timed LABEL PREPARE CMD...: runs PREPARE (untimed) then CMD, KILN_BENCH_REPEAT
# times (default 3), and prints LABEL with the fastest and every wall time.
# The machine may be shared; the fastest run is the least disturbed one.
timed() {
	local label=$1 prepare=$2 all=() best=
	shift 2
	for _ in $(seq "$repeat"); do
		$prepare
		local t
		t=$(once "$@")
		all+=("$t")
		if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
	done
	printf '%-58s %8ss   (runs: %s)\n' "$label" "$best" "${all[*]}"
}

# make_spec NAME FIRST LAST: a spec with a main package NAME (number FIRST)
# and subpackages NAME-FIRST+1 .. NAME-LAST, each owning one file and
# requiring the main package.
make_spec() {
	local name=$1 first=$2 last=$3
	cat <<SPEC
Name: $name
Version: 1.0
Release: 1
Summary: Benchmark package
License: MIT
URL: https://example.org/kiln-bench
BuildArch: noarch
%description
Main benchmark package.
%install
mkdir -p %{buildroot}/usr/share/$name
for i in \$(seq $first $last); do echo "file \$i" > %{buildroot}/usr/share/$name/f\$i; done
%files
/usr/share/$name/f$first
%changelog
* Mon Nov 23 2026 Kiln Bench <bench@example.org> - 1.0-1
- benchmark
SPEC
	awk -v name="$name" -v first="$first" -v last="$last" 'BEGIN { for (i = first + 1; i <= last; i++) printf "%%package -n %s-%d\nSummary: Benchmark package %d\nRequires: %s = %%{version}-%%{release}\nProvides: %s-virtual-%d = 1.0\n%%description -n %s-%d\nBenchmark package number %d.\n%%files -n %s-%d\n/usr/share/%s/f%d\n\n", name, i, i, name, name, i, name, i, i, name, i, name, i }'
}

rpmsign_all() { # KEY DIR [--rpmv3]: rpmsign every rpm in DIR with KEY
	local key=$1 dir=$2
	shift 2
	rpmsign --addsign "$@" --define "__gpg $(command -v gpg)" --define "_gpg_name $key@bench.example.org" "$dir"/*.rpm
}

# verify KEY DIR: rpmkeys, trusting only KEY, must accept the signatures of
# every rpm in DIR at the strict level, or the timing means nothing.
verify() {
	local key=$1 dir=$2 db="$work/rpmdb-$1"
	if [ ! -d "$db" ]; then
		mkdir -p "$db"
		gpg --batch -q --armor --export "$key@bench.example.org" >"$db/key.asc"
		rpmkeys --define "_dbpath $db" --import "$db/key.asc"
	fi
	rpmkeys --define "_dbpath $db" --define "_pkgverify_level signature" --checksig "$dir"/*.rpm >"$work/verify.out" 2>&1 ||
		{ echo "run.sh: signatures in $dir do not verify:" >&2; grep -v ' OK$' "$work/verify.out" | head >&2; exit 1; }
}

# build_rpms N DIR: N rpms in DIR. rpmbuild slows down sharply with tens of
# thousands of subpackages in one spec, so specs hold at most 2000.
build_rpms() {
	local n=$1 dir=$2 chunk=2000 first top
	mkdir -p "$dir"
	for ((first = 1; first <= n; first += chunk)); do
		local last=$((first + chunk - 1))
		[ "$last" -le "$n" ] || last=$n
		top="$work/top-$n-$first"
		mkdir -p "$top"
		make_spec "kiln-bench-c$first" "$first" "$last" >"$top/bench.spec"
		rpmbuild -bb --nodeps --quiet --define "_topdir $top" "$top/bench.spec" >/dev/null
		mv "$top"/RPMS/noarch/*.rpm "$dir"/
		rm -rf "$top"
	done
}

# One extra package for the --update step.
extra_top="$work/top-extra"
mkdir -p "$extra_top"
make_spec kiln-bench-extra 1 1 >"$extra_top/extra.spec"
rpmbuild -bb --nodeps --quiet --define "_topdir $extra_top" "$extra_top/extra.spec" >/dev/null
extra=$(ls "$extra_top"/RPMS/noarch/*.rpm)

export GNUPGHOME="$work/gnupg"
mkdir -p -m 700 "$GNUPGHOME"
for k in $keys; do
	gpg --batch -q --pinentry-mode loopback --passphrase '' --quick-gen-key "Kiln Bench $k <$k@bench.example.org>" "$k" sign never
	gpg --batch -q --pinentry-mode loopback --passphrase '' --armor --export-secret-keys "$k@bench.example.org" >"$work/$k.asc"
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, $(rpm --version), createrepo_c $(createrepo_c --version | awk '{print $2}'), $(go version | awk '{print $3}')"
for n in "${counts[@]}"; do
	rpms="$work/rpms-$n"
	t0=$(date +%s)
	build_rpms "$n" "$rpms"
	echo "## $n packages (built with rpmbuild in $(( $(date +%s) - t0 ))s)"

	for mode in default no-database; do
		flags=()
		[ "$mode" = no-database ] && flags=(--no-database)
		cr="$work/cr-$n-$mode"
		fresh_cr() { rm -rf "$cr"; cp -al "$rpms" "$cr"; }
		timed "createrepo_c ${flags[*]:-} fresh" fresh_cr createrepo_c --quiet "${flags[@]}" "$cr"
		# --update starts from a repository made without the extra rpm.
		update_cr() { fresh_cr; createrepo_c --quiet "${flags[@]}" "$cr" >/dev/null; cp -l "$extra" "$cr/"; }
		timed "createrepo_c ${flags[*]:-} --update after one more rpm" update_cr createrepo_c --quiet --update "${flags[@]}" "$cr"
		rm -rf "$cr"
	done
	kiln="$work/kiln-$n"
	fresh_kiln() { rm -rf "$kiln"; cp -al "$rpms" "$kiln"; }
	timed "kiln repodata fresh (read all rpms + write)" fresh_kiln "$bench" repodata "$kiln"
	update_kiln() { fresh_kiln; "$bench" repodata "$kiln" >/dev/null; cp -l "$extra" "$kiln/"; }
	timed "kiln repodata after one more rpm" update_kiln "$bench" update "$kiln" "$kiln/$(basename "$extra")"
	rm -rf "$kiln"

	if [ "$n" -le "$sign_max" ]; then
		# Signing is slow with rpmsign: each tool signs the same copy once.
		for k in $keys; do
			s="$work/signed-$n"
			fresh_signed() { rm -rf "$s"; cp -r "$rpms" "$s"; }
			for v3 in "" --rpmv3; do
				REPEAT_SAVE=$repeat repeat=1
				timed "rpmsign --addsign $v3 ($k)" fresh_signed rpmsign_all "$k" "$s" $v3
				repeat=$REPEAT_SAVE
				verify "$k" "$s"
			done
			clean_signed() { rm -rf "$s"; }
			timed "kiln sign, header + header+payload ($k)" clean_signed "$bench" sign "$work/$k.asc" "$rpms" "$s"
			verify "$k" "$s"
			timed "kiln sign, header only ($k)" clean_signed "$bench" sign-header "$work/$k.asc" "$rpms" "$s"
			verify "$k" "$s"
			rm -rf "$s"
		done
	fi
	rm -rf "$rpms"
done

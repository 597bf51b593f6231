#!/usr/bin/env bash
# An unchanged three-stage rebuild: three dataset stages on one work dataset, each with an
# output snapshot, built once, then built again with nothing changed (every stage a cache
# hit). Prints the ZFS commands each cached stage issued (from the debug log, which logs
# every command) and the wall time, for this build and, given BENCH_BEFORE=BINARY (an
# image-builder built from another commit), for that one too, in the same run.
#
# Needs a real ZFS (/dev/zfs): build on the host, run in the guest:
#   cargo build --release -p image-builder
#   scripts/zfs-vm run --env BENCH_BEFORE=/path/to/old/image-builder -- bench/cached-chain.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release/image-builder
before=${BENCH_BEFORE:-}
rounds=${1:-3}
[ -e /dev/zfs ] || { echo "needs /dev/zfs: run it as scripts/zfs-vm run -- $0"; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release -p image-builder"; exit 1; }
[ -z "$before" ] || [ -x "$before" ] || { echo "BENCH_BEFORE=$before is not a program"; exit 1; }

work=$(mktemp -d)
pool=ibchain$$
cleanup() {
	zpool destroy -f "$pool" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

truncate -s 512M "$work/vdev"
zpool create -o cachefile=none -R "$work/mnt" "$pool" "$work/vdev"
zfs create -p "$pool/images"
mkdir -p "$work/t/g"
stage() { # NAME INPUT OUTPUT FILE
	local input=
	[ -z "$2" ] || input="\"input_snapshot\": \"$2\", "
	cat >"$work/t/g/$1.json" <<EOF
{ "dataset": { "name": "chain", ${input}"output_snapshot": "$3" },
  "steps": [ { "t": "ensure_file", "file": "/$4", "contents": "$4\n",
               "owner": "root", "group": "root", "mode": "644" } ] }
EOF
}
stage s1 "" one a
stage s2 one two b
stage s3 two three c

now() { date +%s.%N; }
build() { # BINARY STAGE LOG
	IMAGE_BUILDER_LOG=debug "$1" build -d "$pool/images" -g g -n "$2" -T "$work/t" \
		>"$3" 2>&1 || { cat "$3"; exit 1; }
}

# The chain, built once (misses), and the binaries warmed up.
for s in s1 s2 s3; do build "$bin" "$s" "$work/first.log"; done
"$bin" --version >/dev/null
[ -z "$before" ] || "$before" --version >/dev/null

# Rebuilds the unchanged chain `rounds` times; prints commands per stage and the time.
measure() { # LABEL BINARY
	local t0 t1 s n counts=
	t0=$(now)
	for _ in $(seq "$rounds"); do
		for s in s1 s2 s3; do build "$2" "$s" "$work/$s.log"; done
	done
	t1=$(now)
	for s in s1 s2 s3; do
		grep -q '(cache hit)' "$work/$s.log" ||
			{ echo "$1: $s was not a cache hit"; cat "$work/$s.log"; exit 1; }
		n=$(grep -c 'run: [^ ]*/zfs \|run: [^ ]*/zpool ' "$work/$s.log" || true)
		counts="$counts $s=$n"
	done
	printf '%-8s zfs commands per cached stage:%s; %.2f s per unchanged three-stage rebuild\n' \
		"$1" "$counts" "$(echo "($t1 - $t0) / $rounds" | bc -l)"
}
[ -z "$before" ] || measure before "$before"
measure after "$bin"

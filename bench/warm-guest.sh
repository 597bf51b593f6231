#!/usr/bin/env bash
# The README's main job rerun (`image-builder build -d ibpool/images -g example -n hello`,
# a cache hit) on a Linux host without /dev/zfs, three ways, in one run:
#   warm      through the warm embedded guest (already running);
#   in-guest  the same command timed inside that guest (what the build itself costs);
#   cold      `--vm-cold`: a guest booted for the command alone (the old default).
# Prints the best of N runs of each (default 3), the warm guest's overhead over the
# in-guest time, and the ratios.
#
#   cargo build --release -p image-builder
#   bench/warm-guest.sh [N]
#
# Needs `scripts/zfs-vm setup`. The pool image and the guest's files go to a temporary
# cache (BENCH_CACHE to keep one), so the user's own pool is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-3}
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/image-builder")
[ -e /dev/zfs ] && { echo "this host has /dev/zfs: builds do not use the guest here"; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release -p image-builder"; exit 1; }

cache=${BENCH_CACHE:-$(mktemp -d)}
work=$(mktemp -d)
export XDG_CACHE_HOME=$cache NO_COLOR=1
export ZFS_VM_CACHE=${ZFS_VM_CACHE:-$HOME/.cache/image-builder/zfs-vm}
export IMAGE_BUILDER_ZFS_VM=$PWD/scripts/zfs-vm IMAGE_BUILDER_VM_IDLE=600
cleanup() {
	"$bin" embedded stop >/dev/null 2>&1 || true
	rm -rf "$work"
	[ -n "${BENCH_CACHE:-}" ] || rm -rf "$cache"
}
trap cleanup EXIT

job=(build -d ibpool/images -g example -n hello -T "$PWD/templates" --vm-disk-size 4)
now() { date +%s.%N; }
# best TIME... : the smallest
best() { printf '%s\n' "$@" | sort -n | head -n1; }

# Runs "$@" n times; prints the best wall time.
timed() {
	local i t0 ts=()
	for ((i = 0; i < n; i++)); do
		t0=$(now)
		"$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
		ts+=("$(echo "$(now) - $t0" | bc)")
	done
	best "${ts[@]}"
}

cd "$work"
echo "first build (makes the pool and starts the warm guest; not counted)" >&2
t0=$(now)
"$bin" "${job[@]}" >/dev/null 2>"$work/first.err" || { cat "$work/first.err" >&2; exit 1; }
first=$(echo "$(now) - $t0" | bc)

warm=$(timed "$bin" "${job[@]}")

# The same command in the guest, timed there (the pool stays imported in a warm guest).
ing=()
for ((i = 0; i < n; i++)); do
	t=$("$bin" embedded exec --pool ibpool --rw "$work/output" -- /bin/bash -c \
		"TIMEFORMAT=%R; { time $bin ${job[*]} --guest-output $work/output >/dev/null 2>&1; } 2>&1")
	ing+=("$t")
done
inguest=$(best "${ing[@]}")

"$bin" embedded stop >/dev/null 2>&1
cold=$(timed "$bin" "${job[@]}" --vm-cold)

printf 'main-job rerun, best of %s (first warm build with the boot: %.1f s)\n' "$n" "$first"
printf '  in-guest build time : %6.2f s\n' "$inguest"
printf '  warm guest          : %6.2f s  (%.2f s over in-guest, %.2fx)\n' "$warm" \
	"$(echo "$warm - $inguest" | bc)" "$(echo "$warm / $inguest" | bc -l)"
printf '  cold (--vm-cold)    : %6.2f s  (%.2fx warm)\n' "$cold" "$(echo "$cold / $warm" | bc -l)"

#!/usr/bin/env bash
# Benchmarks the archive engine against GNU tar on a real root file system, in one run
# on the same input: pack .tar.gz (ours, gzip on all cores) against `tar czf`, and unpack
# of one .tar.gz against `tar xzf`. Targets: pack >= 1.8x faster on 2 cores, unpack >= 1.0x.
#
# The root file system is made once with mmdebstrap (Debian, variant "standard", a few
# hundred MB) and cached under ${XDG_CACHE_HOME:-$HOME/.cache}/image-builder/bench/.
# Needs root (device nodes and owners in the tree). Settings:
#   BENCH_SUITE (bookworm), BENCH_VARIANT (standard), BENCH_RUNS (3, the median counts),
#   BENCH_ROOTFS (use this tree instead of making one), BENCH_TMP (where archives and
#   unpacked trees go: /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench/tar.sh: run as root (the tree holds device nodes and other owners)" >&2
    exit 1
fi

suite="${BENCH_SUITE:-bookworm}"
variant="${BENCH_VARIANT:-standard}"
runs="${BENCH_RUNS:-3}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/image-builder/bench"
rootfs="${BENCH_ROOTFS:-$cache/rootfs-$suite-$variant}"

if [ ! -e "$rootfs.complete" ] && [ -z "${BENCH_ROOTFS:-}" ]; then
    if ! command -v mmdebstrap >/dev/null; then
        echo "==> installing mmdebstrap" >&2
        apt-get install -y mmdebstrap >&2
    fi
    echo "==> making a $suite ($variant) root file system in $rootfs" >&2
    rm -rf "$rootfs"
    mkdir -p "$cache"
    mmdebstrap --mode=root --variant="$variant" "$suite" "$rootfs" >&2
    touch "$rootfs.complete"
fi

if [ ! -x /usr/bin/time ]; then
    echo "==> installing time (for CPU times)" >&2
    apt-get install -y time >&2
fi

echo "==> building the benchmark driver" >&2
cargo build --release --example tarbench >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/tarbench"

work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/tarbench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# One timed try of a command, printed as "WALL CPU" seconds (CPU: user + system of it and
# its children, so gzip under `tar czf` counts); `prep` runs untimed before it.
once() {
    local prep="$1"; shift
    eval "$prep"
    sync
    if ! /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null 2>"$work/stderr"; then
        { echo "failed: $*"; cat "$work/stderr"; } >>"$work/failed"
        echo "0 0"
        return
    fi
    awk '{ printf "%.2f %.2f", $1, $2 + $3 }' "$work/time"
}

# The median wall time and the median CPU time of "WALL CPU" pairs, one per line; medians
# because on a shared machine a lucky or unlucky run says little.
median() { printf '%s %s' "$(column 1 "$1")" "$(column 2 "$1")"; }
column() {
    printf '%s\n' "$2" | awk -v c="$1" 'NF { print $c }' | sort -n |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
wall() { echo "${1% *}"; }
cpu() { echo "${1#* }"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# Warm the page cache so both sides read the tree from memory.
tar -cf - -C "$rootfs" . >/dev/null

bytes=$(du -sb --apparent-size "$rootfs" | cut -f1)
entries=$(find "$rootfs" | wc -l)

# GNU tar and ours take turns, so a busy moment on the machine hits both alike.
gnu_pack="" our_pack="" gnu_unpack="" our_unpack=""
add() { if [ -z "$1" ]; then printf '%s' "$2"; else printf '%s\n%s' "$1" "$2"; fi; }
for i in $(seq "$runs"); do
    echo "==> run $i of $runs" >&2
    gnu_pack=$(add "$gnu_pack" "$(once "rm -f '$work/gnu.tar.gz'" tar --numeric-owner -czf "$work/gnu.tar.gz" -C "$rootfs" .)")
    our_pack=$(add "$our_pack" "$(once "rm -f '$work/ours.tar.gz'" "$bin" pack "$rootfs" "$work/ours.tar.gz")")
    # Both unpack the same archive, the one GNU tar made.
    gnu_unpack=$(add "$gnu_unpack" "$(once "rm -rf '$work/u'; mkdir '$work/u'" tar --numeric-owner -xzpf "$work/gnu.tar.gz" -C "$work/u")")
    our_unpack=$(add "$our_unpack" "$(once "rm -rf '$work/u'; mkdir '$work/u'" "$bin" unpack "$work/gnu.tar.gz" "$work/u")")
done
for v in gnu_pack our_pack gnu_unpack our_unpack; do
    echo "$v: $(printf '%s' "${!v}" | tr '\n' ',' )" >&2
    printf -v "$v" '%s' "$(median "${!v}")"
done
rm -rf "$work/u"
if [ -e "$work/failed" ]; then
    cat "$work/failed" >&2
    exit 1
fi

# Our archive must read back with the real tools.
gzip -t "$work/ours.tar.gz"
our_count=$(tar -tzf "$work/ours.tar.gz" | wc -l)
gnu_count=$(tar -tzf "$work/gnu.tar.gz" | wc -l)

echo
echo "input: $rootfs"
echo "       $(mb "$bytes") MiB in $entries entries; $(nproc) cores; median of $runs runs"
printf '%-15s %9s %9s %8s   %9s %9s %8s   %s\n' "" "ours" "GNU" "speedup" "ours CPU" "GNU CPU" "ratio" "target (wall)"
row() {
    printf '%-15s %8ss %8ss %7sx   %8ss %8ss %7sx   %s\n' "$1" \
        "$(wall "$2")" "$(wall "$3")" "$(ratio "$(wall "$3")" "$(wall "$2")")" \
        "$(cpu "$2")" "$(cpu "$3")" "$(ratio "$(cpu "$3")" "$(cpu "$2")")" "$4"
}
row "pack .tar.gz" "$our_pack" "$gnu_pack" ">= 1.8x"
row "unpack .tar.gz" "$our_unpack" "$gnu_unpack" ">= 1.0x"
echo "archive size: ours $(mb "$(stat -c %s "$work/ours.tar.gz")") MiB ($our_count members)," \
    "GNU $(mb "$(stat -c %s "$work/gnu.tar.gz")") MiB ($gnu_count members)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a busy machine makes all times noisy)"

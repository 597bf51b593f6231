#!/usr/bin/env bash
# Benchmarks the archive engine against GNU tar on a real root file system, in one run
# on the same input: pack .tar.gz (ours, gzip on all cores) against `tar czf`, and unpack
# of one .tar.gz against `tar xzf`. Targets: pack >= 1.8x faster on 2 cores, unpack >= 1.0x.
#
# The root file system is made once with mmdebstrap (Debian, variant "standard", a few
# hundred MB) and cached under ${XDG_CACHE_HOME:-$HOME/.cache}/image-builder/bench/.
# Needs root (device nodes and owners in the tree). Settings:
#   BENCH_SUITE (bookworm), BENCH_VARIANT (standard), BENCH_RUNS (3, best time counts),
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

echo "==> building the benchmark driver" >&2
cargo build --release --example tarbench >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/tarbench"

work="$(mktemp -d "${BENCH_TMP:-/var/tmp}/tarbench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Seconds one try of a command takes; `prep` runs untimed before it.
once() {
    local prep="$1"; shift
    eval "$prep"
    sync
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# Warm the page cache so both sides read the tree from memory.
tar -cf - -C "$rootfs" . >/dev/null

bytes=$(du -sb --apparent-size "$rootfs" | cut -f1)
entries=$(find "$rootfs" | wc -l)

# GNU tar and ours take turns, so a busy moment on the machine hits both alike; the best
# time of each counts.
gnu_pack="" our_pack="" gnu_unpack="" our_unpack=""
for i in $(seq "$runs"); do
    echo "==> run $i of $runs" >&2
    gnu_pack=$(min "$(once "rm -f '$work/gnu.tar.gz'" tar --numeric-owner -czf "$work/gnu.tar.gz" -C "$rootfs" .)" "$gnu_pack")
    our_pack=$(min "$(once "rm -f '$work/ours.tar.gz'" "$bin" pack "$rootfs" "$work/ours.tar.gz")" "$our_pack")
    # Both unpack the same archive, the one GNU tar made.
    gnu_unpack=$(min "$(once "rm -rf '$work/u'; mkdir '$work/u'" tar --numeric-owner -xzpf "$work/gnu.tar.gz" -C "$work/u")" "$gnu_unpack")
    our_unpack=$(min "$(once "rm -rf '$work/u'; mkdir '$work/u'" "$bin" unpack "$work/gnu.tar.gz" "$work/u")" "$our_unpack")
done
rm -rf "$work/u"

# Our archive must read back with the real tools.
gzip -t "$work/ours.tar.gz"
our_count=$(tar -tzf "$work/ours.tar.gz" | wc -l)
gnu_count=$(tar -tzf "$work/gnu.tar.gz" | wc -l)

echo
echo "input: $rootfs"
echo "       $(mb "$bytes") MiB in $entries entries; $(nproc) cores; best of $runs"
printf '%-16s %10s %10s %9s %s\n' "" "ours (s)" "GNU (s)" "speedup" "target"
printf '%-16s %10s %10s %8sx %s\n' "pack .tar.gz" "$our_pack" "$gnu_pack" "$(ratio "$gnu_pack" "$our_pack")" ">= 1.8x"
printf '%-16s %10s %10s %8sx %s\n' "unpack .tar.gz" "$our_unpack" "$gnu_unpack" "$(ratio "$gnu_unpack" "$our_unpack")" ">= 1.0x"
echo "archive size: ours $(mb "$(stat -c %s "$work/ours.tar.gz")") MiB ($our_count members)," \
    "GNU $(mb "$(stat -c %s "$work/gnu.tar.gz")") MiB ($gnu_count members)"

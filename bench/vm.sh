#!/usr/bin/env bash
# Time from `image-builder vm` to the guest's first console line and to its shell prompt,
# with the small Linux guest of scripts/vm-guest (direct kernel boot, 256 MiB, 1 vCPU),
# under TCG and under `--accel auto` (which adds the KVM probe, cached per host boot after
# the first run). Then one edit-build-restart cycle of the live loop with a stand-in daemon
# (tests/vm_qemu.rs), and one with the real sysconfig: a plugin source edited, cargo
# build, the daemon run again in the guest (tests/vm_live_loop.rs).
#
# Usage: bench/vm.sh [runs]    (needs qemu-system-x86_64; prepares the guest if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
scripts/vm-guest setup
guest=$(scripts/vm-guest path)
cargo build --release -q -p image-builder
bin=${CARGO_TARGET_DIR:-target}/release/image-builder

work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }

# One boot: prints "<ms to first console byte> <ms to prompt>".
boot() {
    local accel=$1 out=$work/out t0 first='' prompt=''
    : >"$out"
    t0=$(ms)
    "$bin" vm --accel "$accel" --firmware bios --net none -m 256 -c 1 --timeout 300 \
        --repo "$work" --kernel "$guest/vmlinux" --initrd "$guest/initrd.img" \
        --append "console=ttyS0 panic=-1 ib.9p=repo:/repo" \
        </dev/null >"$out" 2>"$work/err" &
    pid=$!
    while [ -z "$prompt" ]; do
        [ -z "$first" ] && [ -s "$out" ] && first=$(($(ms) - t0))
        grep -q 'ib-guest# ' "$out" && prompt=$(($(ms) - t0))
        kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
        sleep 0.01
    done
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    echo "$first $prompt"
}

printf '%-6s %-4s %18s %14s\n' accel run "first line (ms)" "prompt (ms)"
for accel in tcg auto; do
    for i in $(seq 1 "$runs"); do
        read -r first prompt < <(boot "$accel")
        printf '%-6s %-4s %18s %14s\n' "$accel" "$i" "$first" "$prompt"
    done
done

echo
echo "live loop (rebuild on the host, restart in the guest, see the change):"
cargo test --release -q -p image-builder --test integration vm_qemu::console_drives_a_guest_through_the_live_loop \
    -- --nocapture 2>&1 | grep -E 'edit-build-restart cycle|skipped' || true

echo
echo "live sysconfig loop (edit a plugin source, cargo build, run the daemon again):"
cargo test --release -q -p image-builder --test integration vm_live_loop:: -- --nocapture 2>&1 |
    grep -E 'scratch checkout|boot to prompt|first apply|incremental cargo build|edit-build-restart cycle|skipped' || true

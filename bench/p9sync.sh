#!/usr/bin/env bash
# Throughput of `p9sync sync` pulling a 50 MB tree of plugin-like binaries from
# diod over loopback, against a raw TCP copy (tar over a socket) of the same tree.
# A Linux 9p mount would be the natural yardstick, but it needs the 9p kernel
# modules, which are not always loadable (containers); raw TCP is the floor any
# userland client is measured against.
#
# Usage: bench/p9sync.sh [total-MB]    (needs diod and python3)
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-50}
diod=$(command -v diod || echo /usr/sbin/diod)
[ -x "$diod" ] || { echo "diod not installed (apt-get install diod)"; exit 1; }
command -v python3 >/dev/null || { echo "python3 needed for the raw TCP baseline"; exit 1; }
# Resolve the interpreter once: version-manager shims add startup time to the baseline.
py=$(python3 -c 'import sys; print(sys.executable)')

cargo build --release -q -p p9sync
bin=${CARGO_TARGET_DIR:-target}/release/p9sync

work=$(mktemp -d)
diod_pid=
cleanup() { [ -n "$diod_pid" ] && kill "$diod_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# 40 executables of varying size plus small dep files, ~$mb MB in all.
src=$work/export/target/release
mkdir -p "$src/deps" "$src/plugins"
per=$(( mb * 1024 * 1024 / 40 ))
for i in $(seq 1 40); do
    size=$(( per / 2 + per * (i % 10) / 9 ))
    head -c "$size" /dev/urandom > "$src/plugins/plugin-$i"
    chmod 755 "$src/plugins/plugin-$i"
    head -c 2000 /dev/urandom > "$src/deps/dep-$i.d"
done
ln -s plugins/plugin-1 "$src/current"
total=$(du -sb "$src" | cut -f1)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$diod" -f -n -N -S -U "$(id -un 2>/dev/null || echo root)" -c /dev/null -L stderr \
    -e "$work/export" -l "127.0.0.1:$port" 2>/dev/null &
diod_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.05
done

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/1e6/($3-$2):.1f}')"; }

run_sync() { # msize dest
    "$bin" sync --tcp "127.0.0.1:$port" --aname "$work/export" --remote target/release \
        --dest "$2" --msize "$1" >/dev/null
}

declare -A result
for msize in 8192 65536; do
    rm -rf "$work/dest-$msize"
    t0=$(now); run_sync "$msize" "$work/dest-$msize"; t1=$(now)
    diff -r "$src" "$work/dest-$msize" >/dev/null || { echo "MISMATCH after sync (msize $msize)"; exit 1; }
    t2=$(now); run_sync "$msize" "$work/dest-$msize"; t3=$(now)
    result[$msize]=$(rate "$total" "$t0" "$t1")
    printf 'p9sync full sync, msize %6s: %s MB/s (%.3fs); no-op resync %.3fs\n' \
        "$msize" "${result[$msize]}" "$(python3 -c "print($t1-$t0)")" "$(python3 -c "print($t3-$t2)")"
done

# Raw TCP baseline: tar streamed through a loopback socket and unpacked.
mkdir -p "$work/raw"
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$py" - "$rport" "$work/raw" <<'PY' &
import socket, subprocess, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept()
tar = subprocess.Popen(["tar", "-C", sys.argv[2], "-xf", "-"], stdin=subprocess.PIPE)
while True:
    b = c.recv(1 << 20)
    if not b: break
    tar.stdin.write(b)
tar.stdin.close(); sys.exit(tar.wait())
PY
rx=$!
sleep 0.3
t0=$(now)
tar -C "$src" -cf - . | "$py" -c "
import socket, sys
c = socket.create_connection(('127.0.0.1', $rport))
while True:
    b = sys.stdin.buffer.read(1 << 20)
    if not b: break
    c.sendall(b)
"
wait "$rx"
t1=$(now)
raw=$(rate "$total" "$t0" "$t1")
printf 'raw TCP tar copy:                   %s MB/s (%.3fs)\n' "$raw" "$(python3 -c "print($t1-$t0)")"
printf 'tree: %s bytes; p9sync/raw ratio: msize 8192 %s, msize 65536 %s\n' "$total" \
    "$(python3 -c "print(f'{${result[8192]}/$raw:.2f}')")" "$(python3 -c "print(f'{${result[65536]}/$raw:.2f}')")"

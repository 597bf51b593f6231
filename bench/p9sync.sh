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

run_sync() { # msize read-ahead dest
    "$bin" sync --tcp "127.0.0.1:$port" --aname "$work/export" --remote target/release \
        --dest "$3" --msize "$1" --read-ahead "$2" >/dev/null
}

# Best of three runs for each setting: the host is shared, single runs are noisy.
declare -A result
for msize in 8192 65536; do
    for ra in 1 4; do
        best=0
        for _ in 1 2 3; do
            rm -rf "$work/dest"
            t0=$(now); run_sync "$msize" "$ra" "$work/dest"; t1=$(now)
            diff -r "$src" "$work/dest" >/dev/null || { echo "MISMATCH after sync"; exit 1; }
            r=$(rate "$total" "$t0" "$t1")
            best=$(python3 -c "print(max($best, $r))")
        done
        t2=$(now); run_sync "$msize" "$ra" "$work/dest"; t3=$(now)
        result[$msize.$ra]=$best
        printf 'p9sync full sync, msize %6s, read-ahead %s: %6s MB/s; no-op resync %.3fs\n' \
            "$msize" "$ra" "$best" "$(python3 -c "print($t3-$t2)")"
    done
done

# Raw TCP baseline: tar streamed through a loopback socket and unpacked.
raw_copy() {
    rm -rf "$work/raw"; mkdir -p "$work/raw"
    local rport rx t0 t1
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
    rate "$total" "$t0" "$t1"
}
raw=0
for _ in 1 2 3; do raw=$(python3 -c "print(max($raw, $(raw_copy)))"); done
printf 'raw TCP tar copy:                                %6s MB/s\n' "$raw"
ratio() { python3 -c "print(f'{$1/$raw:.2f}')"; }
printf 'tree: %s bytes in %s files\n' "$total" "$(find "$src" -type f | wc -l)"
printf 'p9sync/raw ratio: msize 8192 %s (read-ahead 1) %s (read-ahead 4); msize 65536 %s / %s\n' \
    "$(ratio "${result[8192.1]}")" "$(ratio "${result[8192.4]}")" \
    "$(ratio "${result[65536.1]}")" "$(ratio "${result[65536.4]}")"

#!/usr/bin/env bash
# sysconfig benchmark: a cold dry-run apply of a typical first-boot configuration
# (hostname, DNS, two NICs, one user with SSH keys) on a temporary root, measured as CPU
# time of sysconfig and all its plugin processes; and the size of the release binaries.
# Targets: <= 50 ms CPU per apply, <= 5 MB for all binaries together.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-20}
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -p sysconfig >&2
bin="$target_dir/release"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root/etc/inet" "$root/etc/default" "$root/etc/sysconfig.d" "$root/export/home"
printf 'root:x:0:0::/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:*:::::::\n' >"$root/etc/shadow"
printf 'root::0:\nstaff::10:\n' >"$root/etc/group"
printf '::1 localhost\n127.0.0.1 localhost loghost\n' >"$root/etc/inet/hosts"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.dns"
cat >"$root/etc/sysconfig.d/desired.toml" <<'TOML'
hostname = "bench1"

[dns]
nameservers = ["10.0.0.1", "10.0.0.2"]
search = ["example.org"]

[network]
default_route = "10.0.0.1"

[[network.interfaces]]
name = "vioif0"
addresses = [{ kind = "dhcp" }, { kind = "addrconf" }]

[[network.interfaces]]
name = "vioif1"
addresses = [{ kind = "static", address = "10.0.1.5/24" }]

[[users]]
name = "ann"
groups = ["staff"]
password_hash = "$6$benchsalt$notarealhash"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench ann@a", "ssh-rsa AAAAB3Bench ann@b"]
TOML
cat >"$tmp/sysconfig.toml" <<TOML
[plugins]
path = "$bin"

[logging]
level = "warn"

[sources]
order = ["local"]
TOML

# One run first, to show it works (and fail loudly if it does not).
"$bin/sysconfig" -c "$tmp/sysconfig.toml" -R "$root" --dry-run apply >"$tmp/out.txt"
changes=$(grep -c '^  would ' "$tmp/out.txt" || true)

# CPU time of all child processes (sysconfig and the plugins it starts), from `times`.
cpu_ms=$(
    for _ in $(seq "$runs"); do
        "$bin/sysconfig" -c "$tmp/sysconfig.toml" -R "$root" --dry-run apply >/dev/null
    done
    # `times` must run in this shell, not in a pipeline's forked child, to see the
    # children it waited for.
    times >"$tmp/times.txt"
    awk 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/);
        printf "%.1f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000
    }' "$tmp/times.txt"
)
per_run=$(awk -v t="$cpu_ms" -v n="$runs" 'BEGIN { printf "%.1f", t / n }')

size=0
for f in "$bin/sysconfig" "$bin"/sysconfig-plugin-*; do
    case "$f" in *.d) continue ;; esac
    s=$(stat -c %s "$f")
    printf '%-40s %8d bytes\n' "$(basename "$f")" "$s"
    size=$((size + s))
done
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')

echo "dry-run apply: $changes actions printed, $runs runs"
echo "cpu per apply: ${per_run} ms (target <= 50 ms)"
echo "binaries total: ${size_mb} MiB (target <= 5 MiB)"
awk -v c="$per_run" -v s="$size_mb" 'BEGIN { exit !(c <= 50 && s <= 5) }' &&
    echo "within targets" || { echo "OUTSIDE TARGETS"; exit 1; }

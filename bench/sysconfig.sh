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
# The release-image layout: one multi-call program and a link per plugin.
multi="$tmp/multi"
mkdir -p "$multi"
cp "$bin/sysconfig-plugins" "$multi/"
for p in "$bin"/sysconfig-plugin-*; do
    case "$p" in *.d) continue ;; esac
    ln -s sysconfig-plugins "$multi/$(basename "$p")"
done

# measure LABEL PLUGIN_DIR FILES...: CPU per dry-run apply and total size of FILES.
measure() {
    local label=$1 dir=$2
    shift 2
    cat >"$tmp/sysconfig.toml" <<TOML
[plugins]
path = "$dir"

[logging]
level = "warn"

[sources]
order = ["local"]
TOML
    # One run first, to show it works (and fail loudly if it does not).
    "$bin/sysconfig" -c "$tmp/sysconfig.toml" -R "$root" --dry-run apply >"$tmp/out.txt"
    local actions cpu_ms per_run size=0 f
    actions=$(grep -c '^  would ' "$tmp/out.txt" || true)
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
    for f in "$@"; do
        size=$((size + $(stat -c %s "$f")))
    done
    size_mb=$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')
    printf '%-34s %2d actions  cpu %6s ms/apply  binaries %s MiB (%d files)\n' \
        "$label:" "$actions" "$per_run" "$size_mb" "$#"
    awk -v c="$per_run" -v s="$size_mb" 'BEGIN { exit !(c <= 50 && s <= 5) }'
}

separate=("$bin/sysconfig")
for p in "$bin"/sysconfig-plugin-*; do
    case "$p" in *.d) ;; *) separate+=("$p") ;; esac
done
for f in "${separate[@]}" "$bin/sysconfig-plugins"; do
    printf '  %-34s %8d bytes\n' "$(basename "$f")" "$(stat -c %s "$f")"
done
echo "targets: <= 50 ms CPU per apply, <= 5 MiB of binaries; $runs runs each"
status=0
measure "one program per plugin" "$bin" "${separate[@]}" || status=1
measure "multi-call plugins + links" "$multi" "$bin/sysconfig" "$bin/sysconfig-plugins" || status=1
[ "$status" = 0 ] && echo "within targets" || echo "OUTSIDE TARGETS (see above)"
exit "$status"

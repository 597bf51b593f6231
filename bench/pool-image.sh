#!/usr/bin/env bash
# Time of a pool image build against the bare commands doing the same work on the same
# tarball: label the image, loop device, zpool create, boot environment datasets, mount,
# tar x, unmount, export, detach, sparse copy to the output, sha256 of the result.
# (The template turns trim off, which the bare commands do not do either.)
#
# Needs a real ZFS (/dev/zfs): build on the host, run in the guest:
#   cargo build --release -p image-builder
#   scripts/zfs-vm run -- bench/pool-image.sh [payload-MB]
# With BENCH_PROFILE=DIR (a --rw directory), DIR/image-builder.log gets the tool's debug log
# (every command with its wall time) and DIR/bare.log the bare commands' times:
#   scripts/zfs-vm run --rw /tmp/prof --env BENCH_PROFILE=/tmp/prof -- bench/pool-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-24}
bin=${CARGO_TARGET_DIR:-target}/release/image-builder
[ -e /dev/zfs ] || { echo "needs /dev/zfs: run it as scripts/zfs-vm run -- $0"; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release -p image-builder"; exit 1; }

work=$(mktemp -d)
pool=ibbench$$
dev=
cleanup() {
	umount "$work/be" 2>/dev/null || true
	zpool export TEMPBENCH 2>/dev/null || true
	if [ -n "$dev" ]; then losetup -d "$dev" 2>/dev/null || true; fi
	zpool destroy -f "$pool" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

truncate -s 3G "$work/vdev"
zpool create -o cachefile=none -R "$work/mnt" "$pool" "$work/vdev"
zfs create -p "$pool/images/output"
out=$(zfs get -H -o value mountpoint "$pool/images/output")

mkdir -p "$work/root/etc" "$work/root/usr/lib" "$work/t/g"
echo 'root:x:0:0::/root:/bin/sh' >"$work/root/etc/passwd"
head -c "${mb}M" /dev/urandom >"$work/root/usr/lib/blob"
tar -C "$work/root" -cf "$out/root.tar" .
cat >"$work/t/g/img.json" <<'EOF'
{ "pool": { "name": "rpool", "size": 352, "bename": "be", "trim": false },
  "steps": [ { "t": "create_be" }, { "t": "unpack_tar", "name": "root.tar" } ] }
EOF

now() { date +%s.%N; }
prof=${BENCH_PROFILE:-}
# Runs a bare command, timing it when profiling.
b() {
	if [ -z "$prof" ]; then
		"$@"
		return
	fi
	local s e
	s=$(now)
	"$@"
	e=$(now)
	printf '%.3f s: %s\n' "$(echo "$e - $s" | bc)" "$*" >>"$prof/bare.log"
}
[ -z "$prof" ] || : >"$prof/bare.log"

# Warm the caches both sides use (the binaries, under emulation, load slowly the first
# time), so neither pays for the other's first start.
"$bin" --version >/dev/null
zfs list >/dev/null
zpool list >/dev/null
sha256sum /dev/null >/dev/null

t0=$(now)
logenv=()
[ -z "$prof" ] || logenv=(IMAGE_BUILDER_LOG=debug)
env "${logenv[@]}" "$bin" build -d "$pool/images" -g g -n img -T "$work/t" \
	>/dev/null 2>"$work/ib.log" || { cat "$work/ib.log"; exit 1; }
t1=$(now)
[ -z "$prof" ] || cp "$work/ib.log" "$prof/image-builder.log"

# The same work, by hand.
t2=$(now)
img=$work/bare.raw
b truncate -s 352M "$img"
printf 'label: gpt\nfirst-lba: 34\nstart=256, type=6A898CC3-1DD2-11B2-99A6-080020736631\n' |
	b sfdisk -q "$img" >/dev/null
dev=$(b losetup -f --show -P "$img")
while [ ! -e "${dev}p1" ]; do sleep 0.1; done
b zpool create -d -t TEMPBENCH -R "$work/alt" -o ashift=9 -O compression=on rpool "${dev}p1"
b zfs create -o canmount=off -o mountpoint=legacy TEMPBENCH/ROOT
b zfs create -o canmount=noauto -o mountpoint=legacy TEMPBENCH/ROOT/be
mkdir -p "$work/be"
b mount -t zfs TEMPBENCH/ROOT/be "$work/be"
b tar -C "$work/be" -xpf "$out/root.tar"
b umount "$work/be"
b zpool sync TEMPBENCH
b zpool export TEMPBENCH
b losetup -d "$dev"
dev=
b cp --sparse=always "$img" "$out/bare.raw"
b sha256sum "$out/bare.raw" >/dev/null
t3=$(now)

ib=$(echo "$t1 - $t0" | bc)
bare=$(echo "$t3 - $t2" | bc)
printf 'payload %s MB\nimage-builder pool build: %.1f s\nbare commands:            %.1f s\nratio:                    %.2fx (target <= 1.2x)\n' \
	"$mb" "$ib" "$bare" "$(echo "$ib / $bare" | bc -l)"

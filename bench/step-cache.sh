#!/usr/bin/env bash
# Step checkpoints on a 50-step dataset stage: the time of a full build without checkpoints
# (--no-checkpoints), of a full build that takes them (the overhead, target < 3 %), and of
# the rebuild after an edit of step 40 (target < 25 % of a full build), in one run.
#
# Two profiles of steps (PROFILE, default packages):
#   copy      every step installs a file of SIZE MB (default 4) from the template tree;
#   packages  steps 1, 6, ..., 46 unpack a package-like archive (`unpack_tar` of a .tar.xz
#             holding SIZE MB of text, default 160: decompressing and writing it takes about
#             14 s under QEMU TCG, a package install far more), the others install a 1 MB
#             file, as a stage of package installs and small edits does. The run takes
#             about 14 minutes; SIZE 64 (5.5 s steps) about half, with fewer checkpoints.
#
# What a checkpoint costs is about fixed (a `zfs snapshot`: 0.15-0.35 s under TCG), so
# the overhead is their number times that against the steps' time; the budget
# (--checkpoint-budget, default 3 %) spaces them by their measured cost. The rebuild is a
# fixed part (starting the tool, one listing, the rollback, the output snapshot) plus the
# steps after the newest matching checkpoint. Both targets hold together only when the
# steps between two checkpoints cost far more than a checkpoint: the copy profile's steps
# cost about what a checkpoint does, the packages profile's heavy steps far more. The
# command counts are printed beside the times.
#
# Needs a real ZFS (/dev/zfs) and a disk for the pool: build on the host, run in the guest:
#   cargo build --release -p image-builder
#   scripts/zfs-vm run --timeout 2400 --disk 8G -- bench/step-cache.sh [PROFILE] [SIZE-MB] [CHECKPOINT-AFTER-SECONDS]
# (without --disk the pool is a file in the guest's memory: sizes up to 8 MB only).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=packages
case ${1:-} in copy | packages) profile=$1; shift ;; esac
mb=${1:-$([ "$profile" = packages ] && echo 160 || echo 4)}
after=${2:-0.5}
bin=${CARGO_TARGET_DIR:-target}/release/image-builder
[ -e /dev/zfs ] || { echo "needs /dev/zfs: run it as scripts/zfs-vm run -- $0"; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release -p image-builder"; exit 1; }

work=$(mktemp -d)
pool=ibstep$$
cleanup() {
	zpool destroy -f "$pool" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

read -ra disks <<<"${ZFS_VM_DISKS:-}"
if [ "${#disks[@]}" -ge 1 ]; then
	# The guest has no udev: a whole-disk vdev fails, a partition works.
	printf ',,\n' | sfdisk -q "${disks[0]}" >/dev/null
	vdev=${disks[0]}1
	for _ in $(seq 50); do [ -b "$vdev" ] && break; sleep 0.1; done
else
	vdev=$work/vdev
	truncate -s 4G "$vdev"
fi
zpool create -f -o cachefile=none -R "$work/mnt" "$pool" "$vdev"
zfs create -p "$pool/images"

# The template tree in a dataset of the pool too (the guest's /tmp is in its memory).
zfs create "$pool/t"
t=$(zfs get -H -o value mountpoint "$pool/t")
mkdir -p "$t/g" "$t/files"
template() { # $1: the text of step 40's file
	{
		printf '{ "dataset": { "name": "w", "output_snapshot": "done" }, "steps": [\n'
		printf '  { "t": "ensure_dir", "dir": "/f", "owner": "root", "group": "root", "mode": "755" }'
		for i in $(seq 1 49); do
			if [ "$i" = 40 ]; then
				printf ',\n  { "t": "ensure_file", "file": "/f/edit", "contents": "%s", "owner": "root", "group": "root", "mode": "644" }' "$1"
			elif [ "$profile" = packages ] && [ $((i % 5)) = 1 ]; then
				printf ',\n  { "t": "unpack_tar", "name": "pkg.tar.xz" }'
			else
				printf ',\n  { "t": "ensure_file", "file": "/f/%s", "src": "blob", "owner": "root", "group": "root", "mode": "644" }' "$i"
			fi
		done
		printf '\n] }\n'
	} >"$t/g/s.json"
}
# One file that the copy steps install (SIZE MB each in the copy profile, 1 MB in the
# packages profile); the template tree stays small enough for the pool.
if [ "$profile" = packages ]; then
	head -c 1M /dev/urandom >"$t/files/blob"
	# The package: text (it compresses as program files do), unpacked over itself each time.
	zfs create "$pool/images/output"
	out=$(zfs get -H -o value mountpoint "$pool/images/output")
	mkdir -p "$work/pkg/opt/pkg"
	head -c "$((mb * 3 / 4))M" /dev/urandom | base64 >"$work/pkg/opt/pkg/data"
	tar -C "$work/pkg" -cf - . | xz -0 -T2 >"$out/pkg.tar.xz"
	rm -rf "$work/pkg"
else
	head -c "${mb}M" /dev/urandom >"$t/files/blob"
fi

now() { date +%s.%N; }
run() { # options...; prints the seconds the build took
	local s e
	s=$(now)
	"$bin" build -d "$pool/images" -g g -n s -T "$t" -v "$@" >/dev/null 2>"$work/ib.log" ||
		{ cat "$work/ib.log" >&2; exit 1; }
	e=$(now)
	echo "$e - $s" | bc
}
"$bin" --version >/dev/null

template one
# Untimed: the first build reads every file cold and hashes it for the key (later builds
# take the digests from the output dataset's digests.json, docs/images.md).
run -x --no-checkpoints >/dev/null
none=$(run -x --no-checkpoints)
none2=$(run -x --no-checkpoints)
with=$(run -x --checkpoint-after "$after" --keep-checkpoints 50)
with2=$(run -x --checkpoint-after "$after" --keep-checkpoints 50)
cps=$(zfs list -H -t snapshot -o name -d 1 "$pool/images/work/g/w" | grep -c '@ib:after-' || true)
template two
edit=$(run --checkpoint-after "$after" --keep-checkpoints 50)
# zfs and zpool commands the edit's rebuild ran (the runner's debug log has a line each).
cmds=$(grep -c 'runner::system: run: ' "$work/ib.log" || true)
rerun=$(grep -c 'step [0-9]*: .* done in' "$work/ib.log" || true)

full=$(echo "($none + $none2) / 2" | bc -l)
withc=$(echo "($with + $with2) / 2" | bc -l)
case $profile in
copy) what="every step installs a $mb MB file" ;;
packages) what="10 steps unpack a $mb MB package, 40 install a 1 MB file" ;;
esac
printf 'steps: 50 (%s), checkpoint after: %s s, budget 3 %% (%s checkpoints)\n' "$what" "$after" "$cps"
printf 'full build, no checkpoints:   %.2f s (%.2f, %.2f)\n' "$full" "$none" "$none2"
printf 'full build with checkpoints:  %.2f s (%.2f, %.2f; overhead %.1f %%, target < 3 %%)\n' \
	"$withc" "$with" "$with2" "$(echo "($withc / $full - 1) * 100" | bc -l)"
printf 'rebuild after editing step 40: %.2f s (%.1f %% of a full build, target < 25 %%)\n' \
	"$edit" "$(echo "$edit / $full * 100" | bc -l)"
printf '  it ran %s steps and %s zfs/zpool commands\n' "$rerun" "$cmds"

#!/usr/bin/env bash
# Step checkpoints on a 50-step dataset stage (each step installs a file of SIZE MB from
# the template tree, the same file each time): the time of a full build without checkpoints, of a full build that
# takes them (the overhead, target < 3 %), and of the rebuild after an edit of step 40
# (target < 25 % of a full build).
#
# The rebuild's time is a fixed part (starting the tool, one listing, the scratch dataset,
# the rollback to the checkpoint, the output snapshot: about six zfs commands, each 0.1-0.5
# s under QEMU TCG) plus the steps after the checkpoint; the full build is its fixed part
# plus all 50 steps. So the ratio approaches 20-25 % only when the steps cost far more than
# those commands, as package installs do; a file copy of 4 MB costs about 0.1 s. SIZE-MB
# sets what each step copies; the command counts are printed beside the times.
#
# Needs a real ZFS (/dev/zfs): build on the host, run in the guest:
#   cargo build --release -p image-builder
#   scripts/zfs-vm run -- bench/step-cache.sh [SIZE-MB] [CHECKPOINT-AFTER-SECONDS]
# With a disk (the pool on it rather than on a file in the guest's memory), for sizes
# over 8 MB: scripts/zfs-vm run --timeout 1800 --disk 8G -- bench/step-cache.sh 32
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-4}
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
			else
				printf ',\n  { "t": "ensure_file", "file": "/f/%s", "src": "blob", "owner": "root", "group": "root", "mode": "644" }' "$i"
			fi
		done
		printf '\n] }\n'
	} >"$t/g/s.json"
}
# One file that every step installs (the steps write SIZE MB each; the template tree stays
# small enough for the pool at sizes that make a step cost what a package install does).
head -c "${mb}M" /dev/urandom >"$t/files/blob"

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
run -x --checkpoint-after 1000000 >/dev/null
none=$(run -x --checkpoint-after 1000000)
none2=$(run -x --checkpoint-after 1000000)
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
printf 'steps: 50, file per step: %s MB, checkpoint after: %s s (%s checkpoints)\n' "$mb" "$after" "$cps"
printf 'full build, no checkpoints:   %.2f s (%.2f, %.2f)\n' "$full" "$none" "$none2"
printf 'full build with checkpoints:  %.2f s (%.2f, %.2f; overhead %.1f %%, target < 3 %%)\n' \
	"$withc" "$with" "$with2" "$(echo "($withc / $full - 1) * 100" | bc -l)"
printf 'rebuild after editing step 40: %.2f s (%.1f %% of a full build, target < 25 %%)\n' \
	"$edit" "$(echo "$edit / $full * 100" | bc -l)"
printf '  it ran %s steps and %s zfs/zpool commands\n' "$rerun" "$cmds"

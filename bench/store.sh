#!/usr/bin/env bash
# The stage store between two machines (docs/scaling.md), on real OpenZFS: two scratch
# pools are machines A and B, sharing a file:// store (an OCI image layout directory).
#
# (a) A stage whose stream is about SIZE MiB (one file of SIZE MiB of random data, a full
#     stream): the store round trip (A's push after its build, then B's whole
#     `image-builder build --store`, which fetches, verifies and receives the stream)
#     against `zfs send A@out | zfs receive B` of the same snapshot through a pipe.
#     Target: under 1.3 times the pipe. A verified store cannot overlap the send with the
#     receive as the pipe does, and must hash the whole stream before `zfs receive` may
#     read a byte of it, so the run also states the floor such a round trip can reach on
#     this machine: `zfs send` into a file (the push hashes it meanwhile, so the longer of
#     the two), one SHA-256 pass (the fetch's check), and `zfs receive` from the file.
# (b) A three-stage chain (files of SIZE/4, SIZE/16 and SIZE/64 MiB) built on A and
#     pushed: B receiving all three stages from the store against B building the chain
#     from scratch. The steps only copy files, the cheapest thing a step can do, so this
#     is the least favourable case for the store; a stage that installs packages costs
#     far more to build than to receive.
# Then, for scale, the time of one sha256sum and one cp of the big stream, and the size in
# bytes of every stored stream (the blobs in the store).
#
# The push writes the stream once, from `zfs send` into a temporary file in the layout's
# blob directory renamed to its digest, hashing it as it grows; B checks the blob in place
# (one read) and `zfs receive` reads it from there. The builds run with -vv, which logs
# each command with its wall time; with BENCH_LOG=1 (zfs-vm run --env BENCH_LOG=1) the
# script prints B's log of (a) at the end.
#
# The store is file:// unless BENCH_STORE=oci (zfs-vm run --env BENCH_STORE=oci): then it
# is a distribution registry (Debian's docker-registry) on the guest's loopback, its
# storage on the third pool; the push uploads the stream in chunks while `zfs send`
# writes it, and B downloads it into its scratch dataset, hashing on the way. SIZE
# defaults to 256 because the guest runs under software emulation (QEMU TCG), where a run
# at 256 takes about two minutes and one at 1024 about four times that; 1024 is the size
# the target is stated for.
#
# Needs a real ZFS (/dev/zfs): build on the host, run in the guest with three scratch
# disks (A, B, and one for the store and the template files; about 3, 3 and 4 x SIZE):
#   cargo build --release -p image-builder
#   scripts/zfs-vm run --timeout 3600 --disk 2G --disk 2G --disk 2G -- bench/store.sh
#   scripts/zfs-vm run --timeout 7200 --disk 4G --disk 4G --disk 6G -- bench/store.sh 1024
# Without three disks in ZFS_VM_DISKS the pools are file vdevs in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-256}
bin=${CARGO_TARGET_DIR:-target}/release/image-builder
[ -e /dev/zfs ] || { echo "needs /dev/zfs: run it as scripts/zfs-vm run -- $0"; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release -p image-builder"; exit 1; }
case $mb in '' | *[!0-9]*) echo "SIZE-MiB must be a number of MiB, not $mb"; exit 1 ;; esac

work=$(mktemp -d)
pa=ibsa$$ pb=ibsb$$ ps=ibss$$ regpid=
kind=${BENCH_STORE:-file}
case $kind in file | oci) ;; *) echo "BENCH_STORE is file or oci, not $kind"; exit 1 ;; esac
cleanup() {
	[ -z "$regpid" ] || kill "$regpid" 2>/dev/null || true
	for p in "$pa" "$pb" "$ps"; do zpool destroy -f "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

read -ra disks <<<"${ZFS_VM_DISKS:-}"
pool() { # NAME INDEX: a pool on the INDEX-th disk's one partition, or on a file vdev
	local dev
	if [ "${#disks[@]}" -ge 3 ]; then
		# The guest has no udev: a whole-disk vdev fails, a partition works.
		printf ',,\n' | sfdisk -q "${disks[$2]}" >/dev/null
		dev=${disks[$2]}1
		for _ in $(seq 50); do [ -b "$dev" ] && break; sleep 0.1; done
	else
		dev=$work/vdev$2
		truncate -s "$((mb * 4 + 512))M" "$dev"
	fi
	zpool create -f -o cachefile=none -O compression=off -R "$work/mnt$2" "$1" "$dev"
}
pool "$pa" 0
pool "$pb" 1
pool "$ps" 2
zfs create "$ps/t"
zfs create "$ps/store"
t=$(zfs get -H -o value mountpoint "$ps/t")
store=file://$(zfs get -H -o value mountpoint "$ps/store")/layout
if [ "$kind" = oci ]; then
	regroot=$(zfs get -H -o value mountpoint "$ps/store")/registry
	cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $regroot
http:
  addr: 127.0.0.1:5000
EOF
	# The zfs-vm guest starts with its loopback interface down.
	ip link set lo up
	docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
	regpid=$!
	for _ in $(seq 200); do (: </dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.1; done
	store=oci://127.0.0.1:5000/ib/stages
fi
mkdir -p "$t/g" "$t/files"

# Templates: one stage of one SIZE MiB file, and a chain of three on one work dataset.
file_stage() { # NAME DATASET INPUT OUTPUT MiB
	local input=
	[ -z "$3" ] || input="\"input_snapshot\": \"$3\", "
	head -c "$5M" /dev/urandom >"$t/files/$1"
	cat >"$t/g/$1.json" <<EOF
{ "dataset": { "name": "$2", ${input}"output_snapshot": "$4" },
  "steps": [ { "t": "ensure_file", "file": "/$1", "src": "$1",
               "owner": "root", "group": "root", "mode": "644" } ] }
EOF
}
file_stage big big "" out "$mb"
file_stage c1 chain "" one $((mb / 4))
file_stage c2 chain one two $((mb / 16))
file_stage c3 chain two three $((mb / 64))

now() { date +%s.%N; }
# Prints each line of standard input after the time it arrived.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(now)" "$l"; done; }
build() { # POOL STAGE OUT-FILE [OPTION]...: the build's --json events, each with its time
	local p=$1 s=$2 out=$3
	shift 3
	if ! "$bin" -vv build -d "$p/images" -g g -n "$s" -T "$t" --json --checkpoint-after 1000000 \
		"$@" 2>"$work/ib.log" | stamp >"$out"; then
		cat "$out" "$work/ib.log" >&2
		exit 1
	fi
}
need() { # EVENT FILE: the time of the first event of that kind in FILE
	local at
	at=$(grep -m1 "\"event\":\"$1\"" "$2" | cut -d' ' -f1) ||
		{ echo "no $1 event in $(basename "$2"):" >&2; cat "$2" "$work/ib.log" >&2; exit 1; }
	echo "$at"
}
elapsed() { echo "$2 - $1" | bc -l; }
for p in "$pa" "$pb"; do zfs create "$p/images"; done
"$bin" --version >/dev/null

# (a) A builds and pushes; the push is the time from its last step to the store_push event.
s=$(now)
build "$pa" big "$work/a.json" --store "$store" --store-required
a_build=$(elapsed "$s" "$(now)")
last_step=$(grep '"event":"step_finish"' "$work/a.json" | tail -n1 | cut -d' ' -f1)
pushed=$(need store_push "$work/a.json")
push=$(elapsed "$last_step" "$pushed")

# The same snapshot through a pipe, then removed so that B starts empty.
s=$(now)
zfs send "$pa/images/work/g/big@out" | zfs receive "$pb/pipe"
pipe=$(elapsed "$s" "$(now)")
zfs destroy -r "$pb/pipe"

s=$(now)
build "$pb" big "$work/b.json" --store "$store" --store-required
recv=$(elapsed "$s" "$(now)")
cp "$work/ib.log" "$work/b.log"
need store_hit "$work/b.json" >/dev/null
round=$(echo "$push + $recv" | bc -l)
# B computes the stage's key before it asks the store, and the key hashes the files the
# steps read: here the SIZE MiB source file itself (a stage that installs packages reads
# small files). The debug log says how long that took.
keyhash=$(grep -o 'source file digests.*seconds=[0-9.]*' "$work/b.log" | head -n1 | sed 's/.*seconds=//')
keyhash=${keyhash:-0}

# (b) A builds the chain and pushes it; B builds it from scratch, then, emptied, receives it.
chain() { # POOL [OPTION]...: prints the seconds the three builds took
	local p=$1 s
	shift
	s=$(now)
	for c in c1 c2 c3; do build "$p" "$c" "$work/$p-$c.json" "$@"; done
	elapsed "$s" "$(now)"
}
chain "$pa" --store "$store" --store-required >/dev/null
scratch=$(chain "$pb")
zfs destroy -r "$pb/images"
zfs create "$pb/images"
fetched=$(chain "$pb" --store "$store" --store-required)
for c in c1 c2 c3; do
	need store_hit "$work/$pb-$c.json" >/dev/null
	! grep -q '"event":"step_start"' "$work/$pb-$c.json" ||
		{ echo "$c ran a step on B" >&2; exit 1; }
done

# Each stored stream: its template and its blob's file in the store.
if [ "$kind" = oci ]; then
	blob_file() { echo "$regroot/docker/registry/v2/blobs/sha256/${1:0:2}/$1/data"; }
	manifests=$(find "$regroot/docker/registry/v2/repositories/ib/stages/_manifests/revisions/sha256" \
		-mindepth 1 -maxdepth 1 -printf '%f\n')
else
	blob_file() { echo "${store#file://}/blobs/sha256/$1"; }
	manifests=$(jq -r '.manifests[].digest | sub("sha256:"; "")' "${store#file://}/index.json")
fi
for m in $manifests; do
	jq -r '"\(.annotations["org.illumos.image-builder.template"] // "-") \(
		.layers[] | select(.annotations["org.opencontainers.image.title"] == "stage.zfs")
		| .digest | sub("sha256:"; ""))"' "$(blob_file "$m")"
done | grep -v '^- ' | sort >"$work/streams"

# For scale: what one pass over the big stream costs here, and the floor of a verified
# round trip. The store adds, to the pipe's send and receive, the stream's write into the
# store and the reads of it (the push's hash, overlapped with the send; the fetch's check,
# before the receive), and the send and the receive no longer overlap.
big=$(blob_file "$(grep '^g/big ' "$work/streams" | cut -d' ' -f2)")
s=$(now)
sha256sum "$big" >/dev/null
hash=$(elapsed "$s" "$(now)")
s=$(now)
zfs send "$pa/images/work/g/big@out" >"$t/send.zfs"
send_file=$(elapsed "$s" "$(now)")
s=$(now)
zfs receive "$pb/floor" <"$t/send.zfs"
recv_file=$(elapsed "$s" "$(now)")
zfs destroy -r "$pb/floor"
rm "$t/send.zfs"
floor=$(echo "if ($send_file > $hash) $send_file + $hash + $recv_file else 2 * $hash + $recv_file" | bc -l)
s=$(now)
cp "$big" "$t/copy"
sync -f "$t/copy"
copy=$(elapsed "$s" "$(now)")
rm "$t/copy"

printf 'machine: %s cores, %s\n' "$(nproc)" "$(uname -r)"
printf '(a) a stage of one %s MiB file, a full stream, %s:// store\n' "$mb" "$kind"
printf '    A: build and push %.2f s, of which the push %.2f s\n' "$a_build" "$push"
printf '    B: build --store (fetch, verify, receive) %.2f s\n' "$recv"
printf '    store round trip (push + B) %.2f s; zfs send | zfs receive %.2f s; ratio %.2f (target < 1.3)\n' \
	"$round" "$pipe" "$(echo "$round / $pipe" | bc -l)"
printf '    of B'"'"'s build, hashing the stage'"'"'s %s MiB source file for its key took %.2f s; without it the round trip is %.2f s, ratio %.2f\n' \
	"$mb" "$keyhash" "$(echo "$round - $keyhash" | bc -l)" "$(echo "($round - $keyhash) / $pipe" | bc -l)"
printf '    for scale: sha256sum of the stream %.2f s, cp of it %.2f s\n' "$hash" "$copy"
printf '    floor of a verified round trip: zfs send to a file %.2f s (hashed meanwhile), a sha256 pass, zfs receive from the file %.2f s\n' \
	"$send_file" "$recv_file"
printf '      = %.2f s, %.2f times the pipe; the store round trip is %.2f times this floor\n' \
	"$floor" "$(echo "$floor / $pipe" | bc -l)" "$(echo "$round / $floor" | bc -l)"
printf '(b) a three-stage chain (%s, %s, %s MiB files) on B\n' $((mb / 4)) $((mb / 16)) $((mb / 64))
printf '    from the store %.2f s; built from scratch %.2f s; ratio %.2f\n' \
	"$fetched" "$scratch" "$(echo "$fetched / $scratch" | bc -l)"
if [ -n "${BENCH_LOG:-}" ]; then
	echo "(a) B's debug log (-vv):"
	cat "$work/b.log"
fi
echo 'stored streams (blob sizes in the store):'
while read -r name blob; do
	printf '  %-6s %12s bytes\n' "$name" "$(stat -c %s "$(blob_file "$blob")")"
done <"$work/streams"

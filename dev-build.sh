#!/usr/bin/env bash
#
# dev-build.sh: build the development cloud image, an OpenIndiana disk image whose
# sysconfig service runs the daemon and plugins of this repository, shared into the
# guest over virtio-9p at /repo. See docs/dev-workflow.md.
set -euo pipefail

prog=${0##*/}
repo=$(cd "$(dirname "$0")" && pwd)

group=cloudimage
name=ttya-openindiana-hipster-dev
tarball=openindiana-hipster.tar.gz

usage() {
	cat <<EOF
Usage: $prog -d DATASET [-o DIR]

Build the development cloud image $group/$name:
  1. build image-builder, sysconfig and its plugins, and p9sync (cargo build --release);
  2. check that the OpenIndiana archive $tarball is in DATASET/output
     (if not, print the three commands that make it);
  3. build the image into DATASET/output/$group-$name.raw;
  4. copy it to DIR (with -o) and print how to boot it with the repository shared.

Options:
  -d, --dataset DATASET     ZFS dataset for the image-builder workspace (required),
                            e.g. rpool/images
  -o, --output-dir DIR      also copy the finished image into DIR
  -h, --help                show this help

Runs as root (image-builder creates datasets, pools and boot environments).
EOF
}

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

usage_error() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	printf "Try '%s --help'.\n" "$prog" >&2
	exit 2
}

note() {
	printf '==> %s\n' "$*"
}

need_tool() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found in PATH: $2"
}

dataset=
outdir=
while [ $# -gt 0 ]; do
	case $1 in
	-d | --dataset)
		[ $# -ge 2 ] || usage_error "$1 needs a dataset name"
		dataset=$2
		shift 2
		;;
	--dataset=*)
		dataset=${1#*=}
		shift
		;;
	-o | --output-dir)
		[ $# -ge 2 ] || usage_error "$1 needs a directory"
		outdir=$2
		shift 2
		;;
	--output-dir=*)
		outdir=${1#*=}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage_error "unknown argument: $1"
		;;
	esac
done

[ -n "$dataset" ] ||
	usage_error "the ZFS dataset is required: -d DATASET (for example -d rpool/images)"

[ "$EUID" -eq 0 ] ||
	die "must run as root: image-builder creates ZFS datasets, pools and boot environments (try: pfexec $0 -d $dataset, or sudo)"

need_tool cargo "install a Rust toolchain (https://rustup.rs)"
need_tool zfs "ZFS is part of illumos; on Linux install OpenZFS (zfsutils-linux)"
need_tool zpool "ZFS is part of illumos; on Linux install OpenZFS (zfsutils-linux)"

if ! err=$(zfs list -H -o name "$dataset" 2>&1 >/dev/null); then
	case $err in
	*"does not exist"*)
		die "ZFS dataset $dataset does not exist; create it with: zfs create -p $dataset"
		;;
	*)
		die "cannot use ZFS dataset $dataset: ${err:-zfs list failed}"
		;;
	esac
fi

# Off illumos there is no svccfg or devfsadm for the image: both are left to its first boot.
host_flags=()
if [ "$(uname -s)" != SunOS ]; then
	printf '%s: warning: %s\n' "$prog" \
		"this host is not illumos: the sysconfig binaries built here will not run in the guest; see docs/dev-workflow.md (Linux hosts)" >&2
	host_flags=(--smf-at-first-boot --devfs-at-first-boot)
fi

# The guest runs what it finds in /repo/target/release, so build there whatever
# CARGO_TARGET_DIR says.
release="$repo/target/release"
note "building image-builder, sysconfig and p9sync (cargo build --release)"
(cd "$repo" && cargo build --release --locked --target-dir "$repo/target" \
	-p image-builder -p sysconfig -p p9sync)
ib="$release/image-builder"

outmp=$(zfs get -H -o value mountpoint "$dataset/output" 2>/dev/null) || outmp=
if [ -z "$outmp" ] || [ "${outmp:0:1}" != / ] || [ ! -f "$outmp/$tarball" ]; then
	{
		printf '%s: error: %s\n' "$prog" \
			"the OpenIndiana archive $tarball is not in $dataset/output yet."
		printf 'Build it first (this takes a while), then run %s again:\n\n' "$prog"
		for stage in hipster-01-strap hipster-02-image hipster-03-archive; do
			printf '  %s build -d %s -g openindiana -n %s -T %s\n' \
				"$ib" "$dataset" "$stage" "$repo/templates"
		done
	} >&2
	exit 1
fi

# The image gets its binaries through extsrc from a proto tree laid out like the
# image (see templates/README.md).
proto="$repo/target/dev-proto"
note "staging the binaries in $proto"
mkdir -p "$proto/usr/lib/sysconfig/plugins" "$proto/usr/bin"
cp -f "$release/sysconfig" "$proto/usr/lib/sysconfig/sysconfig"
for plugin in "$release"/sysconfig-plugin-*; do
	case ${plugin##*/} in
	*.*) continue ;; # cargo's .d dependency files
	esac
	if [ -f "$plugin" ] && [ -x "$plugin" ]; then
		cp -f "$plugin" "$proto/usr/lib/sysconfig/plugins/"
	fi
done
cp -f "$release/p9sync" "$proto/usr/bin/p9sync"

note "building $group/$name"
"$ib" build -d "$dataset" -g "$group" -n "$name" -T "$repo/templates" -E "$proto" \
	"${host_flags[@]}"

raw="$outmp/$group-$name.raw"
[ -f "$raw" ] || die "image-builder finished but $raw is missing"
if [ -n "$outdir" ]; then
	mkdir -p "$outdir"
	cp -f "$raw" "$outdir/"
	raw="$(cd "$outdir" && pwd)/$group-$name.raw"
fi

# The commands below are meant to be pasted: quote what they name.
qib=$(printf '%q' "$ib")
qrepo=$(printf '%q' "$repo")
qraw=$(printf '%q' "$raw")
vm="$qib vm --name illumos-dev -m 2048 -c 2 --repo $qrepo"

cat <<EOF

Image: $raw

Boot it with this repository shared over virtio-9p as the tag "repo" and the serial
console on this terminal (root password: illumos):

  $vm $qraw

That runs QEMU (KVM if it works here, else TCG; UEFI from OVMF, see --ovmf-code).
On an illumos host, print the bhyve command instead (VNIC: one made with
'dladm create-vnic'; --bootrom if the UEFI firmware is elsewhere) and run it as root:

  $vm --net vnic:VNIC --print bhyve $qraw

With libvirt, print a domain and define it:

  $vm --print libvirt $qraw >illumos-dev.xml
  virsh define illumos-dev.xml && virsh start illumos-dev && virsh console illumos-dev

'$qib vm --help' lists the other options (firmware, more shares, --print qemu).

Then edit, run 'cargo build --release' here, and in the guest:
  svcadm restart svc:/system/installer/sysconfig
  svcs -l svc:/system/installer/sysconfig
  tail -f /var/svc/log/system-installer-sysconfig:default.log
EOF

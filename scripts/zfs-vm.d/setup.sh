# shellcheck shell=bash
# `zfs-vm setup`: everything the guest needs, idempotent, cached under
# $CACHE_ROOT/<kernel version>-zfs<zfs version>/. Sourced by scripts/zfs-vm.

readonly APT_SOURCES=/etc/apt/sources.list.d/image-builder-zfs-vm.sources
readonly GUEST_MODULES='virtio_pci virtio_blk virtio_console 9p 9pnet_virtio overlay loop zfs vfat isofs nls_cp437 nls_iso8859_1 nls_utf8'
APT_UPDATED=0

apt_q() {
	# Another apt run on the machine must make us wait, not fail.
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -y -q "$@"
}

apt_update_once() {
	[ "$APT_UPDATED" = 1 ] && return 0
	log "apt-get update"
	apt_q update >/dev/null || die "apt-get update failed"
	APT_UPDATED=1
}

debian_mirror() {
	if [ -n "${ZFS_VM_MIRROR:-}" ]; then
		echo "$ZFS_VM_MIRROR"
		return
	fi
	local m=''
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	elif [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

# Whether apt is configured to fetch SUITE's COMPONENT (whatever the mirror or file).
apt_has() {
	# shellcheck disable=SC2016 # apt's own $(FIELD) syntax
	apt-get indextargets --format '$(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
		grep -qx "$1 $2"
}

apt_sources_ok() { apt_has bookworm contrib && apt_has bookworm-backports main && apt_has bookworm-backports contrib; }

# zfs-dkms and zfsutils-linux live in contrib; qemu-system-x86 may have to come from
# bookworm-backports (below). Sources the machine already has are left alone: listing
# them twice makes every apt run warn.
ensure_apt_sources() {
	apt_sources_ok && return 0
	local mirror
	mirror=$(debian_mirror)
	log "writing $APT_SOURCES"
	cat >"$APT_SOURCES" <<EOF
# Written by image-builder's scripts/zfs-vm setup.
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	APT_UPDATED=0
	apt_update_once
	apt_sources_ok || die "apt still lacks bookworm contrib or bookworm-backports (see $APT_SOURCES)"
}

# Debian's packaged kernel ABI (e.g. 6.1.0-28-amd64), the one linux-image-amd64 points
# at. Never `uname -r`: the host's running kernel is not Debian's and has no headers.
packaged_kver() {
	local k
	k=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
	if [ -z "$k" ]; then
		apt_update_once
		k=$(apt-cache depends linux-image-amd64 |
			awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
	fi
	[ -n "$k" ] || die "cannot find Debian's packaged kernel (apt-cache depends linux-image-amd64)"
	echo "$k"
}

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

ensure_packages() {
	local kver=$1 p missing=()
	for p in qemu-system-x86 busybox-static cpio kmod fdisk xz-utils jq dkms \
		"linux-headers-$kver" zfs-dkms zfsutils-linux; do
		installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	apt_update_once
	if ! installed qemu-system-x86; then
		# A qemu-utils from bookworm-backports Breaks bookworm's qemu-system-common, so the
		# system emulator must then come from backports too.
		local target=()
		if [[ "$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)" == *bpo* ]]; then
			target=(-t bookworm-backports)
		fi
		log "apt-get install ${target[*]} qemu-system-x86"
		apt_q install --no-install-recommends "${target[@]}" qemu-system-x86 >/dev/null ||
			die "apt-get install qemu-system-x86 failed"
	fi
	# Installing the headers may already build zfs.ko through the DKMS kernel hook.
	log "apt-get install busybox-static cpio kmod fdisk xz-utils jq dkms linux-headers-$kver zfs-dkms zfsutils-linux"
	apt_q install --no-install-recommends busybox-static cpio kmod fdisk xz-utils jq dkms \
		"linux-headers-$kver" zfs-dkms zfsutils-linux >/dev/null ||
		die "apt-get install failed"
}

zfs_version() { dpkg-query -W -f='${Version}' zfs-dkms | sed 's/-.*//'; }

dkms_module_dir() { echo "/var/lib/dkms/zfs/$2/$1/$(uname -m)/module"; }

ensure_zfs_module() {
	local kver=$1 zver=$2 st
	st=$(dkms status -k "$kver" "zfs/$zver" 2>/dev/null || true)
	if [[ "$st" != *built* && "$st" != *installed* ]] ||
		[ ! -f "$(dkms_module_dir "$kver" "$zver")/zfs.ko" ]; then
		log "dkms build zfs/$zver -k $kver (several minutes)"
		dkms build "zfs/$zver" -k "$kver" >/dev/null ||
			die "dkms build failed: see /var/lib/dkms/zfs/$zver/build/make.log"
	fi
	[ -f "$(dkms_module_dir "$kver" "$zver")/zfs.ko" ] ||
		die "dkms did not produce zfs.ko for $kver"
}

# The kernel package is extracted, never installed: the host keeps its own kernel.
ensure_kernel() {
	local kver=$1 dir=$2 dl
	if [ ! -f "$dir/kroot/boot/vmlinuz-$kver" ]; then
		log "fetching linux-image-$kver"
		dl=$(mktemp -d "$dir/download.XXXXXX")
		(cd "$dl" && apt-get download -q "linux-image-$kver" >/dev/null 2>&1) ||
			{
				rm -rf "$dl"
				die "apt-get download linux-image-$kver failed"
			}
		rm -rf "$dir/kroot"
		dpkg-deb -x "$dl"/linux-image-*.deb "$dir/kroot.tmp"
		rm -rf "$dl"
		mv "$dir/kroot.tmp" "$dir/kroot"
	fi
	# Under TCG the bzImage's own xz decompression costs seconds on every boot; QEMU boots
	# the decompressed ELF through its PVH entry point instead (Debian sets CONFIG_PVH=y).
	if [ ! -f "$dir/vmlinux" ]; then
		local off
		off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$dir/kroot/boot/vmlinuz-$kver" | head -n1 | cut -d: -f1) || true
		[ -n "$off" ] || die "no xz payload in vmlinuz-$kver"
		tail -c +"$((off + 1))" "$dir/kroot/boot/vmlinuz-$kver" |
			xz -dc --single-stream >"$dir/vmlinux.tmp" 2>/dev/null || true
		[ "$(head -c 4 "$dir/vmlinux.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] ||
			die "could not decompress vmlinux from vmlinuz-$kver"
		mv "$dir/vmlinux.tmp" "$dir/vmlinux"
	fi
}

ensure_initrd() {
	local kver=$1 zver=$2 dir=$3 key ir m f rel
	key=$(cat "$ZFS_VM_LIB/init" /bin/busybox "$(dkms_module_dir "$kver" "$zver")/zfs.ko" |
		cksum | cut -d' ' -f1)-$(echo "$GUEST_MODULES" | cksum | cut -d' ' -f1)
	[ -f "$dir/initrd.gz" ] && [ "$(cat "$dir/initrd.key" 2>/dev/null)" = "$key" ] && return 0
	log "building the initramfs"
	mkdir -p "$dir/kroot/lib/modules/$kver/updates/dkms"
	cp "$(dkms_module_dir "$kver" "$zver")"/*.ko "$dir/kroot/lib/modules/$kver/updates/dkms/"
	depmod -b "$dir/kroot" "$kver"
	ir=$(mktemp -d "$dir/initrd.XXXXXX")
	mkdir -p "$ir"/{bin,sbin,dev,proc,sys,etc,run,newroot}
	cp /bin/busybox "$ir/bin/busybox"
	for m in $(/bin/busybox --list); do
		[ "$m" = busybox ] || ln -s busybox "$ir/bin/$m"
	done
	: >"$ir/etc/modules-order"
	for m in $GUEST_MODULES; do
		# Dependencies first, in the order modprobe would load them; built-ins print no insmod.
		modprobe -S "$kver" -d "$dir/kroot" --show-depends "$m" |
			awk '$1 == "insmod" { print $2 }' >"$ir/deps"
		while read -r f; do
			rel=${f#"$dir/kroot"}
			grep -qxF "$rel" "$ir/etc/modules-order" && continue
			mkdir -p "$ir$(dirname "$rel")"
			cp "$f" "$ir$rel"
			echo "$rel" >>"$ir/etc/modules-order"
		done <"$ir/deps"
	done
	rm -f "$ir/deps"
	install -m 0755 "$ZFS_VM_LIB/init" "$ir/init"
	(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$dir/initrd.gz.tmp"
	rm -rf "$ir"
	mv "$dir/initrd.gz.tmp" "$dir/initrd.gz"
	echo "$key" >"$dir/initrd.key"
}

# KVM only when a real boot proves it works: on some hosts /dev/kvm exists but guests die
# with emulation errors.
ensure_accel() {
	local dir=$1 out
	[ -f "$dir/accel" ] && return 0
	local accel=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		log "probing KVM"
		out=$(timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 512 -display none \
			-no-reboot -serial stdio -monitor none -kernel "$dir/vmlinux" \
			-initrd "$dir/initrd.gz" -append 'console=ttyS0 quiet panic=-1 zfs_vm.probe' \
			</dev/null 2>&1) || true
		[[ "$out" == *ZFS_VM_PROBE_OK* ]] && accel=kvm
	fi
	log "accelerator: $accel"
	echo "$accel" >"$dir/accel"
}

cmd_setup() {
	[ "$(id -u)" = 0 ] || die "setup installs packages: run it as root"
	local t0 t kver zver dir
	t0=$(now)
	t=$t0
	ensure_apt_sources
	kver=$(packaged_kver)
	ensure_packages "$kver"
	log "packages ready ($(($(now) - t)) s)"
	t=$(now)
	zver=$(zfs_version)
	ensure_zfs_module "$kver" "$zver"
	log "zfs $zver module for $kver ready ($(($(now) - t)) s)"
	t=$(now)
	dir=$CACHE_ROOT/$kver-zfs$zver
	mkdir -p "$dir"
	ensure_kernel "$kver" "$dir"
	ensure_initrd "$kver" "$zver" "$dir"
	ensure_accel "$dir"
	ln -sfn "$kver-zfs$zver" "$CACHE_ROOT/current"
	log "guest ready in $dir ($(($(now) - t)) s; setup total $(($(now) - t0)) s)"
}

# The cache directory `run` uses: the one the last setup prepared.
current_dir() {
	local d=$CACHE_ROOT/current
	[ -f "$d/vmlinux" ] && [ -f "$d/initrd.gz" ] && [ -f "$d/accel" ] || return 1
	(cd "$d" && pwd -P)
}

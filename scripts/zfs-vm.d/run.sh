# shellcheck shell=bash
# `zfs-vm run`: boot the guest, run one command in it, exit with its status. Sourced by
# scripts/zfs-vm.

RUN_DIR=
QEMU_PID=
COPY_PIDS=()

# The copiers drain the output FIFOs and end at EOF once QEMU has closed them; one still
# blocked opening its FIFO (QEMU never got that far) is killed after a short grace.
stop_copiers() {
	local p i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		for p in "${COPY_PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && break
			p=
		done
		[ -z "${p:-}" ] && break
		sleep 0.2
	done
	for p in "${COPY_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	COPY_PIDS=()
}

# Kills the guest (through `timeout`, which passes the signal on to QEMU) and removes the
# run directory. Runs on every exit path, including signals.
run_cleanup() {
	if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -TERM "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	QEMU_PID=
	stop_copiers
	if [ -n "$RUN_DIR" ]; then
		rm -rf "$RUN_DIR"
		RUN_DIR=
	fi
}

# Run directories whose harness is gone: only SIGKILL skips the cleanup trap, and the
# `timeout` around QEMU has ended that guest by the time anyone could notice.
remove_stale_runs() {
	local d pid
	for d in "$CACHE_ROOT"/runs/run.*; do
		[ -d "$d" ] || continue
		pid=$(cat "$d/owner" 2>/dev/null) || pid=
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		# A directory this young may belong to a harness that has not written its owner yet.
		[ -z "$pid" ] && [ -n "$(find "$d" -maxdepth 0 -newermt '-1 minute')" ] && continue
		rm -rf "$d"
	done
}

on_signal() {
	log "interrupted (SIG$1): stopping the guest"
	run_cleanup
	trap - "$1"
	kill -s "$1" $$
}

run_usage() {
	cat >&2 <<'EOF'
usage: zfs-vm run [--timeout S] [--disk SIZE]... [--drive FILE]... [--rw DIR]...
                  [--env NAME=VALUE]... [--mem MIB] [--smp N] [--console FILE]
                  [--control SOCKET] [--pidfile FILE] [--rw-root] -- CMD [ARG]...
EOF
	exit "$RC_HARNESS"
}

cmd_run() {
	local timeout=${ZFS_VM_TIMEOUT:-600} mem=${ZFS_VM_MEM:-2048} smp=${ZFS_VM_SMP:-2}
	local console_copy='' disks=() rw=() envs=() control='' pidfile='' rw_root=0
	while [ $# -gt 0 ]; do
		case $1 in
		--timeout) timeout=${2:?}; shift 2 ;;
		--disk) disks+=("size:${2:?}"); shift 2 ;;
		--drive)
			[ -f "${2:?}" ] || die "no such file: $2"
			disks+=("file:$(realpath -- "$2")")
			shift 2
			;;
		--rw)
			[ -d "${2:?}" ] || die "no such directory: $2"
			rw+=("$(realpath -- "$2")")
			shift 2
			;;
		--env) [[ ${2:?} == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE"; envs+=("$2"); shift 2 ;;
		--mem) mem=${2:?}; shift 2 ;;
		--smp) smp=${2:?}; shift 2 ;;
		--console) console_copy=${2:?}; shift 2 ;;
		--control) control=${2:?}; shift 2 ;;
		--pidfile) pidfile=${2:?}; shift 2 ;;
		--rw-root) rw_root=1; shift ;;
		--) shift; break ;;
		*) run_usage ;;
		esac
	done
	[ $# -gt 0 ] || run_usage
	[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds"

	local dir accel
	dir=$(current_dir) || die "the guest is not set up: run scripts/zfs-vm setup (as root)"
	accel=${ZFS_VM_ACCEL:-$(cat "$dir/accel")}
	# ZFS_VM_DEBUG=1: kernel messages and a trace of the guest's init on the console log.
	local kargs=quiet
	[ "${ZFS_VM_DEBUG:-0}" = 1 ] && kargs=zfs_vm.debug

	trap run_cleanup EXIT
	trap 'on_signal INT' INT
	trap 'on_signal TERM' TERM
	trap 'on_signal HUP' HUP
	mkdir -p "$CACHE_ROOT/runs"
	remove_stale_runs
	RUN_DIR=$(mktemp -d "$CACHE_ROOT/runs/run.XXXXXX")
	echo $$ >"$RUN_DIR/owner"
	mkdir "$RUN_DIR/ctl"
	install -m 0644 "$ZFS_VM_LIB/stage2" "$RUN_DIR/ctl/stage2"

	# shellcheck disable=SC2054 # commas separate QEMU's own sub-options
	local qemu=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
		-m "$mem" -smp "$smp"
		-kernel "$dir/vmlinux" -initrd "$dir/initrd.gz"
		-append "console=ttyS0 panic=-1 $kargs"
		-serial "file:$RUN_DIR/console.log"
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
		-virtfs "local,path=$RUN_DIR/ctl,mount_tag=ctl,security_model=none"
		-device virtio-serial-pci
		-chardev "file,id=zout,path=$RUN_DIR/out" -device virtserialport,chardev=zout,name=zfs-vm.out
		-chardev "file,id=zerr,path=$RUN_DIR/err" -device virtserialport,chardev=zerr,name=zfs-vm.err)
	# A control port for a command that serves requests (the warm embedded guest): a
	# virtio serial port named zfs-vm.ctl, a Unix socket on the host that QEMU listens on.
	if [ -n "$control" ]; then
		qemu+=(-chardev "socket,id=zctl,path=$control,server=on,wait=off"
			-device virtserialport,chardev=zctl,name=zfs-vm.ctl)
	fi
	[ -n "$pidfile" ] && qemu+=(-pidfile "$pidfile")
	# The host's / read-write at /run/zfs-vm-host (not at /): the command bind-mounts the
	# directories it writes, whichever they are, at their own paths.
	if [ "$rw_root" = 1 ]; then
		qemu+=(-virtfs local,path=/,mount_tag=hostrw,security_model=none,multidevs=remap)
		printf 'hostrw /run/zfs-vm-host\n' >>"$RUN_DIR/ctl/rw-shares"
	fi
	case $accel in
	kvm) qemu+=(-accel kvm -cpu host) ;;
	tcg) qemu+=(-accel tcg) ;;
	*) die "unknown accelerator '$accel' (ZFS_VM_ACCEL: tcg or kvm)" ;;
	esac
	local i=0 d devs=() letters=abcdefghijklmnopqrstuvwxyz
	for d in "${disks[@]}"; do
		if [ "$i" -ge 26 ]; then die "at most 26 disks"; fi
		local f=${d#*:}
		if [[ $d == size:* ]]; then
			f=$RUN_DIR/disk$i.img
			truncate -s "${d#size:}" "$f" || die "bad disk size: ${d#size:}"
		fi
		# Scratch disks skip flushes; a caller's image honours the guest's (ZFS's) flushes.
		local cache=writeback
		[[ $d == size:* ]] && cache=unsafe
		qemu+=(-drive "file=$f,format=raw,if=virtio,cache=$cache")
		devs+=("/dev/vd${letters:i:1}")
		i=$((i + 1))
	done
	i=0
	for d in "${rw[@]}"; do
		qemu+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none")
		printf 'rw%s %s\n' "$i" "$d" >>"$RUN_DIR/ctl/rw-shares"
		i=$((i + 1))
	done

	{
		printf 'export ZFS_VM_GUEST=1 ZFS_VM_DISKS=%q\n' "${devs[*]}"
		for d in "${envs[@]}"; do printf 'export %s=%q\n' "${d%%=*}" "${d#*=}"; done
		printf 'cd -- %q || exit %s\n' "$PWD" "$RC_HARNESS"
		printf 'exec'
		printf ' %q' "$@"
		printf '\n'
	} >"$RUN_DIR/ctl/cmd"

	# The command's output reaches this script's stdout and stderr through FIFOs, whatever
	# those are (terminal, pipe, file, socket). Not `-chardev stdio`: QEMU reads its stdin
	# there, and at EOF marks the port closed, which blocks every guest write.
	mkfifo "$RUN_DIR/out" "$RUN_DIR/err"
	cat "$RUN_DIR/out" &
	COPY_PIDS+=($!)
	cat "$RUN_DIR/err" >&2 &
	COPY_PIDS+=($!)

	local t0 qrc=0
	t0=$(now)
	# `timeout` bounds a hung guest even if this script itself is killed with SIGKILL.
	timeout -k 5 "$timeout" "${qemu[@]}" </dev/null 2>"$RUN_DIR/qemu.log" &
	QEMU_PID=$!
	wait "$QEMU_PID" || qrc=$?
	QEMU_PID=
	stop_copiers

	[ -n "$console_copy" ] && cp "$RUN_DIR/console.log" "$console_copy"
	if [ -f "$RUN_DIR/ctl/rc" ]; then
		local rc
		rc=$(cat "$RUN_DIR/ctl/rc")
		[ "${ZFS_VM_QUIET:-0}" = 1 ] || log "guest command exited $rc ($(($(now) - t0)) s, $accel)"
		return "$rc"
	fi
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		log "the guest did not finish within ${timeout} s and was killed; console log tail:"
		tail -n 40 "$RUN_DIR/console.log" >&2
		return "$RC_TIMEOUT"
	fi
	log "the guest stopped without running the command (qemu status $qrc); console log tail:"
	tail -n 40 "$RUN_DIR/console.log" >&2
	[ -s "$RUN_DIR/qemu.log" ] && sed 's/^/qemu: /' "$RUN_DIR/qemu.log" >&2
	return "$RC_HARNESS"
}

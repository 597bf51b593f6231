#!/usr/bin/env bash
# A stage push to a registry over a link of limited bandwidth, as a build host pushing
# to a registry elsewhere sees it: the push that uploads the stream while it is written
# (image-builder's, chunked PATCHes as the file grows) against the same push done after
# the stream is complete (hash, then upload: our own `Store::push_file`) and against the
# reference, `curl` uploading the finished file in one PUT after `sha256sum`
# (distribution-spec, "Pushing a blob monolithically"), all in one run.
#
# The stream stands in for `zfs send` (the storepush example: MB MiB of incompressible
# bytes written at no more than RATE MB/s), so no ZFS is needed. The registry is Debian's
# docker-registry, in a network namespace of its own whose loopback is limited to LINK by
# a token bucket (tc-tbf(8)); the pushes run in the same namespace. When the link is
# slower than the stream the upload is the long part and the streamed push hides the
# writing of the stream under it; on an unlimited loopback both wait on the CPU and
# differ by little (bench/store.sh BENCH_STORE=oci measures that case in the ZFS guest).
#
#   cargo build --release --example storepush
#   bench/store-push.sh [MB [RATE [LINK [RUNS]]]]     (defaults: 1024 300 1gbit 3)
#
# LINK is a tc rate (100mbit, 1gbit, ...) or none for the bare loopback.
#
# Needs root (ip netns, tc), docker-registry and curl. Prints each run and the medians,
# and the ratios streamed/sequential and streamed/reference.
set -euo pipefail
cd "$(dirname "$0")/.."

mb=${1:-1024} rate=${2:-300} link=${3:-1gbit} runs=${4:-3}
bin=$(realpath -m "${CARGO_TARGET_DIR:-target}/release/examples/storepush")
[ "$(id -u)" = 0 ] || { echo "bench/store-push.sh: run as root (ip netns, tc)" >&2; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release --example storepush" >&2; exit 1; }
for tool in docker-registry curl sha256sum tc ip; do
	command -v "$tool" >/dev/null || { echo "bench/store-push.sh: needs $tool" >&2; exit 1; }
done

ns=ibpush$$ port=5077 work=$(mktemp -d) regpid=
cleanup() {
	if [ -n "$regpid" ]; then
		kill "$regpid" 2>/dev/null || true
		wait "$regpid" 2>/dev/null || true
	fi
	ip netns delete "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
in_ns ip link set lo up
[ "$link" = none ] || in_ns tc qdisc add dev lo root tbf rate "$link" burst 512kb latency 100ms
cat >"$work/reg.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/reg
http:
  addr: 127.0.0.1:$port
EOF
# Not through in_ns: a function put in the background is a subshell, and killing it would
# leave the registry running. `ip netns exec` execs the program, so $! is the registry.
ip netns exec "$ns" docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
regpid=$!
for _ in $(seq 50); do
	in_ns curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" && break
	sleep 0.2
done
in_ns curl -fs -o /dev/null "http://127.0.0.1:$port/v2/" || { cat "$work/reg.log"; exit 1; }

store=oci://127.0.0.1:$port/bench
# The reference: the finished file hashed, then one monolithic upload (POST for an
# upload location, PUT of the whole body with ?digest=).
reference() {
	local t0 file=$work/ref.bin loc digest
	t0=$(date +%s.%N)
	"$bin" produce "$file" "$mb" "$rate" >/dev/null
	digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
	loc=$(in_ns curl -fsS -X POST -D - -o /dev/null "http://127.0.0.1:$port/v2/bench/blobs/uploads/" |
		tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
	case $loc in http*) ;; *) loc=http://127.0.0.1:$port$loc ;; esac
	case $loc in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
	in_ns curl -fsS -X PUT -H 'Content-Type: application/octet-stream' \
		--upload-file "$file" -o /dev/null "$loc"
	rm -f "$file"
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}' 
}

declare -A times
for kind in streamed sequential reference; do times[$kind]=; done
echo "stream: $mb MiB at <= $rate MB/s; link: $link; runs: $runs"
for run in $(seq "$runs"); do
	for kind in streamed sequential reference; do
		if [ "$kind" = reference ]; then
			t=$(reference)
		else
			t=$(cd "$work" && in_ns "$bin" "$kind" "$store" "$mb" "$rate" 2>"$work/err") || { cat "$work/err" >&2; exit 1; }
		fi
		times[$kind]+="$t "
		printf 'run %d %-10s %6.2f s\n' "$run" "$kind" "$t"
	done
	# Each run's blobs go, so that the store's size stays within the disk's.
	rm -rf "$work/reg/docker/registry/v2/blobs"
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(median <<<"${times[streamed]}")
q=$(median <<<"${times[sequential]}")
r=$(median <<<"${times[reference]}")
printf 'median: streamed %.2f s, sequential %.2f s, reference (sha256sum + curl) %.2f s\n' "$s" "$q" "$r"
awk -v s="$s" -v q="$q" -v r="$r" 'BEGIN {
	printf "ratio streamed/sequential: %.2f\nratio streamed/reference: %.2f\n", s / q, s / r
}' 

#!/usr/bin/env bash
# Benchmark: 1 GiB written with dd bs=1M, cold read (fresh mount, caches dropped) and
# warm read, on a cloudraid volume with k=4, m=2 over six file:// backends, and the
# same on a plain folder of the same disk; then the cold read again with m=2 of the six
# backend folders gone (degraded read). Prints MB/s (10^6 bytes/s), the ratios to the
# plain folder and to the healthy read, and the mount daemon's peak RSS; and the CLI's
# put and get of the same file without a mount; then `ls -l` of 5,000 files of 4 KiB
# right after a mount, with cold caches (SMALL_FILES overrides the count). Needs root
# and /dev/fuse.
# Usage: scripts/bench.sh [SIZE_MIB] [RUNS]   (defaults: 1024, 3; medians are printed)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
cargo build --release --locked 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
work=${BENCH_DIR:-/var/tmp/cloudraid-bench}
rm -rf "$work"; mkdir -p "$work/plain" "$work/mnt"
trap '"$bin" umount "$work/mnt" >/dev/null 2>&1 || true' EXIT
head -c $((size_mib << 20)) /dev/urandom > "$work/src.bin"
backends=()
for i in 1 2 3 4 5 6; do backends+=(--backend "d$i=file://$work/backend-$i"); done
"$bin" init --config "$work/bench.toml" "${backends[@]}" --data-shards 4 --parity-shards 2 \
  --cache-size 256MiB --state-dir "$work/state" --key-file "$work/bench.key" >/dev/null
cache_mib=256

now() { date +%s.%N; }
mbps() { awk -v b=$((size_mib << 20)) -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
daemon_pid() { "$bin" status --config "$work/bench.toml" --json | awk -F': ' '/"pid"/ { gsub(/[ ,]/, "", $2); print $2; exit }'; }
peak_rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

declare -a pw pc pwarm cw cc cwarm cdeg rss cput cget
for r in $(seq "$runs"); do
  rm -f "$work/plain/f"; drop
  t0=$(now); dd if="$work/src.bin" of="$work/plain/f" bs=1M conv=fsync status=none; t1=$(now)
  pw+=($(mbps "$t0" "$t1"))
  drop
  t0=$(now); dd if="$work/plain/f" of=/dev/null bs=1M status=none; t1=$(now)
  pc+=($(mbps "$t0" "$t1"))
  t0=$(now); dd if="$work/plain/f" of=/dev/null bs=1M status=none; t1=$(now)
  pwarm+=($(mbps "$t0" "$t1"))

  "$bin" mount --config "$work/bench.toml" "$work/mnt"
  pid=$(daemon_pid)
  rm -f "$work/mnt/f"; drop
  t0=$(now); dd if="$work/src.bin" of="$work/mnt/f" bs=1M conv=fsync status=none; t1=$(now)
  cw+=($(mbps "$t0" "$t1"))
  rss+=($(peak_rss_mib "$pid"))
  "$bin" umount "$work/mnt" >/dev/null
  drop
  "$bin" mount --config "$work/bench.toml" "$work/mnt"
  t0=$(now); dd if="$work/mnt/f" of=/dev/null bs=1M status=none; t1=$(now)
  cc+=($(mbps "$t0" "$t1"))
  t0=$(now); dd if="$work/mnt/f" of=/dev/null bs=1M status=none; t1=$(now)
  cwarm+=($(mbps "$t0" "$t1"))
  cmp -s "$work/src.bin" "$work/mnt/f" || { echo "read back differs!" >&2; exit 1; }
  "$bin" umount "$work/mnt" >/dev/null
  # Degraded: two of the six backends (m=2) gone, every chunk rebuilt from parity.
  mv "$work/backend-1" "$work/backend-1.off"; mv "$work/backend-2" "$work/backend-2.off"
  drop
  "$bin" mount --config "$work/bench.toml" "$work/mnt" 2>/dev/null
  t0=$(now); dd if="$work/mnt/f" of=/dev/null bs=1M status=none; t1=$(now)
  cdeg+=($(mbps "$t0" "$t1"))
  cmp -s "$work/src.bin" "$work/mnt/f" || { echo "degraded read back differs!" >&2; exit 1; }
  "$bin" umount "$work/mnt" >/dev/null
  mv "$work/backend-1.off" "$work/backend-1"; mv "$work/backend-2.off" "$work/backend-2"
  # The CLI without a mount: put (file read straight into chunks, no staging; the
  # index flushed before it returns) and get (written and fsynced) of the same file.
  "$bin" rm --config "$work/bench.toml" /f >/dev/null
  drop
  t0=$(now); "$bin" put --config "$work/bench.toml" "$work/src.bin" /f >/dev/null; t1=$(now)
  cput+=($(mbps "$t0" "$t1"))
  rm -f "$work/got.bin"; drop
  t0=$(now); "$bin" get --config "$work/bench.toml" /f "$work/got.bin" >/dev/null; t1=$(now)
  cget+=($(mbps "$t0" "$t1"))
  cmp -s "$work/src.bin" "$work/got.bin" || { echo "get differs!" >&2; exit 1; }
  rm -f "$work/got.bin"
  echo "run $r: plain ${pw[-1]}/${pc[-1]}/${pwarm[-1]}  cloudraid ${cw[-1]}/${cc[-1]}/${cwarm[-1]} degraded ${cdeg[-1]} put/get ${cput[-1]}/${cget[-1]} MB/s  write peak RSS ${rss[-1]} MiB" >&2
done

# `ls -l` right after a mount: 5,000 files of 4 KiB put once, then per run the caches
# dropped, a mount, the listing timed, an unmount.
nsmall=${SMALL_FILES:-5000}
mkdir -p "$work/small"
for i in $(seq "$nsmall"); do head -c 4096 /dev/urandom > "$work/small/f$i"; done
"$bin" put --config "$work/bench.toml" "$work/small" /small >/dev/null
declare -a cls
for r in $(seq "$runs"); do
  drop
  "$bin" mount --config "$work/bench.toml" "$work/mnt"
  t0=$(now); ls -l "$work/mnt/small" > /dev/null; t1=$(now)
  cls+=($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'))
  "$bin" umount "$work/mnt" >/dev/null
  echo "run $r: ls -l of $nsmall files after a mount ${cls[-1]} s" >&2
done

m() { printf '%s\n' "$@" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
W=$(m "${cw[@]}"); C=$(m "${cc[@]}"); H=$(m "${cwarm[@]}")
PW=$(m "${pw[@]}"); PC=$(m "${pc[@]}"); PH=$(m "${pwarm[@]}"); R=$(m "${rss[@]}"); D=$(m "${cdeg[@]}")
echo
echo "| ${size_mib} MiB, k=4 m=2, six file:// backends, median of $runs | write (dd bs=1M, conv=fsync) | cold read | warm read |"
echo "|---|---|---|---|"
echo "| plain folder, same disk | $PW MB/s | $PC MB/s | $PH MB/s |"
echo "| cloudraid | $W MB/s | $C MB/s | $H MB/s |"
echo "| ratio to plain folder | $(ratio "$W" "$PW") | $(ratio "$C" "$PC") | $(ratio "$H" "$PH") |"
echo
echo "degraded cold read, 2 of 6 backends gone: $D MB/s = $(ratio "$D" "$C") of the healthy cold read"
echo
echo "cloudraid put (unmounted): $(m "${cput[@]}") MB/s; cloudraid get, cold: $(m "${cget[@]}") MB/s"
echo
echo "ls -l of $nsmall files of 4 KiB right after a mount (cold caches): $(m "${cls[@]}") s"
echo
echo "peak RSS of the mount daemon during the write: $R MiB (limit: cache $cache_mib MiB + 128 MiB = $((cache_mib + 128)) MiB)"
[ "$R" -lt $((cache_mib + 128)) ] || { echo "peak RSS above the limit" >&2; exit 1; }

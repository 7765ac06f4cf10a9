#!/usr/bin/env bash
# Benchmark of sealing: 1 GiB written through the mount (dd bs=1M, conv=fsync) and
# read back cold (fresh mount, page cache dropped), k=4 m=2 over six file://
# backends, for incompressible (random) and compressible (text: `seq` output) data,
# with encryption and zstd on (the default), encryption only, and neither. Then
# the dedup figures: a 256 MiB file copied in twice, and again with one byte
# inserted at its start, as `cloudraid status` counts them.
# Prints MB/s (10^6 bytes/s), medians of RUNS. Needs root and /dev/fuse.
# Usage: scripts/bench-seal.sh [SIZE_MIB] [RUNS]   (defaults: 1024, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
cargo build --release --locked 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
work=${BENCH_DIR:-/var/tmp/cloudraid-bench-seal}
rm -rf "$work"; mkdir -p "$work/mnt"
trap '"$bin" umount "$work/mnt" >/dev/null 2>&1 || true' EXIT
head -c $((size_mib << 20)) /dev/urandom > "$work/random.bin"
(seq 1 1000000000 || true) | head -c $((size_mib << 20)) > "$work/text.bin"

now() { date +%s.%N; }
mbps() { awk -v b=$((size_mib << 20)) -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
volume() { # NAME INIT-OPTIONS...
  local name=$1; shift
  rm -rf "$work/$name"; mkdir -p "$work/$name"
  local backends=()
  for i in 1 2 3 4 5 6; do backends+=(--backend "d$i=file://$work/$name/backend-$i"); done
  "$bin" init --config "$work/$name/v.toml" "${backends[@]}" --data-shards 4 --parity-shards 2 \
    --state-dir "$work/$name/state" "$@" >/dev/null
}
stat_json() { "$bin" status --config "$1" --json; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

echo "| ${size_mib} MiB, k=4 m=2, six file:// backends, median of $runs | data | write | cold read | stored / logical |"
echo "|---|---|---|---|---|"
for mode in "encryption + zstd:--key-file KEY" "encryption, no compression:--key-file KEY --compression none" "neither:--no-encryption --compression none"; do
  label=${mode%%:*}; opts=${mode#*:}
  for data in random text; do
    declare -a w=() c=()
    ratio=""
    for r in $(seq "$runs"); do
      volume v ${opts//KEY/$work/v.key}
      cfg=$work/v/v.toml
      "$bin" mount --config "$cfg" "$work/mnt"; drop
      t0=$(now); dd if="$work/$data.bin" of="$work/mnt/f" bs=1M conv=fsync status=none; t1=$(now)
      w+=($(mbps "$t0" "$t1"))
      "$bin" umount "$work/mnt" >/dev/null; drop
      "$bin" mount --config "$cfg" "$work/mnt"
      t0=$(now); dd if="$work/mnt/f" of=/dev/null bs=1M status=none; t1=$(now)
      c+=($(mbps "$t0" "$t1"))
      cmp -s "$work/$data.bin" "$work/mnt/f" || { echo "read back differs!" >&2; exit 1; }
      s=$(stat_json "$cfg")
      ratio=$(awk -v a="$(echo "$s" | field stored_bytes)" -v b="$(echo "$s" | field logical_bytes)" 'BEGIN { printf "%.2f", a / b }')
      "$bin" umount "$work/mnt" >/dev/null
      rm -f "$work/v.key"
    done
    echo "| $label | $data | $(printf '%s\n' "${w[@]}" | median) MB/s | $(printf '%s\n' "${c[@]}" | median) MB/s | $ratio |"
  done
done

# Dedup: 256 MiB, twice, then shifted by one byte.
volume d --key-file "$work/d.key"
cfg=$work/d/v.toml
"$bin" mount --config "$cfg" "$work/mnt"
head -c $((256 << 20)) "$work/random.bin" > "$work/a.bin"
{ printf 'x'; cat "$work/a.bin"; } > "$work/shifted.bin"
cp "$work/a.bin" "$work/mnt/first"; s1=$(stat_json "$cfg")
cp "$work/a.bin" "$work/mnt/second"; s2=$(stat_json "$cfg")
cp "$work/shifted.bin" "$work/mnt/shifted"; s3=$(stat_json "$cfg")
"$bin" umount "$work/mnt" >/dev/null
echo
echo "| dedup, 256 MiB random file | logical | unique chunks | unique bytes | stored bytes |"
echo "|---|---|---|---|---|"
for row in "copied in once:$s1" "copied in again, another name:$s2" "again with one byte inserted at the start:$s3"; do
  label=${row%%:*}; s=${row#*:}
  echo "| $label | $(echo "$s" | field logical_bytes) | $(echo "$s" | field chunks) | $(echo "$s" | field unique_bytes) | $(echo "$s" | field stored_bytes) |"
done

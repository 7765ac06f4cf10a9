#!/usr/bin/env bash
# Small files: FILES files of 4 KiB (random bytes, one folder) copied with `cp -r` into
# a mount of a volume with k=4 m=2 over six file:// backends on the same disk
# (encrypted, zstd, every other setting at its default), once with inline_max at its
# default (8 KiB: each file's one chunk kept in the index) and once with inline_max 0
# (every chunk in 4+2 shards, as before inline chunks). Each run uses a fresh volume
# (equal content would otherwise dedup). Every file is durable when cp's close of it
# returns (docs/SEMANTICS.md: the index flushed at release; shards, if any, on their
# write quorum and fsynced). Then unmount (which pushes the metadata log), and
# report: files/s of the copy, shard objects on the backends, bytes of the metadata
# log on one backend and of the local index, per file; and a cold read of every file
# after a remount (checked against the source).
# Usage: scripts/bench-small.sh [FILES] [RUNS]   (defaults: 5000, 3; medians printed)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-5000}
runs=${2:-3}
cargo build --release --locked 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
work=${BENCH_DIR:-/var/tmp/cloudraid-bench-small}
rm -rf "$work"; mkdir -p "$work/src" "$work/mnt"
trap '"$bin" umount "$work/mnt" >/dev/null 2>&1 || true' EXIT
head -c $((files * 4096)) /dev/urandom > "$work/all.bin"
split -b 4096 -d -a 6 "$work/all.bin" "$work/src/f"
rm "$work/all.bin"

now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$files" -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", n / (t1 - t0) }'; }
per_file() { awk -v b="$1" -v n="$files" 'BEGIN { printf "%.0f", b / n }'; }

fresh_volume() {
  "$bin" umount "$work/mnt" >/dev/null 2>&1 || true
  rm -rf "$work/vol"; mkdir -p "$work/vol"
  local backends=()
  for i in 1 2 3 4 5 6; do backends+=(--backend "d$i=file://$work/vol/backend-$i"); done
  "$bin" init --config "$work/vol/v.toml" "${backends[@]}" --data-shards 4 --parity-shards 2 \
    --state-dir "$work/vol/state" --key-file "$work/vol/v.key" >/dev/null
  sed -i "s/^inline_max = .*/inline_max = \"$1\"/" "$work/vol/v.toml"
  grep -q "^inline_max = \"$1\"" "$work/vol/v.toml"
}

declare -A rates reads shards logb idxb
for mode in 8KiB 0; do
  for r in $(seq "$runs"); do
    fresh_volume "$mode"
    "$bin" mount --config "$work/vol/v.toml" "$work/mnt"
    drop
    t0=$(now); cp -r "$work/src" "$work/mnt/"; t1=$(now)
    copy=$(rate "$t0" "$t1")
    rates[$mode]+="$copy "
    "$bin" umount "$work/mnt" >/dev/null
    shards[$mode]+="$(find "$work/vol" -path '*/backend-*/chunks/*' -type f | wc -l) "
    logb[$mode]+="$(du -sb "$work/vol/backend-1/meta" | cut -f1) "
    idxb[$mode]+="$(du -sb "$work/vol/state/index" | cut -f1) "
    drop
    "$bin" mount --config "$work/vol/v.toml" "$work/mnt"
    t0=$(now); cat "$work/mnt/src/"* > /dev/null; t1=$(now)
    reads[$mode]+="$(rate "$t0" "$t1") "
    diff -r "$work/src" "$work/mnt/src" >/dev/null || { echo "read back differs!" >&2; exit 1; }
    "$bin" umount "$work/mnt" >/dev/null
    echo "inline_max $mode run $r: copy $copy files/s" >&2
  done
done

m() { printf '%s\n' $1 | median; }
echo
echo "| $files files of 4 KiB, cp -r into a mount, k=4 m=2, six file:// backends, median of $runs | inline_max = 8KiB (default) | inline_max = 0 |"
echo "|---|---|---|"
echo "| copy (each file durable at close) | $(m "${rates[8KiB]}") files/s | $(m "${rates[0]}") files/s |"
echo "| cold read after a remount (cat of every file) | $(m "${reads[8KiB]}") files/s | $(m "${reads[0]}") files/s |"
echo "| shard objects on the backends | $(m "${shards[8KiB]}") | $(m "${shards[0]}") |"
echo "| metadata log + checkpoints on one backend, per file | $(per_file "$(m "${logb[8KiB]}")") B | $(per_file "$(m "${logb[0]}")") B |"
echo "| local index (sled), per file | $(per_file "$(m "${idxb[8KiB]}")") B | $(per_file "$(m "${idxb[0]}")") B |"
awk -v a="$(m "${rates[8KiB]}")" -v b="$(m "${rates[0]}")" 'BEGIN { printf "\ncopy: inline %.2fx the rate without\n", a / b }'

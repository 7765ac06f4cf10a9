#!/usr/bin/env bash
# Benchmark: snapshots on a real volume (sled index in its state dir, file://
# backends on the local disk, shards not fsynced: the work is in the index).
#
# For each size N (default: 10000 and 100000 files): creates a volume (k=2, m=1 over
# three file:// backends, 64 KiB chunks), stores N distinct 64-byte files with
# `cloudraid put` (/src/wide holds 10,000 of them, the rest are in /src/dNNN, 1,000
# each), then with examples/bench_snapshots (the library, not mounted):
#   - takes a first snapshot: time, new trees and their bytes, metadata objects uploaded;
#   - changes 10 files of /src/wide and takes a second one: the same figures;
#   - mounts the volume and times `ls -l` of /src/wide (10,000 files) in the live tree
#     and in the snapshot, cold (first listing after a fresh mount with the kernel's
#     caches dropped) and warm (the same listing again), median of RUNS;
#   - on the 10,000-file volume only: unlinks every file, takes a third snapshot and
#     times forget --keep-last 1 --prune (the two first snapshots alone hold the data).
# Then a 1 GiB volume (k=4, m=2 over six file:// backends, 4 MiB chunks): 16 random
# files of 64 MiB put, a snapshot, the files unlinked, a second snapshot, and
# forget --keep-last 1 --prune timed.
#
# Usage: scripts/bench-snapshots.sh [SIZES] [RUNS]   e.g. "10000 100000" 3
# Needs root and /dev/fuse (for the browse figures).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-10000 100000}
runs=${2:-3}
cargo build --release --locked 2>&1 | tail -n 1
cargo build --release --locked --example bench_snapshots 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
ex=$PWD/target/release/examples/bench_snapshots
base=${BENCH_DIR:-/var/tmp/cloudraid-bench-snapshots}
rm -rf "$base"; mkdir -p "$base"
mounted=""
trap '[ -n "$mounted" ] && "$bin" umount "$mounted" >/dev/null 2>&1 || true' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# init WORK CHUNK BACKENDS...: a volume in WORK, shards not fsynced.
init() {
  local work=$1 chunk=$2; shift 2
  local args=()
  for b in "$@"; do args+=(--backend "$b=file://$work/$b"); done
  "$bin" init --config "$work/v.toml" "${args[@]}" --state-dir "$work/state" \
    --chunk-size "$chunk" --key-file "$work/v.key" >/dev/null
  python3 - "$work/v.toml" <<'PY'
import sys
p = sys.argv[1]
out = []
for line in open(p).read().splitlines():
    out.append(line)
    if line.startswith('url = "file://'):
        out += ['[backend.options]', 'fsync = "false"']
open(p, "w").write("\n".join(out) + "\n")
PY
}

snap() { # WORK TAG: prints the example's line, sets $id
  local line
  line=$("$ex" "$1/v.toml" "$1" snapshot "$2" | tail -n 1)
  echo "  $line"
  id=$(echo "$line" | awk '{ print $2 }' | tr -d :)
}

ls_time() { # DIR
  local t0 t1
  t0=$(now); ls -l "$1" > /dev/null; t1=$(now)
  secs "$t0" "$t1"
}

browse() { # WORK ID
  local work=$1 id=$2 mnt=$1/mnt kind cold warm c w
  for kind in live snapshot; do
    local dir=$mnt/src/wide
    [ "$kind" = snapshot ] && dir=$mnt/.snapshots/$id/src/wide
    cold=(); warm=()
    for _ in $(seq "$runs"); do
      drop
      "$bin" mount --config "$work/v.toml" "$mnt"; mounted=$mnt
      c=$(ls_time "$dir"); w=$(ls_time "$dir")
      [ "$(ls "$dir" | wc -l)" = 10000 ] || { echo "$dir does not list 10000 files" >&2; exit 1; }
      "$bin" umount "$mnt" >/dev/null; mounted=""
      cold+=("$c"); warm+=("$w")
    done
    echo "  ls -l of 10,000 files, $kind: cold $(printf '%s\n' "${cold[@]}" | median) s, warm $(printf '%s\n' "${warm[@]}" | median) s (median of $runs; cold: ${cold[*]})"
  done
}

for n in $sizes; do
  work=$base/v$n
  mkdir -p "$work/src" "$work/mnt"
  init "$work" 64KiB a b c
  python3 - "$work/src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
wide = min(n, 10000)
os.makedirs(os.path.join(root, "wide"))
for i in range(n):
    if i < wide:
        d = os.path.join(root, "wide")
    else:
        d = os.path.join(root, f"d{(i - wide) // 1000:03d}")
        if (i - wide) % 1000 == 0:
            os.makedirs(d)
    with open(os.path.join(d, f"f{i:06d}"), "w") as f:
        f.write(f"file {i:06d} ".ljust(64, "x"))
PY
  echo "== $n files"
  t0=$(now); "$bin" put --config "$work/v.toml" "$work/src" / >/dev/null; t1=$(now)
  echo "  put of $n files: $(secs "$t0" "$t1") s"
  echo "  index: $(du -sb "$work/state" | cut -f1) bytes in the state dir"
  snap "$work" first
  first=$id
  "$ex" "$work/v.toml" "$work" change 10 /src/wide | tail -n 1 | sed 's/^/  /'
  snap "$work" second
  browse "$work" "$first"
  if [ "$n" = 10000 ]; then
    "$ex" "$work/v.toml" "$work" unlink /src/wide | tail -n 1 | sed 's/^/  /'
    snap "$work" third
    "$ex" "$work/v.toml" "$work" forget-prune 1 | tail -n 1 | sed 's/^/  /'
  fi
done

echo "== 1 GiB in 16 files, k=4 m=2 over six backends"
work=$base/big
mkdir -p "$work/src/big"
init "$work" 4MiB a b c d e f
for i in $(seq -w 1 16); do head -c $((64 << 20)) /dev/urandom > "$work/src/big/r$i"; done
t0=$(now); "$bin" put --config "$work/v.toml" "$work/src" / >/dev/null; t1=$(now)
echo "  put of 1 GiB: $(secs "$t0" "$t1") s"
snap "$work" first
"$ex" "$work/v.toml" "$work" unlink /src/big | tail -n 1 | sed 's/^/  /'
snap "$work" second
"$ex" "$work/v.toml" "$work" forget-prune 1 | tail -n 1 | sed 's/^/  /'

#!/usr/bin/env bash
# Benchmark: recovering the index of a volume of 100,000 small files from the
# backends alone. Creates a volume (k=2, m=1 over three file:// backends, shards not
# fsynced to keep the setup short), stores N distinct 64-byte files with
# `cloudraid put` (no mount), deletes the state dir, and times `cloudraid recover`;
# then again with one backend folder gone; then mounts and counts the files.
# Usage: scripts/bench-recover.sh [FILES]   (default 100000). Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-100000}
cargo build --release --locked 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
work=${BENCH_DIR:-/var/tmp/cloudraid-bench-recover}
rm -rf "$work"; mkdir -p "$work/src" "$work/mnt"
trap '"$bin" umount "$work/mnt" >/dev/null 2>&1 || true' EXIT
"$bin" init --config "$work/v.toml" --backend a="file://$work/a" --backend b="file://$work/b" \
  --backend c="file://$work/c" --state-dir "$work/state" --chunk-size 64KiB \
  --key-file "$work/v.key" >/dev/null
# Shards not fsynced: the setup is about the index, not the disk.
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
python3 - "$work/src" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "w") as f:
        f.write(f"file {i:06d} ".ljust(64, "x"))
PY
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t0=$(now); "$bin" put --config "$work/v.toml" "$work/src" / >/dev/null; t1=$(now)
echo "put of $files files: $(secs "$t0" "$t1") s"
meta_bytes=$(du -sb "$work/a/meta" | cut -f1)
index_bytes=$(du -sb "$work/state/index" | cut -f1)
echo "metadata on one backend: $meta_bytes bytes; local index: $index_bytes bytes"
rm -rf "$work/state"
t0=$(now); "$bin" recover --config "$work/v.toml"; t1=$(now)
echo "recover, all backends: $(secs "$t0" "$t1") s"
rm -rf "$work/state"; mv "$work/a" "$work/a.off"
t0=$(now); "$bin" recover --config "$work/v.toml"; t1=$(now)
echo "recover, backend a gone: $(secs "$t0" "$t1") s"
mv "$work/a.off" "$work/a"
"$bin" mount --config "$work/v.toml" "$work/mnt"
count=$(find "$work/mnt/src" -type f | wc -l)
"$bin" umount "$work/mnt" >/dev/null
echo "files visible after recovery: $count of $files"
[ "$count" = "$files" ] || { echo "files missing after recovery" >&2; exit 1; }

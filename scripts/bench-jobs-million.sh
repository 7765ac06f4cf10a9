#!/usr/bin/env bash
# Benchmark: memory and time of backup jobs (`cloudraid backup run`, not
# mounted) over a very large tree: DIRS folders of PER_DIR files each (defaults
# 1000 x 1000 = 1,000,000 files of 128 unique bytes, so every file is kept
# inline in the index and the figures are those of the walk and the index, not
# of shard writes). Then WIDE files in one folder, the walk's worst case (it
# holds one folder's listing on each side at a time).
#
# For each: the first run, a second run with nothing changed: wall time, peak
# RSS (GNU time's maximum resident set size).
#
# Usage: scripts/bench-jobs-million.sh [DIRS] [PER_DIR] [WIDE]  (defaults 1000 1000 100000)
# Every 30 s of a run its resident memory is printed (rss-sample lines).
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=${1:-1000}
per=${2:-1000}
wide=${3:-100000}
# CLOUDRAID_BIN: a binary already built (else the release build).
if [ -z "${CLOUDRAID_BIN:-}" ]; then
  cargo build --release --locked 2>&1 | tail -n 1
fi
bin=${CLOUDRAID_BIN:-$PWD/target/release/cloudraid}
base=${BENCH_DIR:-/var/tmp/cloudraid-bench-million}
rm -rf "$base"; mkdir -p "$base"
cd "$base"

python3 - "$dirs" "$per" "$wide" <<'EOF'
import os, sys
dirs, per, wide = map(int, sys.argv[1:])
def tree(root, dirs, per):
    for d in range(dirs):
        p = f"{root}/d{d:04}" if dirs > 1 else root
        os.makedirs(p, exist_ok=True)
        for i in range(per):
            with open(f"{p}/f{i:06}", "wb") as f:
                f.write(f"{root} {d} {i} ".encode().ljust(128, b"."))
tree("src/big", dirs, per)
tree("src/wide", 1, wide)
EOF
"$bin" init --config v.toml --key-file "$base/v.key" --kdf-memory 8MiB --kdf-passes 1 \
  --backend a=file://$base/a --backend b=file://$base/b --backend c=file://$base/c \
  --data-shards 2 --parity-shards 1 --state-dir "$base/state" >/dev/null 2>&1
cat >> v.toml <<EOF

[[job]]
name = "big"
sources = ["$base/src/big"]
destination = "/backups/big"
snapshot = false

[[job]]
name = "wide"
sources = ["$base/src/wide"]
destination = "/backups/wide"
snapshot = false
EOF

# run JOB LABEL: one run, timed, with its result and peak RSS.
run() {
  /usr/bin/time -f "%e %M" -o time.txt "$bin" backup run --config v.toml "$1" --json > out.json &
  local t=$! s=0
  while kill -0 $t 2>/dev/null; do
    sleep 1; s=$((s + 1))
    if [ $((s % 30)) = 0 ]; then
      pid=$(pgrep -f "backup run --config v.toml $1" | grep -v "^$t$" | tail -n 1 || true)
      [ -n "$pid" ] && echo "rss-sample $1 ${s}s $(($(awk '/VmRSS/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0) / 1024)) MiB"
    fi
  done
  wait $t
  read -r secs rss < time.txt
  up=$(python3 -c "import json; r = json.load(open('out.json'))['run']; print(r['uploaded_bytes'], r['new'], r['changed'], r['unchanged'], r['result'])")
  printf '%-44s %9.2f s  %s  peak RSS %d MiB\n' "$2" "$secs" "$up" $((rss / 1024))
}
echo "figures: seconds, then uploaded bytes, new, changed, unchanged, result"
run big "big: first run ($((dirs * per)) files in $dirs folders)"
run big "big: second run, nothing changed"
run wide "wide: first run ($wide files in one folder)"
run wide "wide: second run, nothing changed"
echo "index: $(du -sm state | cut -f1) MiB"

#!/usr/bin/env bash
# Benchmark: backup jobs (`cloudraid backup run`, not mounted) on a volume over
# three file:// backends on the local disk (k=2, m=1, encrypted with a key file).
#
#   - a tree of 10,000 files of 16 KiB (100 folders of 100, random bytes): the
#     first run, a second run with nothing changed, and a run after 1 % of the
#     files (100) were rewritten: wall time, bytes uploaded, peak RSS;
#   - a SQLite database of about 1 GiB (1,000,000 rows of 1 KiB random blobs):
#     the first run, then a run after 1,000 rows were updated: wall time and
#     bytes uploaded (how much of the dump deduplicated), peak RSS; then 1,000
#     rows updated in one range and 10,000 added; then 1,000 rows updated spread
#     over the whole table (one row every ~1.3 MB: most chunks change).
#
# Usage: scripts/bench-jobs.sh [FILES] [DB_ROWS]   (defaults 10000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-10000}
rows=${2:-1000000}
cargo build --release --locked 2>&1 | tail -n 1
bin=$PWD/target/release/cloudraid
base=${BENCH_DIR:-/var/tmp/cloudraid-bench-jobs}
rm -rf "$base"; mkdir -p "$base"
cd "$base"

python3 - "$files" <<'EOF'
import os, sys
n = int(sys.argv[1])
for i in range(n):
    d = f"src/tree/d{i // 100:03}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05}", "wb") as f:
        f.write(os.urandom(16384))
EOF
python3 - "$rows" <<'EOF'
import os, sqlite3, sys
n = int(sys.argv[1])
c = sqlite3.connect("app.db")
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
for start in range(0, n, 10000):
    c.executemany("INSERT INTO t VALUES (?, ?)", ((i, os.urandom(1024)) for i in range(start, min(n, start + 10000))))
    c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
"$bin" init --config v.toml --key-file "$base/v.key" --kdf-memory 8MiB --kdf-passes 1 \
  --backend a=file://$base/a --backend b=file://$base/b --backend c=file://$base/c \
  --data-shards 2 --parity-shards 1 --state-dir "$base/state" >/dev/null 2>&1
cat >> v.toml <<EOF

[[job]]
name = "tree"
sources = ["$base/src/tree"]
destination = "/backups/tree"

[[job]]
name = "db"
sources = []
destination = "/backups/db"

[[job.database]]
kind = "sqlite"
name = "app"
path = "$base/app.db"
EOF

# run JOB LABEL: one run, timed, with its uploaded bytes and peak RSS.
run() {
  /usr/bin/time -f "%e %M" -o time.txt "$bin" backup run --config v.toml "$1" --json > out.json
  read -r secs rss < time.txt
  up=$(python3 -c "import json; r = json.load(open('out.json'))['run']; print(r['uploaded_bytes'], r['new'], r['changed'], r['unchanged'], r['result'])")
  printf '%-36s %8.2f s  uploaded %s  peak RSS %d MiB\n' "$2" "$secs" "$up" $((rss / 1024))
}
echo "figures: seconds, then uploaded bytes, new, changed, unchanged, result"
run tree "tree: first run ($files files)"
run tree "tree: second run, nothing changed"
python3 - "$files" <<'EOF'
import os, sys
n = int(sys.argv[1])
for i in range(0, n, 100):
    with open(f"src/tree/d{i // 100:03}/f{i:05}", "wb") as f:
        f.write(os.urandom(16384))
EOF
run tree "tree: 1 % of the files changed"
echo "database: $(du -m app.db | cut -f1) MiB"
run db "db: first run"
python3 - <<'EOF'
import os, sqlite3
c = sqlite3.connect("app.db")
c.executemany("UPDATE t SET v = ? WHERE id = ?", ((os.urandom(1024), 500000 + i) for i in range(1000)))
c.executemany("INSERT INTO t VALUES (?, ?)", ((None, os.urandom(1024)) for i in range(10000)))
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
run db "db: 1,000 rows updated, 10,000 added"
python3 - <<'EOF'
import os, sqlite3
c = sqlite3.connect("app.db")
c.executemany("UPDATE t SET v = ? WHERE id = ?", ((os.urandom(1024), i * 997) for i in range(1000)))
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
EOF
run db "db: 1,000 rows updated, spread out"

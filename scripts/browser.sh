#!/usr/bin/env bash
# Headless Chromium, its chromedriver and Selenium, for the web dashboard's browser
# test (tests/dashboard.rs runs tests/browser/dashboard.py) and by hand.
#
#   scripts/browser.sh install   install what is missing: Debian's chromium and
#                                chromium-driver (apt-get, as root), a venv with selenium
#   scripts/browser.sh env       print the export line the test reads:
#                                CLOUDRAID_TEST_PYTHON=... CLOUDRAID_TEST_CHROMEDRIVER=...
#                                CLOUDRAID_TEST_CHROMIUM=...
#
# Nothing is downloaded at test time: the test hands Selenium the chromedriver and the
# browser binary, so Selenium Manager never looks for its own. The venv is kept between
# runs (CLOUDRAID_BROWSER_DIR, default ~/.cache/cloudraid-browser).
set -euo pipefail

root=${CLOUDRAID_BROWSER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudraid-browser}
SELENIUM_VERSION=4.*

die() { echo "browser: $*" >&2; exit 1; }

chromium_bin() {
  local c
  for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

driver_bin() { command -v chromedriver 2>/dev/null || { [ -x /usr/bin/chromedriver ] && echo /usr/bin/chromedriver; }; }

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get is missing: install $* by hand"
  [ "$(id -u)" = 0 ] || die "installing $* needs root (apt-get install $*)"
  echo "browser: installing $*" >&2
  (apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1)) \
    || die "apt-get install $* failed"
}

make_venv() {
  python3 -m venv "$root/venv" >/dev/null 2>&1 && return 0
  rm -rf "$root/venv"
  # Debian's python3 has venv without ensurepip until python3-venv is installed.
  apt_install python3-venv
  python3 -m venv "$root/venv" >/dev/null || die "python3 -m venv failed"
}

install() {
  local missing=()
  chromium_bin >/dev/null || missing+=(chromium)
  driver_bin >/dev/null || missing+=(chromium-driver)
  # Fonts, so that pages (and their screenshots) show text.
  [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  chromium_bin >/dev/null || die "chromium is still missing after apt-get"
  driver_bin >/dev/null || die "chromedriver is still missing after apt-get"
  if [ -x "$root/venv/bin/python" ] && "$root/venv/bin/python" -c 'import selenium' 2>/dev/null; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3
  echo "browser: installing selenium into $root/venv" >&2
  mkdir -p "$root"
  [ -x "$root/venv/bin/pip" ] || make_venv
  "$root/venv/bin/pip" install -q "selenium==$SELENIUM_VERSION" >/dev/null || die "pip install selenium failed"
}

case ${1:-} in
  install) install ;;
  env)
    chromium=$(chromium_bin) || die "chromium is missing: scripts/browser.sh install"
    driver=$(driver_bin) || die "chromedriver is missing: scripts/browser.sh install"
    [ -x "$root/venv/bin/python" ] && "$root/venv/bin/python" -c 'import selenium' 2>/dev/null \
      || die "selenium is missing: scripts/browser.sh install"
    printf "export CLOUDRAID_TEST_PYTHON=%q CLOUDRAID_TEST_CHROMEDRIVER=%q CLOUDRAID_TEST_CHROMIUM=%q\n" \
      "$root/venv/bin/python" "$driver" "$chromium"
    ;;
  *) die "usage: scripts/browser.sh install|env" ;;
esac

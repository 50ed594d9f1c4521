#!/usr/bin/env bash
# Headless Chromium for the demo's browser test (tests/test_demo.py), from Debian's own packages:
# `apt-get install -y chromium chromium-driver`. Idempotent: when /usr/bin/chromium already runs, it returns at
# once without touching apt. `make test` runs it first (`test: browser`); `make browser` runs it alone.
# The test drives this Chromium with Python playwright (the `test` extra of pyproject.toml) through
# executable_path=/usr/bin/chromium; `playwright install` (which downloads its own browsers) is never needed.
#
# Usage: tools/install_browser.sh [--check]     --check: only say whether it is there (exit 1 if not)
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PACKAGES=(chromium chromium-driver)

die() { echo "install_browser: error: $*" >&2; exit 1; }

works() {  # the binary is there and starts (a broken or half-installed package fails here)
    [ -x "$CHROMIUM" ] && timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1
}

if works; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "install_browser: $CHROMIUM is not installed (run tools/install_browser.sh or make browser)" >&2
    exit 1
fi

command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install Chromium yourself and set CHROMIUM=/path/to/it"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "installing ${PACKAGES[*]} needs root (run as root or install sudo)"
    SUDO=(sudo)
fi
echo "install_browser: installing ${PACKAGES[*]} (Debian packages) for the demo's browser test" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale (a fresh container has none): update once when the install cannot find them.
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}" >/tmp/install_browser.log 2>&1; then
    "${SUDO[@]}" apt-get update >>/tmp/install_browser.log 2>&1 || { tail -n 20 /tmp/install_browser.log >&2; die "apt-get update failed"; }
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>/tmp/install_browser.log 2>&1 \
        || { tail -n 20 /tmp/install_browser.log >&2; die "apt-get install ${PACKAGES[*]} failed (log: /tmp/install_browser.log)"; }
fi
works || die "$CHROMIUM does not start after the install (log: /tmp/install_browser.log)"
echo "install_browser: $("$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>/dev/null | head -n 1)" >&2

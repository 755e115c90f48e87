#!/usr/bin/env bash
# Sets everything up and runs the whole test suite.
# The dashboard's browser test needs Debian's chromium and chromium-driver: installed here
# with apt-get when they are missing and we run as root (as CI does); elsewhere that test
# skips itself, saying why (install them with: apt-get install chromium chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing chromium and chromium-driver for the browser test (log in .venv/apt.log)" >&2
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
          --no-install-recommends chromium chromium-driver; } >.venv/apt.log 2>&1; then
      echo "test: could not install chromium (see .venv/apt.log); the browser test will say so" >&2
    fi
  fi
fi
. .venv/bin/activate
exec python -m pytest -q -p no:cacheprovider "$@"

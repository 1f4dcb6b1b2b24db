#!/usr/bin/env bash
# Runs the test suite. Sets up .venv first when it is missing, so it works on a fresh clone, adds the dev
# extra (test tools) when any of it is missing, and installs Debian's chromium for the browser tests (the
# report and web-page tests drive it headless).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vaedx ] || bash scripts/setup.sh
bash scripts/install_dev.sh
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser tests"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export VAEDX_DATA_DIR=${VAEDX_DATA_DIR:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Runs the test suite. Sets up .venv first when it is missing, so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vaedx ] || bash scripts/setup.sh
export VAEDX_DATA_DIR=${VAEDX_DATA_DIR:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest -q "$@"

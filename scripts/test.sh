#!/usr/bin/env bash
# Runs the test suite in .venv (set it up first with scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export VAEDX_DATA_DIR=${VAEDX_DATA_DIR:-$(cd .. && pwd)/shared/data}
exec .venv/bin/python -m pytest -q "$@"

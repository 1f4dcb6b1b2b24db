#!/usr/bin/env bash
# Creates .venv and installs vaedx into it with what the product and `vaedx demo` use (the serve, dicom and
# brain extras); the test tools (the dev extra) are scripts/install_dev.sh's, which scripts/test.sh runs.
# torch 2.13.0 goes in first and alone: any other torch request on this kind of machine would pull
# a multi-GB CUDA build, and with 2.13.0 present the range in pyproject.toml installs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[serve,dicom,brain]"
.venv/bin/python -c "import torch, vaedx; print(f'vaedx {vaedx.__version__} ready (torch {torch.__version__})')"

#!/usr/bin/env bash
# Installs the oldest release of every dependency that pyproject.toml allows into .venv-min and runs a fast
# set of tests there, so each declared ">=" bound is one vaedx is known to work with (a bound that was
# never installed is a guess). torch stays at the machine's 2.13.0 build, as in scripts/setup.sh.
# Usage: bash scripts/test_minimum.sh [--install-only | --tests-only] [PYTEST ARGS]   (default: the fast subset
# below). .ci/run builds .venv-min with --install-only while the main suite runs, then runs --tests-only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=serve,export,dicom,brain,dev
VENV=.venv-min
PHASE=all
case "${1:-}" in
  --install-only) PHASE=install; shift ;;
  --tests-only) PHASE=tests; shift ;;
esac
if [ "$PHASE" = tests ]; then
  [ -f "$VENV/minimum-installed" ] || { echo "$VENV is not complete: run scripts/test_minimum.sh --install-only first" >&2; exit 1; }
else
rm -rf "$VENV"
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "torch==2.13.0" packaging
PINS="$VENV/minimum-pins.txt"
# the product's dependencies are pinned; the dev extra (test tools) takes what fits beside them
"$VENV/bin/python" scripts/minimum_versions.py "$PINS" serve export dicom brain >/dev/null
echo "torch==2.13.0" >>"$PINS"
# not quiet: when the minimums conflict, pip explains which requirement causes it
"$VENV/bin/python" -m pip install --disable-pip-version-check -c "$PINS" -e ".[$EXTRAS]" 2>&1 |
  grep -v -e "^WARNING: Location" -e "^Collecting" -e "^  Using" -e "━" -e "^Processing" -e "^  Downloading"
# every pin must be what got installed: a pin pip silently skipped would make the run test nothing old
"$VENV/bin/python" - "$PINS" <<'PYEOF'
import importlib.metadata as md, sys
bad = []
for line in open(sys.argv[1]):
    spec = line.split("#")[0].strip()
    if spec:
        name, want = spec.split("==")
        have = md.version(name)
        if have.split("+")[0] != want:
            bad.append(f"{name} {have} installed, {want} pinned")
sys.exit("; ".join(bad)) if bad else print("minimum versions installed:", sum(1 for _ in open(sys.argv[1])) - 1)
PYEOF
touch "$VENV/minimum-installed"
fi
[ "$PHASE" = install ] && exit 0
export VAEDX_DATA_DIR=${VAEDX_DATA_DIR:-$(cd .. && pwd)/shared/data}
if [ $# -eq 0 ]; then
  # One fast module or folder per dependency: readers (pillow, tifffile, pydicom, nibabel, pylibjpeg,
  # highdicom), data preparation (scipy, pyyaml, pydantic), checkpoints (safetensors), metrics and
  # classifiers (scikit-learn, threadpoolctl), CLI (typer, click, rich), service (fastapi, httpx,
  # python-multipart), export (onnx, onnxruntime, onnxscript), figures (matplotlib), MONAI networks.
  set -- tests/test_dependencies.py tests/io tests/data/test_prepare.py tests/data/test_index.py \
    tests/runs/test_checkpoint.py tests/metrics tests/diagnose/test_fit.py tests/cli/test_options.py \
    tests/cli/test_data.py tests/serve/test_app.py tests/export tests/report/test_figures.py \
    tests/models/test_vae.py tests/models/test_monai_varautoencoder.py tests/anomaly/test_output.py
  set -- -m "not slow" -p no:cacheprovider "$@"
fi
exec "$VENV/bin/python" -m pytest -q "$@"

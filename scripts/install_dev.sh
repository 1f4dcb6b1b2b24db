#!/usr/bin/env bash
# Installs the dev extra (test and lint tools: pytest, ruff, import-linter, nbclient, ...) into .venv when
# any of its packages is missing or too old. scripts/setup.sh installs only what the product needs, so a
# user's environment carries no test tools; scripts/test.sh and .ci/run call this before they need them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
missing=$(.venv/bin/python - <<'PYEOF'
import importlib.metadata as md
import tomllib

from packaging.requirements import Requirement

extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"]
for spec in extra:
    req = Requirement(spec)
    try:
        ok = req.specifier.contains(md.version(req.name), prereleases=True)
    except md.PackageNotFoundError:
        ok = False
    if not ok:
        print(req.name)
PYEOF
)
if [ -n "$missing" ]; then
  echo "installing the dev extra (missing: $(echo $missing))"
  # torch stays the build setup.sh installed: the constraint stops pip from ever replacing it
  .venv/bin/python -c "import torch; print(f'torch=={torch.__version__}')" >.venv/torch-constraint.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check -c .venv/torch-constraint.txt -e ".[dev]"
fi

"""Run every ```bash block of docs/*.md and of the README, so documented commands cannot rot.

Each page's blocks run in order in one fresh folder (a later block uses what an earlier one wrote), with
``.venv/bin`` first on PATH, ``VAEDX_DATA_DIR`` set and ``DICOM_DIR`` pointing at a small generated DICOM
study. ``../shared/data`` in the README resolves too: the folder's parent holds a ``shared/data`` link to
the data. A block preceded by ``<!-- not-tested: reason -->`` is skipped. Besides exit status 0, every
``-o/--out/--output PATH`` a command names must exist afterwards.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dicom_builders import write_ct_dicom

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"(<!--\s*not-tested:[^>]*-->\s*)?```bash\n(.*?)```", re.S)
OUT_FLAGS = ("-o", "--out", "--output")


def bash_blocks(page: Path) -> tuple[list[str], int]:
    """(blocks to run, number skipped by a not-tested comment)."""
    found = BLOCK.findall(page.read_text(encoding="utf-8"))
    return [code for skip, code in found if not skip], sum(1 for skip, _ in found if skip)


def claimed_outputs(code: str) -> list[str]:
    """Paths given to -o/--out/--output in a block (shell comments and continuation lines handled)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        out += [words[i + 1] for i, w in enumerate(words[:-1]) if w in OUT_FLAGS]
    return out


def make_dicom_study(root: Path, patients: int = 8, slices: int = 3) -> Path:
    """normal/<patient>/*.dcm and abnormal/<patient>/*.dcm: CT-like 48x48 heads, abnormal ones with a
    bright blob; every file carries planted patient identifiers (tests/helpers/dicom_builders.py)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    head = ((yy - 24) ** 2 + (xx - 24) ** 2 < 18**2) * 40.0
    for label in ("normal", "abnormal"):
        for p in range(patients):
            folder = root / label / f"patient{p:02d}"
            folder.mkdir(parents=True)
            for s in range(slices):
                hu = head + rng.normal(0, 3, head.shape)
                if label == "abnormal":
                    cy, cx = rng.integers(14, 34, 2)
                    hu += ((yy - cy) ** 2 + (xx - cx) ** 2 < 16) * 35.0
                raw = np.clip(hu + 1024, 0, 4095).astype(np.uint16)
                write_ct_dicom(folder / f"slice{s}.dcm", raw, slope=1.0, intercept=-1024.0)
    return root


@pytest.fixture(scope="module")
def env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("docs")
    (base / "shared").mkdir()
    (base / "shared" / "data").symlink_to(data_dir.resolve(), target_is_directory=True)
    dicom = make_dicom_study(base / "dicom_study")
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "VAEDX_DATA_DIR": str(data_dir.resolve()),
        "DICOM_DIR": str(dicom),
        "BASE": str(base),
    }


def test_every_page_has_runnable_blocks() -> None:
    names = {p.name for p in PAGES}
    for page in ("anomaly-brain-mri.md", "diagnosis-chest-xray.md", "own-dicom-folder.md"):
        assert page in names, page
        assert bash_blocks(ROOT / "docs" / page)[0], f"{page} has no tested bash block"


def test_claimed_outputs_parsing() -> None:
    code = "vaedx train --store s --out runs/a \\\n  --epochs 1   # writes runs/a\nvaedx x -o 'b c' # -o d\n"
    assert claimed_outputs(code) == ["runs/a", "b c"]


RUNNABLE = [p for p in PAGES if bash_blocks(p)[0]]


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_page_commands_run(page: Path, env: dict[str, str]) -> None:
    blocks, _ = bash_blocks(page)
    cwd = Path(env["BASE"]) / page.stem
    cwd.mkdir()
    for code in blocks:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        log = f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        assert proc.returncode == 0, f"{page.name} block failed:\n{code}\n{log}"
        for path in claimed_outputs(code):
            target = cwd / path
            assert target.exists(), f"{page.name}: {path} was not written by\n{code}"

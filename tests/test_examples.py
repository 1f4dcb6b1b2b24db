"""The example notebooks run, top to bottom, on the real data, and produce the figures they promise.

Executed with nbclient in a fresh folder (the notebook writes only below its working directory), on one
thread; the notebook is stored without outputs, so what a reader opens is what this test ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def executed(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("VAEDX_DATA_DIR", str(data_dir.resolve()))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    where = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=240, kernel_name="python3", resources=where).execute()
    return nb


def test_the_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_quickstart_runs_the_api_end_to_end_on_pneumoniamnist(executed, tmp_path: Path) -> None:
    """Every step of the API ran on the real store; the tiny models already beat chance on the test split."""
    summary = json.loads((tmp_path / "quickstart" / "summary.json").read_text())
    last = executed.cells[-1].outputs
    assert json.loads("".join(o["text"] for o in last if o.get("name") == "stdout")) == summary
    assert summary["store_images"] == 5856  # the official train + val + test splits of PneumoniaMNIST
    assert summary["images_scored"] == 8 and summary["latent_dim"] == 8
    assert summary["diagnosis_classes"] == ["normal", "pneumonia"]
    assert set(summary["diagnosis_predictions"]) <= {"normal", "pneumonia"}
    assert 0.6 < summary["anomaly_auroc"] <= 1 and 0.7 < summary["diagnosis_auc"] <= 1
    for written in ("vae/thresholds.json", "det_test/evaluation.json", "diagnosis/evaluation_test.json"):
        assert (tmp_path / "quickstart" / written).is_file(), written

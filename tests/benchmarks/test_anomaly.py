"""benchmarks/anomaly.py --as-typed: PneumoniaMNIST as a new user runs it (a --quick run on the real file).

Nothing here is timed; the checks are that each model was trained with the defaults (only its kind and the
label filter given), that detect chose each model's scorer on val, and that the paired table compares the
VAE with the AE and PCA on the same test images.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("_bench_anomaly", ROOT / "benchmarks" / "anomaly.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["_bench_anomaly"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.realdata
def test_as_typed_trains_with_defaults_and_pairs_the_vae_with_ae_and_pca(bench, data_dir, tmp_path, capsys):
    bench.main(
        ["--as-typed", "--quick", "--only", "pneumonia", "--out", str(tmp_path), "--data", str(data_dir)]
    )
    printed = capsys.readouterr().out
    from vaedx.runs.config import TrainConfig

    defaults = TrainConfig.model_fields
    for kind in ("vae", "ae", "pca"):
        cfg = json.loads((tmp_path / f"pneu_typed_{kind}" / "config.json").read_text())["train"]
        assert cfg["model"]["kind"] == kind and cfg["label_filter"] == ["normal"]
        assert cfg["patience"] == defaults["patience"].default and cfg["budget"] == defaults["budget"].default
        chosen = json.loads((tmp_path / f"det_pneu_typed_test_{kind}" / "detect.json").read_text())[
            "selection"
        ]
        assert chosen["split"] == "val" and chosen["metric"] == "image_auroc"
    assert "defaults: paired differences (by image)" in printed
    assert "| vae:" in printed and "| ae:" in printed and "| pca:" in printed

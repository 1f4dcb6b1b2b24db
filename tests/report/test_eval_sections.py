"""The report's evaluation tables: the per-volume table appears exactly when the evaluation has volumes."""

from __future__ import annotations

import json
from pathlib import Path

from vaedx.evaluate.anomaly import evaluate_anomaly, to_json
from vaedx.report.eval_sections import _volume_table
from vaedx.report.html import Section
from volume_fixtures import lgg_volume_detect_output


def _section(ev: dict) -> str:
    sec = Section("detection", "Detection")
    _volume_table(sec, "flair-model", json.loads(json.dumps(to_json(ev))))  # as read back from JSON
    return "".join(sec.blocks)


def test_volume_table_from_real_lgg_volumes(lgg_dir: Path, tmp_path: Path) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir)
    ev = evaluate_anomaly(pred, store, n_boot=50)
    html = _section(ev)
    dice = ev["scorers"]["flair"]["volume"]["dice_mean"]["point"]
    assert "per volume (patient), 3 volumes" in html and "optimistic" in html
    assert f"{dice:.3f}" in html  # the figure evaluate computed, not another
    assert "lesions are 3-D connected components" in html


def test_no_volume_table_without_volume_columns(lgg_dir: Path, tmp_path: Path) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir, volume_columns=False)
    html = _section(evaluate_anomaly(pred, store, n_boot=20))
    assert "<table>" not in html

"""The report's evaluation tables: the per-volume table appears exactly when the evaluation has volumes; a
three-class diagnosis (real Cheng tumour types) shows per-class figures and the confusion matrix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vaedx.evaluate.anomaly import evaluate_anomaly, to_json
from vaedx.report.eval_sections import _volume_table, diagnosis_section
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


def _diagnosis_html(run: Path, store: Path, fitted: Path, tmp_path: Path) -> tuple[str, dict, list[str]]:
    """The diagnosis section of a copy of ``fitted`` after `vaedx evaluate diagnosis` (50 resamples)."""
    from vaedx.api import evaluate
    from vaedx.report.collect import collect
    from vaedx.report.context import Context

    diag = tmp_path / "diagnosis"
    shutil.copytree(fitted, diag)
    evaluate(store=store, diagnosis=diag, n_boot=50)
    ctx = Context(collect(run, store=store, diagnosis_dir=diag), tmp_path / "figures")
    (tmp_path / "figures").mkdir()
    html = "".join(diagnosis_section(ctx).blocks)
    return html, json.loads((diag / "evaluation_test.json").read_text()), [p.name for p in ctx.written]


def test_three_class_diagnosis_shows_per_class_figures_and_the_matrix(
    cheng_fitted, cheng_pca, cheng_store, tmp_path
) -> None:
    html, ev, figures = _diagnosis_html(cheng_pca.path, cheng_store.root, cheng_fitted, tmp_path)
    cm, share = ev["report"]["confusion_matrix"], ev["report"]["confusion_matrix_normalised"]
    assert "confusion matrix (test): count (share of the true class)" in html
    for i in range(3):
        for j in range(3):
            assert f"<td>{cm[i][j]} ({share[i][j]:.2f})</td>" in html
    assert "per class on test" in html and f"{ev['per_class'][0]['auc'][0]:.3f}" in html
    assert "by image and optimistic" in html  # no patient ids in the Cheng set
    assert any(f.endswith("_confusion_matrix.png") for f in figures)
    assert any(f.endswith("_reliability_per_class.png") for f in figures)


def test_binary_diagnosis_section_has_no_per_class_block(fitted, vae, store, tmp_path) -> None:
    html, ev, figures = _diagnosis_html(vae.path, store.root, fitted, tmp_path)
    assert "per class" not in html and "share of the true class" not in html
    assert not any("per_class" in f for f in figures)
    assert any(f.endswith("_confusion_matrix.png") for f in figures) and "auc" in ev["ci"]

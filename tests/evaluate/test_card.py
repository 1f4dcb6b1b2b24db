"""`vaedx evaluate anomaly|diagnosis` put the test figures, with their CIs, into the evaluated model's
MODEL_CARD.md (and `vaedx detect --save-calibration` the thresholds), on a real PneumoniaMNIST run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from card_fixtures import RealRun
from vaedx.cli import main
from vaedx.evaluate.card import record_anomaly_evaluation
from vaedx.runs.model_card import CARD_FILE, EVALUATIONS_FILE, fmt, key_facts

pytestmark = pytest.mark.realdata


def _run(argv: list[str]) -> None:
    assert main(argv) == 0, f"vaedx {' '.join(argv)} failed"


def _section(card: str, heading: str) -> str:
    return card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_detect_and_evaluate_anomaly_fill_the_run_card(real_run: RealRun, tmp_path: Path) -> None:
    run, det = tmp_path / "run", tmp_path / "detect"
    shutil.copytree(real_run.run, run)
    _run(["detect", "-m", str(run), "-s", str(real_run.store), "-o", str(det), "--scorer", "residual",
          "--max-overlays", "0", "--save-calibration", "-q"])  # fmt: skip
    card = (run / CARD_FILE).read_text(encoding="utf-8")
    saved = json.loads((run / "thresholds.json").read_text())["scorers"]["residual"]["thresholds"]
    assert f"| residual | {fmt(saved['image_threshold'])} | 0.95 |" in _section(card, "Calibrated thresholds")
    assert "No test figures yet" in card

    _run(["evaluate", "anomaly", "--pred", str(det), "--store", str(real_run.store), "--n-boot", "20"])
    evaluation = json.loads((det / "evaluation.json").read_text())
    auroc = evaluation["scorers"]["residual"]["metrics"]["auroc"]
    assert auroc["low"] <= auroc["point"] <= auroc["high"]
    test = _section((run / CARD_FILE).read_text(encoding="utf-8"), "Test figures")
    assert f"| residual | {fmt(auroc)} |" in test  # the point with its 95% CI
    n_test, n_abnormal = len(real_run.labels["test"]), int(real_run.labels["test"].sum())
    assert f"{n_test} labelled images of the test split, {n_abnormal} abnormal" in test
    assert "bootstrap over images (20 resamples)" in test
    assert f"residual: image threshold {fmt(saved['image_threshold'])}" in test
    assert dict(key_facts(run))["test figures"] == f"test residual AUROC {fmt(auroc)}"

    # evaluating again replaces the record of that evaluation file, it does not add a second one
    _run(["evaluate", "anomaly", "--pred", str(det), "--store", str(real_run.store), "--n-boot", "20",
          "--overwrite"])  # fmt: skip
    entries = json.loads((run / EVALUATIONS_FILE).read_text())["entries"]
    assert list(entries) == [str((det / "evaluation.json").resolve())]


def test_an_evaluation_of_a_moved_run_updates_no_card(tmp_path: Path) -> None:
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "detect.json").write_text(json.dumps({"model": str(tmp_path / "gone" / "best")}))
    assert record_anomaly_evaluation(tmp_path / "det", tmp_path / "det" / "evaluation.json", {}) is None
    assert not (tmp_path / "gone").exists()


def test_evaluate_diagnosis_fills_the_diagnosis_card(real_run: RealRun, tmp_path: Path) -> None:
    diag = tmp_path / "diagnosis"
    _run(["diagnose", "fit", "-m", str(real_run.run), "-s", str(real_run.store), "-o", str(diag),
          "--classifiers", "logreg"])  # fmt: skip
    assert "No test figures yet" in (diag / CARD_FILE).read_text(encoding="utf-8")
    _run(["evaluate", "diagnosis", "--diagnosis", str(diag), "--store", str(real_run.store), "--n-boot", "20",
          "--device", "cpu"])  # fmt: skip
    evaluation = json.loads((diag / "evaluation_test.json").read_text())
    test = _section((diag / CARD_FILE).read_text(encoding="utf-8"), "Test figures")
    auc, ece = evaluation["ci"]["auc"], evaluation["ci"]["ece"]
    assert auc[1] <= auc[0] <= auc[2]
    assert f"| diagnosis | {fmt(auc)} |" in test and fmt(ece) in test
    assert f"{len(real_run.labels['test'])} images of the test split" in test
    assert f"{evaluation['report']['confusion_matrix']}" in test


def test_three_class_card_lists_each_class(cheng_fitted: Path, cheng_store, tmp_path: Path) -> None:
    """Real Cheng tumour types (split by image, no patient ids): a row per class and the row shares."""
    diag = tmp_path / "diagnosis"
    shutil.copytree(cheng_fitted, diag)
    args = ["evaluate", "diagnosis", "--diagnosis", str(diag), "--store", str(cheng_store.root)]
    _run([*args, "--n-boot", "20"])
    evaluation = json.loads((diag / "evaluation_test.json").read_text())
    test = _section((diag / CARD_FILE).read_text(encoding="utf-8"), "Test figures")
    for row in evaluation["per_class"]:
        assert f"| {row['class']} |" in test and fmt(row["auc"]) in test
    assert f"| diagnosis | {fmt(evaluation['ci']['macro_auc'])} |" in test
    assert "row-normalised (share of each true class)" in test

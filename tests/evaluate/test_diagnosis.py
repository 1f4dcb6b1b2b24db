"""Diagnosis figures with bootstrap CIs: three tumour types of the real Cheng set checked against
scikit-learn, and the binary output left as it was.

The Cheng set has no patient ids, so the store's splits and these intervals are by image (optimistic)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, recall_score, roc_auc_score

from vaedx.diagnose.fit import split_probabilities
from vaedx.diagnose.model import DiagnosisModel
from vaedx.evaluate.diagnosis import confusion_rows, evaluate_probabilities


@pytest.fixture(scope="module")
def cheng(cheng_fitted, cheng_pca, cheng_store):
    diag, y, proba, rows = split_probabilities(cheng_fitted, cheng_pca, cheng_store, "test")
    result = evaluate_probabilities(diag, y, proba, groups=cheng_store.patient_ids[rows], n_boot=200)
    return diag, np.searchsorted(diag.classes, y), proba, result


def test_macro_and_per_class_auc_match_sklearn(cheng) -> None:
    diag, index, proba, result = cheng
    assert diag.class_names == ["meningioma", "glioma", "pituitary"] and len(index) == 36
    macro = roc_auc_score(index, proba, multi_class="ovr", average="macro")
    assert result["report"]["macro_auc"] == pytest.approx(macro)
    assert result["ci"]["macro_auc"][0] == pytest.approx(macro)
    per_class = roc_auc_score(index, proba, multi_class="ovr", average=None)
    assert [r["auc"][0] for r in result["per_class"]] == pytest.approx(per_class)
    assert macro > 0.6  # PCA features of 32 px tumour slices do separate the types, if not well


def test_per_class_sensitivity_specificity_and_confusion_match_sklearn(cheng) -> None:
    _, index, proba, result = cheng
    pred = proba.argmax(axis=1)  # multi-class decisions are the argmax, no threshold
    report = result["report"]
    assert report["confusion_matrix"] == confusion_matrix(index, pred).tolist()
    np.testing.assert_allclose(
        report["confusion_matrix_normalised"], confusion_matrix(index, pred, normalize="true")
    )
    sens = recall_score(index, pred, average=None)
    spec = [recall_score(index != c, pred != c) for c in range(3)]
    assert [r["sensitivity"][0] for r in result["per_class"]] == pytest.approx(sens)
    assert [r["specificity"][0] for r in result["per_class"]] == pytest.approx(spec)
    assert [r["n"] for r in result["per_class"]] == [12, 12, 12]


def test_every_interval_holds_its_estimate_and_is_by_image(cheng) -> None:
    _, _, _, result = cheng
    assert result["bootstrap"]["unit"] == "image"  # no patient ids: one image, one unit
    assert set(result["ci"]) == {"macro_auc", "accuracy", "ece"}
    # ECE is left out: resampling duplicates images, which biases ECE upwards, so its percentile
    # interval can lie wholly above the estimate (it does on 92 Cheng test images at 64 px)
    cells = [result["ci"]["macro_auc"], result["ci"]["accuracy"]]
    cells += [r[k] for r in result["per_class"] for k in ("auc", "sensitivity", "specificity")]
    for point, low, high in cells:
        assert 0.0 <= low <= point <= high <= 1.0
        assert low < high  # 36 images: no interval collapses to a point
    assert all(0.0 <= r["ece"] <= 1.0 for r in result["per_class"]) and 0.0 <= result["ci"]["ece"][0] <= 1.0


def test_confusion_rows_carry_counts_and_row_shares(cheng) -> None:
    diag, _, _, result = cheng
    rows = confusion_rows(result["report"], diag.class_names)
    cm, share = result["report"]["confusion_matrix"], result["report"]["confusion_matrix_normalised"]
    assert [r["true class"] for r in rows] == diag.class_names
    assert rows[1]["pituitary"] == f"{cm[1][2]} ({share[1][2]:.2f})"


def test_binary_output_is_unchanged(fitted, vae, store) -> None:
    diag, y, proba, _ = split_probabilities(fitted, vae, store, "test")
    result = evaluate_probabilities(diag, y, proba, n_boot=50)
    assert set(result) == {"report", "ci", "bootstrap", "table"}  # no per-class block for two classes
    assert set(result["ci"]) == {"auc", "accuracy", "sensitivity", "specificity", "f1", "ece"}
    assert "confusion_matrix_normalised" not in result["report"]
    yb = (y == diag.classes[1]).astype(int)
    pred = (proba[:, 1] > diag.threshold).astype(int)  # binary keeps its validation (Youden) threshold
    assert result["report"]["confusion_matrix"] == confusion_matrix(yb, pred).tolist()
    assert isinstance(DiagnosisModel.load(fitted).threshold, float)

"""Paired comparison of two diagnosis folders: each side's values are the ones `evaluate diagnosis` reports,
the difference is theirs, identical models differ by exactly zero, patients are resampled when ids repeat,
and two sides that did not score the same images or classes are refused in one line naming the folder."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaedx.diagnose.fit import evaluation_report
from vaedx.errors import InputError
from vaedx.evaluate.compare_diagnosis import (
    compare_diagnoses,
    compare_sides,
    comparison_rows,
    notes,
    score_side,
    short_names,
    to_json,
)
from vaedx.metrics.bootstrap import bootstrap_paired_fn
from vaedx.metrics.measures import auroc


@pytest.fixture(scope="module")
def binary(fitted, fitted_knn, store):
    return score_side(fitted, store.root), score_side(fitted_knn, store.root)


def test_binary_values_are_each_models_report_and_the_difference_is_theirs(binary) -> None:
    a, b = binary
    result = compare_sides(a, b, n_boot=200)
    assert (result["n_images"], result["unit"], result["n_units"], result["split"]) == (
        24,
        "image",
        24,
        "test",
    )
    assert set(result["differences"]) == {"auc", "accuracy"} and result["undefined"] == {}
    for side, key in ((a, "a"), (b, "b")):
        report = evaluation_report(side.diag, side.y, side.proba)  # what `evaluate diagnosis` prints
        assert result["values"][key] == {"auc": report["auc"], "accuracy": report["accuracy"]}
        yb = (side.y == side.diag.classes[1]).astype(int)
        own = float(np.mean((side.proba[:, 1] > side.diag.threshold) == yb))  # each at its own threshold
        assert result["values"][key]["accuracy"] == pytest.approx(own)
    assert result["thresholds"] == {"a": a.diag.threshold, "b": b.diag.threshold}
    assert a.diag.threshold != b.diag.threshold  # so the test tells the two thresholds apart
    for name, d in result["differences"].items():
        assert d.point == pytest.approx(result["values"]["a"][name] - result["values"]["b"][name])
        assert d.low <= d.point <= d.high and d.n_boot == 200 and 0.0 <= d.p_not_better <= 1.0
    assert result["values"]["a"]["auc"] > 0.9  # blob vs noise: the encoder must really have been used


def test_accuracy_is_taken_at_each_models_own_threshold(binary) -> None:
    """Same probabilities, B's threshold moved so that some decisions flip: AUC differs by exactly 0,
    accuracy by what the two thresholds give."""
    a, _ = binary
    p = a.proba[:, 1]
    yb = (a.y == a.diag.classes[1]).astype(int)
    thr = float(np.sort(p)[-4])  # the 3 highest stay positive, every other image is now negative
    b = replace(a, diag=replace(a.diag, threshold=thr))
    result = compare_sides(a, b, n_boot=100)
    assert result["thresholds"] == {"a": a.diag.threshold, "b": thr}
    auc = result["differences"]["auc"]
    assert (auc.point, auc.low, auc.high) == (0.0, 0.0, 0.0)
    acc_a, acc_b = np.mean((p > a.diag.threshold) == yb), np.mean((p > thr) == yb)
    assert acc_a - acc_b > 0.2  # 12 of the 24 are positive: most of them are now missed
    assert result["differences"]["accuracy"].point == pytest.approx(acc_a - acc_b)
    assert result["differences"]["accuracy"].low > 0 and result["differences"]["accuracy"].p_not_better < 0.05


def test_the_same_model_twice_differs_by_exactly_zero(fitted, store) -> None:
    result = compare_diagnoses(fitted, fitted, store.root, n_boot=100)
    for d in result["differences"].values():
        assert (d.point, d.low, d.high, d.p_not_better) == (0.0, 0.0, 0.0, 1.0)
    doc = to_json(result)
    assert doc["differences"]["auc"]["point"] == 0.0 and doc["values"]["a"] == doc["values"]["b"]


def test_repeated_patient_ids_resample_patients(binary) -> None:
    a, b = binary
    ids = np.repeat(np.arange(8), 3)  # 24 rows, 8 "patients" of 3 rows
    result = compare_sides(replace(a, patient_ids=ids), replace(b, patient_ids=ids), n_boot=150, seed=2)
    assert (result["unit"], result["n_units"]) == ("patient", 8)
    yb = (a.y == a.diag.classes[1]).astype(np.int8)
    direct = bootstrap_paired_fn(auroc, yb, a.proba[:, 1], b.proba[:, 1], groups=ids, n_boot=150, seed=2)
    assert result["differences"]["auc"] == direct
    assert notes(result) == [
        "only 8 patients to resample: the intervals and p are coarse and say little beyond these cases"
    ]
    assert notes(compare_sides(a, b, n_boot=10)) == []  # 24 images


def test_three_tumour_types_compare_macro_auc_and_accuracy(
    cheng_fitted, cheng_fitted_knn, cheng_store
) -> None:
    a, b = score_side(cheng_fitted, cheng_store.root), score_side(cheng_fitted_knn, cheng_store.root)
    result = compare_sides(a, b, n_boot=100)
    assert set(result["differences"]) == {"macro_auc", "accuracy"} and result["thresholds"] is None
    assert result["classes"] == ["meningioma", "glioma", "pituitary"] and result["n_images"] == 36
    index = np.searchsorted(a.diag.classes, a.y)
    for side, key in ((a, "a"), (b, "b")):
        macro = roc_auc_score(index, side.proba, multi_class="ovr", average="macro")
        assert result["values"][key]["macro_auc"] == pytest.approx(macro)
        assert result["values"][key]["accuracy"] == pytest.approx(np.mean(side.proba.argmax(axis=1) == index))
    d = result["differences"]["macro_auc"]
    assert d.point == pytest.approx(result["values"]["a"]["macro_auc"] - result["values"]["b"]["macro_auc"])
    assert d.low <= d.point <= d.high and d.low < d.high
    (row,) = comparison_rows([result])
    assert row["A"] == "diagnosis" and row["B"] == "diagnosis_knn" and row["Δ macro auc"] == str(d)


def test_sides_that_scored_other_images_or_classes_are_refused(binary, cheng_fitted, cheng_store) -> None:
    a, b = binary
    cases = [
        (replace(b, split="val"), "split 'val'"),
        (replace(b, rows=b.rows[::-1].copy()), "other images or labels"),
        (replace(b, y=1 - b.y), "other images or labels"),
        (replace(b, diag=score_side(cheng_fitted, cheng_store.root).diag), "predicts classes"),
    ]
    for other, why in cases:
        with pytest.raises(InputError, match=why) as e:
            compare_sides(a, other, n_boot=10)
        assert e.value.path == str(b.folder) and "\n" not in str(e.value)


def test_short_names_keep_folders_apart() -> None:
    assert short_names(["/r/pneu/ft_diag", "/r/pneu/cnn_diag"]) == ["ft_diag", "cnn_diag"]
    assert short_names(["/r/a/diagnosis", "/r/b/diagnosis"]) == ["a/diagnosis", "b/diagnosis"]
    assert short_names(["/r/a/diagnosis", "/r/a/diagnosis"]) == ["diagnosis", "diagnosis"]

"""Diagnosis metrics with bootstrap confidence intervals.

Why a separate step from ``binary_report``: a single test split of a few hundred images gives point
estimates whose uncertainty is as large as most differences between methods, so every reported figure
carries a 95 % CI, resampled by patient when patient ids repeat (slices of one patient are not independent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vaedx.diagnose.fit import evaluation_report
from vaedx.diagnose.model import DiagnosisModel
from vaedx.errors import VaedxError
from vaedx.metrics.bootstrap import bootstrap_ci
from vaedx.metrics.measures import auroc, binary_report, expected_calibration_error

_BINARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")


def _binary_metric(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float | None]:
    def fn(y: np.ndarray, p: np.ndarray) -> float | None:
        if name == "ece":
            return expected_calibration_error(y, p)
        return binary_report(y, p, threshold)[name]

    return fn


def _macro_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC, None when one class's AUC is undefined (as in ``multiclass_report``)."""
    aucs = [auroc((y == c).astype(np.int8), p[:, c]) for c in range(p.shape[1])]
    return None if None in aucs else float(np.mean(aucs))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p.argmax(axis=1) == y))


def _top_label_ece(y: np.ndarray, p: np.ndarray) -> float:
    return expected_calibration_error(y, p)


def _recall(y: np.ndarray, pred: np.ndarray) -> float | None:
    """Share of the cases with y = 1 that were predicted 1; the per-class sensitivity when y marks one
    class and pred its argmax decisions, the specificity when both are inverted."""
    pos = y == 1
    return float(pred[pos].mean()) if pos.any() else None


def _specificity(y: np.ndarray, pred: np.ndarray) -> float | None:
    return _recall(1 - y, 1 - pred)


_MULTICLASS_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "macro_auc": _macro_auc,
    "accuracy": _accuracy,
    "ece": _top_label_ece,
}


def evaluate_probabilities(
    diag: DiagnosisModel,
    y: np.ndarray,
    proba: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Point report plus a table row of ``metric: (point, low, high)`` for the headline metrics;
    ``progress(done, total)`` is called after each metric's bootstrap."""
    report = evaluation_report(diag, y, proba)
    if groups is not None and len(np.unique(groups)) == len(groups):
        groups = None  # one row per patient: plain bootstrap is the same thing, and faster
    row: dict[str, Any] = {"n": int(len(y))}
    cis: dict[str, Any] = {}
    class_rows: list[dict[str, Any]] | None = None
    if diag.binary:
        yb = (y == diag.classes[1]).astype(np.int8)
        thr = diag.threshold if diag.threshold is not None else 0.5
        names = (*_BINARY_METRICS, "ece")
        for i, name in enumerate(names, 1):
            cis[name] = _ci(_binary_metric(name, thr), yb, proba[:, 1], groups, n_boot, seed)
            if progress is not None:
                progress(i, len(names))
    else:
        index = np.searchsorted(diag.classes, y)
        total = len(_MULTICLASS_METRICS) + 3 * len(diag.classes)
        for i, (name, fn) in enumerate(_MULTICLASS_METRICS.items(), 1):
            cis[name] = _ci(fn, index, proba, groups, n_boot, seed)
            if progress is not None:
                progress(i, total)
        done = len(_MULTICLASS_METRICS)

        def step() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        class_rows = _class_rows(diag.class_names, index, proba, report, groups, n_boot, seed, step)
    for name, ci in cis.items():
        row[name] = ci
    out = {
        "report": report,
        "ci": {k: (list(v) if v is not None else None) for k, v in cis.items()},
        "bootstrap": {"n_boot": n_boot, "unit": "patient" if groups is not None else "image", "seed": seed},
        "table": [row],
    }
    if class_rows is not None:
        out["per_class"] = class_rows
    return out


def _class_rows(
    names: list[str],
    index: np.ndarray,
    proba: np.ndarray,
    report: dict[str, Any],
    groups: np.ndarray | None,
    n_boot: int,
    seed: int,
    step: Callable[[], None],
) -> list[dict[str, Any]]:
    """One row per class: n, one-vs-rest AUC, sensitivity and specificity of the argmax decision (each
    with its bootstrap CI) and the classwise ECE of P(class).

    Why per class: a macro AUC of 0.9 can hide a class the model nearly never gets right (meningioma
    against glioma is the usual one); the row shows which class carries the errors.
    """
    pred = proba.argmax(axis=1)
    rows = []
    for c, name in enumerate(names):
        yc, pc = (index == c).astype(np.int8), (pred == c).astype(np.int8)
        row: dict[str, Any] = {"class": name, "n": int(yc.sum())}
        for metric, fn, a, b in (
            ("auc", auroc, yc, proba[:, c]),  # auroc has a batched bootstrap path
            ("sensitivity", _recall, yc, pc),
            ("specificity", _specificity, yc, pc),
        ):
            ci = _ci(fn, a, b, groups, n_boot, seed)
            row[metric] = list(ci) if ci is not None else None
            step()
        row["ece"] = report["per_class"][c]["ece"]
        rows.append(row)
    return rows


def confusion_rows(report: dict[str, Any], class_names: list[str]) -> list[dict[str, Any]]:
    """The confusion matrix as table rows: one per true class, a cell per predicted class holding the
    count and, in brackets, the share of that true class (the row-normalised matrix)."""
    cm = report.get("confusion_matrix")
    if cm is None:
        return []
    shares = report.get("confusion_matrix_normalised") or [None] * len(cm)
    rows = []
    for name, counts, share in zip(class_names, cm, shares, strict=True):
        row: dict[str, Any] = {"true class": name}
        for j, other in enumerate(class_names):
            row[other] = f"{counts[j]}" + (f" ({share[j]:.2f})" if share is not None else "")
        rows.append(row)
    return rows


def _ci(fn, y, p, groups, n_boot, seed) -> tuple[float, float, float] | None:
    try:
        res = bootstrap_ci(fn, y, p, groups=groups, n_boot=n_boot, seed=seed)
    except (VaedxError, ValueError):  # undefined on this split (e.g. one class): reported as n/a
        return None
    return (float(res.point), float(res.low), float(res.high))

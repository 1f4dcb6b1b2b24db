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
from vaedx.metrics.measures import binary_report, expected_calibration_error, multiclass_report

_BINARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")


def _binary_metric(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float | None]:
    def fn(y: np.ndarray, p: np.ndarray) -> float | None:
        if name == "ece":
            return expected_calibration_error(y, p)
        return binary_report(y, p, threshold)[name]

    return fn


def _multiclass_metric(name: str, names: list[str]) -> Callable[[np.ndarray, np.ndarray], float | None]:
    def fn(y: np.ndarray, p: np.ndarray) -> float | None:
        return multiclass_report(y, p, names)[name]

    return fn


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
        for i, name in enumerate(("macro_auc", "accuracy"), 1):
            cis[name] = _ci(_multiclass_metric(name, diag.class_names), index, proba, groups, n_boot, seed)
            if progress is not None:
                progress(i, 2)
    for name, ci in cis.items():
        row[name] = ci
    return {
        "report": report,
        "ci": {k: (list(v) if v is not None else None) for k, v in cis.items()},
        "bootstrap": {"n_boot": n_boot, "unit": "patient" if groups is not None else "image", "seed": seed},
        "table": [row],
    }


def _ci(fn, y, p, groups, n_boot, seed) -> tuple[float, float, float] | None:
    try:
        res = bootstrap_ci(fn, y, p, groups=groups, n_boot=n_boot, seed=seed)
    except (VaedxError, ValueError):  # undefined on this split (e.g. one class): reported as n/a
        return None
    return (float(res.point), float(res.low), float(res.high))

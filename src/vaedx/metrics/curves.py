"""ROC and precision-recall curves with pointwise bootstrap bands on a common grid.

Why bands and not just the curve: on a test split of a few hundred images two scorers' curves often cross
inside each other's uncertainty. Each resample (of images, or of whole patients when patient ids repeat,
drawn exactly as :mod:`vaedx.metrics.bootstrap` draws them) gives one curve; read on a common FPR (resp.
recall) grid, the 2.5-97.5 % percentiles at each grid point make the band. Curves come from
``sklearn.metrics.roc_curve`` / ``precision_recall_curve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from vaedx.metrics.bootstrap import _count_chunks

GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class CurveBand:
    """The full-data curve (x, y), the band (low, high) on ``grid``, and the area under the full curve."""

    x: np.ndarray
    y: np.ndarray
    grid: np.ndarray
    low: np.ndarray
    high: np.ndarray
    area: float
    n_boot: int


def resample_indices(n: int, groups: np.ndarray | None, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of each bootstrap resample (whole groups drawn with replacement when given)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    for counts in _count_chunks(n, groups, n_boot, rng):
        for c in counts:
            yield np.repeat(rows, c)


def tpr_on_grid(y: np.ndarray, s: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Best TPR reachable at FPR <= each grid value (the ROC step function read on the grid)."""
    fpr, tpr, _ = roc_curve(y, s)
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def precision_on_grid(y: np.ndarray, s: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Interpolated precision (best precision at recall >= each grid value)."""
    precision, recall, _ = precision_recall_curve(y, s)
    rec, prec = recall[::-1], precision[::-1]  # recall ascending
    envelope = np.maximum.accumulate(prec[::-1])[::-1]
    idx = np.minimum(np.searchsorted(rec, grid, side="left"), len(rec) - 1)
    return envelope[idx]


def _band(
    kind: str, y: np.ndarray, s: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    on_grid = tpr_on_grid if kind == "roc" else precision_on_grid
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):  # checked once, above
        curves = [
            on_grid(y[i], s[i])
            for i in resample_indices(len(y), groups, n_boot, seed)
            if 0 < y[i].sum() < len(i)
        ]
    if not curves:
        return np.full_like(GRID, np.nan), np.full_like(GRID, np.nan)
    low, high = np.quantile(np.stack(curves), [0.025, 0.975], axis=0)
    return low, high


def roc_band(
    y: np.ndarray, s: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0
) -> CurveBand:
    """ROC curve (FPR, TPR), its AUROC and the bootstrap band of TPR on the FPR grid."""
    fpr, tpr, _ = roc_curve(y, s)
    low, high = _band("roc", y, s, groups, n_boot, seed)
    return CurveBand(fpr, tpr, GRID, low, high, float(roc_auc_score(y, s)), n_boot)


def pr_band(
    y: np.ndarray, s: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0
) -> CurveBand:
    """PR curve (recall, precision), its average precision and the band of precision on the recall grid."""
    precision, recall, _ = precision_recall_curve(y, s)
    low, high = _band("pr", y, s, groups, n_boot, seed)
    return CurveBand(recall, precision, GRID, low, high, float(average_precision_score(y, s)), n_boot)

"""Percentile bootstrap confidence intervals, optionally resampling patients instead of rows.

Slices from one patient are correlated; resampling rows as if independent gives intervals that are too
narrow. With ``groups`` (patient ids) whole patients are drawn with replacement and bring all their rows.

Each resample is represented by how many times every row is drawn (a (B, n) count matrix). For AUROC and
average precision the metric is computed from those counts for all resamples at once (weighted rank sums),
which makes 1000 resamples take milliseconds; any other metric is called once per resample on the expanded
rows, so it must not depend on row order (true of every metric in :mod:`vaedx.evaluate.metrics`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import UndefinedMetricWarning

from vaedx.errors import ConfigError, InputError
from vaedx.evaluate import metrics

_CHUNK_CELLS = 4_000_000  # resample rows x data rows held in memory at once


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate and percentile interval; unpacks as ``point, low, high``.

    ``n_skipped`` resamples were dropped because the metric was undefined on them (e.g. one class only);
    the interval is then conditional on the metric being defined, so a large share means it is unreliable.
    """

    point: float
    low: float
    high: float
    n_boot: int
    n_skipped: int
    alpha: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.point, self.low, self.high))

    def __str__(self) -> str:
        return f"{self.point:.3f} [{self.low:.2f}, {self.high:.2f}]"


def _weighted_groups(counts: np.ndarray, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-resample weights of positives and negatives at each distinct score, ascending."""
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    w = counts[:, order].astype(np.float64)
    pos = np.add.reduceat(w * y_sorted, starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - y_sorted), starts, axis=1)
    return pos, neg


def _batched_auroc(counts: np.ndarray, y: ArrayLike, s: ArrayLike) -> np.ndarray:
    """Mann-Whitney AUROC with ties counted 1/2, for every resample; NaN where one class is missing."""
    pos, neg = _weighted_groups(counts, *metrics.as_pair(y, s))
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


def _batched_auprc(counts: np.ndarray, y: ArrayLike, s: ArrayLike) -> np.ndarray:
    """Average precision as sklearn defines it (sum of ΔRecall·Precision over distinct scores)."""
    pos, neg = _weighted_groups(counts, *metrics.as_pair(y, s))
    pos, neg = pos[:, ::-1], neg[:, ::-1]  # descending scores
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        return (pos * precision).sum(axis=1) / pos.sum(axis=1)


_BATCHED: dict[Callable[..., Any], Callable[..., np.ndarray]] = {
    metrics.auroc: _batched_auroc,
    metrics.auprc: _batched_auprc,
}


def _as_value(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"metric_fn must return a number or None, got {type(v).__name__}") from e
    return f if np.isfinite(f) else None


def _count_chunks(
    n: int, groups: ArrayLike | None, n_boot: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Yield (chunk, n) row draw counts; with groups, whole groups are drawn and expanded to their rows."""
    if groups is None:
        codes, n_units = None, n
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise InputError(f"groups must have one entry per row ({n}), got shape {g.shape}")
        _, codes = np.unique(g, return_inverse=True)
        n_units = int(codes.max()) + 1
    chunk = max(1, min(n_boot, _CHUNK_CELLS // max(n, n_units)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        offsets = (np.arange(b) * n_units)[:, None]
        unit_counts = np.bincount((draws + offsets).ravel(), minlength=b * n_units).reshape(b, n_units)
        yield unit_counts if codes is None else unit_counts[:, codes]


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI of ``metric_fn(*arrays)``; rows are the first axis of every array.

    A resample is skipped (and counted in ``n_skipped``) when the metric returns None or a non-finite
    value, or raises ValueError/InputError (sklearn's one-class NaN/ValueError included; its
    UndefinedMetricWarning is silenced for resamples, whose skips are counted instead). Raises InputError
    when the metric is undefined on the full data or on every resample. Same seed, same interval.
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if not arrays:
        raise ConfigError("bootstrap_ci needs at least one array")
    data = [np.asarray(a) for a in arrays]
    n = len(data[0]) if data[0].ndim else 0
    if n == 0 or any(a.ndim == 0 or len(a) != n for a in data):
        raise InputError(f"arrays must be non-empty with equal length, got {[a.shape for a in data]}")
    point = _as_value(metric_fn(*data))
    if point is None:
        raise InputError("metric is undefined on the full data, so it has no confidence interval")

    rng = np.random.default_rng(seed)
    try:
        batched = _BATCHED.get(metric_fn) if len(data) == 2 else None
    except TypeError:  # unhashable callable object: no fast path
        batched = None
    values: list[np.ndarray] = []
    for counts in _count_chunks(n, groups, n_boot, rng):
        if batched is not None:
            values.append(batched(counts, *data))
            continue
        rows = np.arange(n)
        out = np.full(len(counts), np.nan)
        for b, c in enumerate(counts):
            idx = np.repeat(rows, c)
            try:
                with warnings.catch_warnings():  # undefined resamples are counted in n_skipped instead
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    v = _as_value(metric_fn(*(a[idx] for a in data)))
            except (ValueError, InputError):
                v = None
            out[b] = np.nan if v is None else v
        values.append(out)
    all_values = np.concatenate(values)
    ok = all_values[np.isfinite(all_values)]
    if ok.size == 0:
        raise InputError(f"metric is undefined on all {n_boot} bootstrap resamples")
    low, high = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(point, float(low), float(high), n_boot, n_boot - int(ok.size), alpha)

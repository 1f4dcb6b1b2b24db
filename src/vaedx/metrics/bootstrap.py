"""Percentile bootstrap confidence intervals, optionally resampling patients instead of rows.

Slices from one patient are correlated; resampling rows as if independent gives intervals that are too
narrow. With ``groups`` (patient ids) whole patients are drawn with replacement and bring all their rows.

Each resample is represented by how many times every row is drawn (a (B, n) count matrix). For AUROC and
average precision the metric is computed from those counts for all resamples at once (weighted rank sums),
which makes 1000 resamples take milliseconds; any other metric is called once per resample on the expanded
rows, so it must not depend on row order (true of every metric in :mod:`vaedx.metrics.measures`).
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
from vaedx.metrics import measures as metrics

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
    return _auroc_from_counts(*_weighted_groups(counts, *metrics.as_pair(y, s)))


def _auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC per row from (B, K) positive/negative weights at K ascending distinct scores."""
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


def _batched_auprc(counts: np.ndarray, y: ArrayLike, s: ArrayLike) -> np.ndarray:
    """Average precision as sklearn defines it (sum of ΔRecall·Precision over distinct scores)."""
    return _auprc_from_counts(*_weighted_groups(counts, *metrics.as_pair(y, s)))


def _auprc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision per row from (B, K) weights at K ascending distinct scores."""
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
    _check_options(n_boot, alpha)
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
    values = [_resampled(metric_fn, data, counts) for counts in _count_chunks(n, groups, n_boot, rng)]
    return _interval(point, np.concatenate(values), n_boot, alpha)


def _resampled(metric_fn: Callable[..., Any], data: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """``metric_fn`` on every resample of a (b, n) count matrix; NaN where it is undefined.

    AUROC/AUPRC of two arrays take the batched path (all resamples at once); any other metric is called on
    each resample's expanded rows, with sklearn's UndefinedMetricWarning silenced, since undefined
    resamples are counted in ``n_skipped`` instead.
    """
    try:
        batched = _BATCHED.get(metric_fn) if len(data) == 2 else None
    except TypeError:  # unhashable callable object: no fast path
        batched = None
    if batched is not None:
        return batched(counts, *data)
    rows = np.arange(len(data[0]))
    out = np.full(len(counts), np.nan)
    for b, c in enumerate(counts):
        idx = np.repeat(rows, c)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                v = _as_value(metric_fn(*(a[idx] for a in data)))
        except (ValueError, InputError):
            v = None
        out[b] = np.nan if v is None else v
    return out


def _interval(point: float, all_values: np.ndarray, n_boot: int, alpha: float) -> BootstrapCI:
    ok = all_values[np.isfinite(all_values)]
    if ok.size == 0:
        raise InputError(f"metric is undefined on all {n_boot} bootstrap resamples")
    low, high = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(point, float(low), float(high), n_boot, n_boot - int(ok.size), alpha)


def _check_options(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")


PIXEL_METRICS = {
    "auroc": (metrics.pixel_auroc, _auroc_from_counts),
    "auprc": (metrics.pixel_auprc, _auprc_from_counts),
}
_HIST_CELLS = 16_000_000  # images x score bins held per class


def _pixel_histograms(
    maps: ArrayLike, masks: ArrayLike, valid: ArrayLike | None, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) counts of lesion / non-lesion pixels per image in K ascending score bins.

    The bins are the distinct scores when there are at most ``n_bins`` of them (then resampled metrics
    are exact), else quantile bins of all counted pixels, so equal scores always share a bin.
    """
    m = metrics._squeeze_channel(np.asarray(maps))
    scores, gt = metrics._pixels(m, masks, valid)
    image = np.broadcast_to(np.arange(len(m)).reshape(-1, *([1] * (m.ndim - 1))), m.shape)
    image = image[metrics.as_binary(valid, "valid")] if valid is not None else image.ravel()
    n_bins = max(2, min(n_bins, _HIST_CELLS // len(m)))
    distinct = np.unique(scores)
    if distinct.size <= n_bins:
        bins, k = np.searchsorted(distinct, scores), distinct.size
    else:
        edges = np.unique(np.quantile(scores, np.linspace(0, 1, n_bins + 1)[1:-1]))
        bins, k = np.searchsorted(edges, scores, side="right"), edges.size + 1
    flat = image.astype(np.int64) * k + bins
    pos = np.bincount(flat, weights=gt.astype(np.float64), minlength=len(m) * k).reshape(len(m), k)
    tot = np.bincount(flat, minlength=len(m) * k).reshape(len(m), k)
    return pos, tot - pos


def bootstrap_pixel_ci(
    metric: str,
    maps: ArrayLike,
    masks: ArrayLike,
    valid: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_bins: int = 4096,
) -> BootstrapCI:
    """Bootstrap CI of pixel AUROC or AUPRC (``metric`` "auroc"/"auprc") resampling whole images.

    Pixels of one image (and slices of one patient, with ``groups`` = one id per image) are strongly
    correlated, so resampling pixels would give absurdly narrow intervals. The point estimate is the exact
    sklearn value of :func:`vaedx.metrics.measures.pixel_auroc` / ``pixel_auprc``; resamples are computed
    from per-image score histograms (exact when the maps hold at most ``n_bins`` distinct values, else on
    ``n_bins`` quantile bins), so 1000 resamples of millions of pixels cost one matrix product.
    Resamples without lesion pixels (or, for AUROC, without normal pixels) are skipped and counted.
    """
    _check_options(n_boot, alpha)
    if metric not in PIXEL_METRICS:
        raise ConfigError(f"metric must be one of {', '.join(PIXEL_METRICS)}, got {metric!r}")
    exact, from_counts = PIXEL_METRICS[metric]
    point = exact(maps, masks, valid)
    if point is None:
        raise InputError(f"pixel {metric} is undefined on the full data, so it has no confidence interval")
    pos, neg = _pixel_histograms(maps, masks, valid, n_bins)
    rng = np.random.default_rng(seed)
    values = [
        from_counts(counts @ pos, counts @ neg) for counts in _count_chunks(len(pos), groups, n_boot, rng)
    ]
    return _interval(point, np.concatenate(values), n_boot, alpha)


# ------------------------------------------------------------------------------------- paired comparisons
@dataclass(frozen=True)
class PairedDifference(BootstrapCI):
    """metric(A) - metric(B) on the same images, with a percentile interval from shared resamples.

    Why paired: two scorers evaluated on the same patients have strongly correlated errors, so two
    overlapping marginal intervals say little; resampling the same patients for both and bootstrapping
    the *difference* does. ``p_not_better`` is the share of resamples in which A is not better than B
    (difference <= 0), a one-sided bootstrap p-value for "A beats B".
    """

    p_not_better: float = 1.0

    def __str__(self) -> str:
        return f"{self.point:+.3f} [{self.low:+.3f}, {self.high:+.3f}] p={self.p_not_better:.3f}"


def _paired(point: float, diffs: np.ndarray, n_boot: int, alpha: float) -> PairedDifference:
    ci = _interval(point, diffs, n_boot, alpha)
    p = float(np.mean(diffs[np.isfinite(diffs)] <= 0))
    return PairedDifference(ci.point, ci.low, ci.high, ci.n_boot, ci.n_skipped, ci.alpha, p)


_IMAGE_PAIRED = {"auroc": (metrics.auroc, _batched_auroc), "auprc": (metrics.auprc, _batched_auprc)}


def bootstrap_paired(
    metric: str,
    y: ArrayLike,
    s_a: ArrayLike,
    s_b: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of AUROC or AUPRC (``metric``) of scores ``s_a`` minus ``s_b`` on labels ``y``."""
    _check_options(n_boot, alpha)
    if metric not in _IMAGE_PAIRED:
        raise ConfigError(f"metric must be one of {', '.join(_IMAGE_PAIRED)}, got {metric!r}")
    exact, batched = _IMAGE_PAIRED[metric]
    y, s_a, s_b = np.asarray(y), np.asarray(s_a), np.asarray(s_b)
    if not (y.shape == s_a.shape == s_b.shape) or y.ndim != 1:
        shapes = f"{y.shape}, {s_a.shape}, {s_b.shape}"
        raise InputError(f"labels and both scores need one value per image, got {shapes}")
    a, b = exact(y, s_a), exact(y, s_b)
    if a is None or b is None:
        raise InputError(f"{metric} is undefined on the full data (one class only?)")
    rng = np.random.default_rng(seed)
    diffs = [batched(c, y, s_a) - batched(c, y, s_b) for c in _count_chunks(len(y), groups, n_boot, rng)]
    return _paired(float(a) - float(b), np.concatenate(diffs), n_boot, alpha)


def bootstrap_paired_fn(
    metric_fn: Callable[[np.ndarray, np.ndarray], float | None],
    y: ArrayLike,
    p_a: ArrayLike,
    p_b: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    metric_fn_b: Callable[[np.ndarray, np.ndarray], float | None] | None = None,
) -> PairedDifference:
    """Paired bootstrap of ``metric_fn(y, p_a) - metric_fn(y, p_b)`` for any metric of labels and predictions.

    Why generic: :func:`bootstrap_paired` covers AUROC/AUPRC of 1-D scores only, while diagnoses are
    compared on accuracy at a threshold or on macro AUC of (N, K) probabilities. Rows (or whole patients,
    with ``groups``) are drawn exactly as in :func:`bootstrap_ci`, the same draw for both sides. A resample
    in which either side is undefined (None, non-finite, ValueError/InputError) is skipped and counted.
    ``metric_fn_b`` (default ``metric_fn``) scores B when its metric differs, e.g. accuracy at each
    model's own threshold. Raises InputError when either side is undefined on the full data.
    """
    _check_options(n_boot, alpha)
    fn_b = metric_fn if metric_fn_b is None else metric_fn_b
    y, p_a, p_b = np.asarray(y), np.asarray(p_a), np.asarray(p_b)
    if y.ndim != 1 or y.size == 0 or p_a.shape != p_b.shape or p_a.ndim == 0 or len(p_a) != len(y):
        shapes = f"{y.shape}, {p_a.shape}, {p_b.shape}"
        raise InputError(f"labels and both predictions need one row per image, got {shapes}")
    a, b = _as_value(metric_fn(y, p_a)), _as_value(fn_b(y, p_b))
    if a is None or b is None:
        side = "A" if a is None else "B"
        raise InputError(f"the metric of {side} is undefined on the full data: no difference to bootstrap")
    rng = np.random.default_rng(seed)
    diffs = [
        _resampled(metric_fn, [y, p_a], c) - _resampled(fn_b, [y, p_b], c)
        for c in _count_chunks(len(y), groups, n_boot, rng)
    ]
    return _paired(a - b, np.concatenate(diffs), n_boot, alpha)


def bootstrap_pixel_paired(
    metric: str,
    maps_a: ArrayLike,
    maps_b: ArrayLike,
    masks: ArrayLike,
    valid_a: ArrayLike | None = None,
    valid_b: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_bins: int = 4096,
) -> PairedDifference:
    """Paired bootstrap of pixel AUROC/AUPRC of maps A minus maps B, resampling whole images (patients).

    Each map set keeps its own valid-pixel mask, so both point values equal the unpaired
    :func:`bootstrap_pixel_ci` ones; the resamples draw the same images for both.
    """
    _check_options(n_boot, alpha)
    if metric not in PIXEL_METRICS:
        raise ConfigError(f"metric must be one of {', '.join(PIXEL_METRICS)}, got {metric!r}")
    exact, from_counts = PIXEL_METRICS[metric]
    if np.shape(maps_a) != np.shape(maps_b):
        raise InputError(f"the two map sets differ in shape: {np.shape(maps_a)} vs {np.shape(maps_b)}")
    a, b = exact(maps_a, masks, valid_a), exact(maps_b, masks, valid_b)
    if a is None or b is None:
        raise InputError(f"pixel {metric} is undefined on the full data: no difference to bootstrap")
    pa, na = _pixel_histograms(maps_a, masks, valid_a, n_bins)
    pb, nb = _pixel_histograms(maps_b, masks, valid_b, n_bins)
    rng = np.random.default_rng(seed)
    diffs = [
        from_counts(c @ pa, c @ na) - from_counts(c @ pb, c @ nb)
        for c in _count_chunks(len(pa), groups, n_boot, rng)
    ]
    return _paired(float(a) - float(b), np.concatenate(diffs), n_boot, alpha)


def bootstrap_dice_paired(
    counts_a: tuple[ArrayLike, ArrayLike],
    counts_b: tuple[ArrayLike, ArrayLike],
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of global Dice A minus B, each at its own fixed (validation-chosen) threshold.

    ``counts_*`` are :func:`vaedx.metrics.measures.dice_counts` per image; resampling whole images (or
    patients) and summing their counts gives each resample's global Dice exactly.
    """
    _check_options(n_boot, alpha)
    ia, da = (np.asarray(v, dtype=np.float64) for v in counts_a)
    ib, db = (np.asarray(v, dtype=np.float64) for v in counts_b)
    if not (ia.shape == da.shape == ib.shape == db.shape) or ia.ndim != 1 or ia.size == 0:
        raise InputError(f"Dice counts need one value per image on both sides, got {ia.shape}, {ib.shape}")
    point = float(metrics.dice_from_counts(ia.sum(), da.sum()) - metrics.dice_from_counts(ib.sum(), db.sum()))
    rng = np.random.default_rng(seed)
    diffs = [
        metrics.dice_from_counts(c @ ia, c @ da) - metrics.dice_from_counts(c @ ib, c @ db)
        for c in _count_chunks(len(ia), groups, n_boot, rng)
    ]
    return _paired(point, np.concatenate(diffs), n_boot, alpha)

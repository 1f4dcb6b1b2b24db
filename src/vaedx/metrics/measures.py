"""Image- and pixel-level metrics for anomaly detection and diagnosis.

Conventions shared with :mod:`vaedx.metrics.thresholds`, so a calibrated threshold means the same thing
everywhere:

* label 1 = abnormal (positive), 0 = normal; a higher score means more abnormal.
* a case (or pixel) is called positive when ``score > threshold``; scores at or below it are normal.
* a metric that is undefined for the data (AUROC with one class, sensitivity without positives) is returned
  as ``None``, never NaN; :func:`undefined_reason` says why, and report dicts list every ``None`` with its
  reason under ``"undefined"``.
* bad input (NaN/inf scores, labels other than 0/1, mismatched shapes, empty arrays) raises InputError.

scikit-learn computes everything it has (AUROC, AP, ROC curve, confusion matrix, F1, Brier); ECE, Dice and
the threshold search over Dice are written here because it has no equivalent.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from vaedx.errors import ConfigError, InputError

#: Pixel metrics on more pixels than this use an evenly spaced deterministic subsample (memory bound).
MAX_PIXELS = 10_000_000


# ---------------------------------------------------------------- input checks


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise InputError naming the first NaN/inf: one NaN would otherwise poison every metric silently."""
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{name} contains NaN or infinite values (first at index {where})")


def as_labels(y: ArrayLike, name: str = "y") -> np.ndarray:
    """1-D int8 array of 0/1 labels (bool accepted)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"{name} is empty")
    if a.dtype != bool and not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name} must hold 0/1 labels, got dtype {a.dtype}")
    bad = ~np.isin(a, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name} must contain only 0 and 1; found {a[i]!r} at index {i}")
    return a.astype(np.int8)


def as_scores(s: ArrayLike, name: str = "scores", ndim: int = 1) -> np.ndarray:
    """Finite float64 array with ``ndim`` dimensions."""
    a = np.asarray(s)
    if a.dtype != bool and not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"{name} is empty")
    check_finite(a, name)
    return a


def as_pair(y: ArrayLike, s: ArrayLike, s_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Checked (labels, scores) of equal length."""
    yy, ss = as_labels(y), as_scores(s, s_name)
    if len(yy) != len(ss):
        raise InputError(f"y has {len(yy)} entries but {s_name} has {len(ss)}")
    return yy, ss


def _probabilities(p: np.ndarray, name: str = "prob") -> np.ndarray:
    if p.min() < 0 or p.max() > 1:
        raise InputError(f"{name} must lie in [0, 1]; found range [{p.min():.4g}, {p.max():.4g}]")
    return p


def undefined_reason(y: ArrayLike, needs: Literal["both", "positive", "negative"] = "both") -> str | None:
    """Why a metric needing ``needs`` classes is undefined for labels ``y``, or None when it is defined."""
    yy = as_labels(y)
    n, n_pos = len(yy), int(yy.sum())
    if needs == "both" and n_pos in (0, n):
        return f"only one class present: all {n} labels are {int(yy[0])}"
    if needs == "positive" and n_pos == 0:
        return f"no positive (label 1) cases among {n}"
    if needs == "negative" and n_pos == n:
        return f"no negative (label 0) cases among {n}"
    return None


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


# ---------------------------------------------------------------- image level


def auroc(y: ArrayLike, s: ArrayLike) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    yy, ss = as_pair(y, s)
    if undefined_reason(yy):
        return None
    return float(roc_auc_score(yy, ss))


def auprc(y: ArrayLike, s: ArrayLike) -> float | None:
    """Average precision (step-wise area under the PR curve, no interpolation); None without positives."""
    yy, ss = as_pair(y, s)
    if undefined_reason(yy, "positive"):
        return None
    return float(average_precision_score(yy, ss))


def fpr_at_tpr(y: ArrayLike, s: ArrayLike, tpr: float = 0.95) -> float | None:
    """Lowest false-positive rate among ROC thresholds whose TPR reaches ``tpr``; None with one class."""
    if not 0 < tpr <= 1:
        raise ConfigError(f"tpr must be in (0, 1], got {tpr}")
    yy, ss = as_pair(y, s)
    if undefined_reason(yy):
        return None
    fpr, tprs, _ = roc_curve(yy, ss, drop_intermediate=False)
    return float(fpr[np.argmax(tprs >= tpr - 1e-12)])  # fpr is non-decreasing: the first hit is the lowest


def sensitivity_specificity(y: ArrayLike, pred: ArrayLike) -> tuple[float | None, float | None]:
    """(TP/(TP+FN), TN/(TN+FP)) for 0/1 predictions; each is None when its denominator is zero."""
    yy, pp = as_labels(y), as_labels(pred, "pred")
    if len(yy) != len(pp):
        raise InputError(f"y has {len(yy)} entries but pred has {len(pp)}")
    tn, fp, fn, tp = confusion_matrix(yy, pp, labels=[0, 1]).ravel()
    return _ratio(tp, tp + fn), _ratio(tn, tn + fp)


def expected_calibration_error(y: ArrayLike, prob: ArrayLike, n_bins: int = 15) -> float:
    """Top-label ECE (Guo et al. 2017): sum over equal-width confidence bins of (n_b/N)·|acc_b − conf_b|.

    ``prob`` is either 1-D P(y=1) for binary labels (confidence = max(p, 1−p), prediction = p > 0.5) or
    (N, K) class probabilities for labels 0..K−1 (confidence = row max, prediction = argmax). Bins are
    [lo, hi) except the last, which is closed, as in sklearn's ``calibration_curve``.
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    p = np.asarray(prob)
    if p.ndim == 2:
        yy = as_class_labels(y, p.shape[1])
        pp = _probabilities(as_scores(p, "prob", ndim=2))
        conf, correct = pp.max(axis=1), pp.argmax(axis=1) == yy
    else:
        yy, pp = as_pair(y, p, "prob")
        _probabilities(pp)
        conf, correct = np.maximum(pp, 1 - pp), (pp > 0.5) == yy
    if len(yy) != len(conf):
        raise InputError(f"y has {len(yy)} entries but prob has {len(conf)}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges[1:-1], conf, side="right")
    gap = np.bincount(idx, correct.astype(float), n_bins) - np.bincount(idx, conf, n_bins)
    return float(np.abs(gap).sum() / len(conf))


def classwise_ece(y: ArrayLike, prob: ArrayLike, n_bins: int = 15) -> list[float]:
    """Per-class ECE (Kull et al. 2019): for each class c, sum over equal-width bins of P(c) of
    (n_b/N)·|freq_b(y = c) − mean_b P(c)|.

    Why next to the top-label ECE: with three or more classes the top-label figure only checks the winning
    probability, so a model can look calibrated while P(meningioma) is systematically off for the images
    where another class wins; this is the number a per-class reliability curve shows.
    """
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    p = _probabilities(as_scores(prob, "prob", ndim=2))
    yy = as_class_labels(y, p.shape[1])
    if len(yy) != len(p):
        raise InputError(f"y has {len(yy)} entries but prob has {len(p)} rows")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for c in range(p.shape[1]):
        idx = np.searchsorted(edges[1:-1], p[:, c], side="right")
        gap = np.bincount(idx, (yy == c).astype(float), n_bins) - np.bincount(idx, p[:, c], n_bins)
        out.append(float(np.abs(gap).sum() / len(yy)))
    return out


def binary_report(y: ArrayLike, prob: ArrayLike, threshold: float = 0.5) -> dict[str, Any]:
    """All binary metrics at one threshold (positive when ``prob > threshold``), JSON-ready.

    Keys: n, n_positive, threshold, auc, accuracy, sensitivity, specificity, precision, f1,
    confusion_matrix ([[TN, FP], [FN, TP]]), brier, ece, undefined ({metric: reason} for every None).
    """
    yy, pp = as_pair(y, prob, "prob")
    _probabilities(pp)
    pred = (pp > threshold).astype(np.int8)
    cm = confusion_matrix(yy, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    f1 = float(f1_score(yy, pred, zero_division=np.nan))
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    out: dict[str, Any] = {
        "n": len(yy),
        "n_positive": tp + fn,
        "threshold": float(threshold),
        "auc": auroc(yy, pp),
        "accuracy": (tp + tn) / len(yy),
        "sensitivity": sens,
        "specificity": spec,
        "precision": _ratio(tp, tp + fp),
        "f1": None if np.isnan(f1) else f1,
        "confusion_matrix": cm.tolist(),
        "brier": float(brier_score_loss(yy, pp, pos_label=1)),
        "ece": expected_calibration_error(yy, pp),
    }
    reasons = {
        "auc": undefined_reason(yy),
        "sensitivity": undefined_reason(yy, "positive"),
        "specificity": undefined_reason(yy, "negative"),
        "precision": "no case predicted positive",
        "f1": "no positive cases and none predicted positive",
    }
    out["undefined"] = {k: reasons[k] for k in reasons if out[k] is None}
    return out


def as_class_labels(y: ArrayLike, n_classes: int, name: str = "y") -> np.ndarray:
    """1-D int64 class indices in 0..n_classes−1."""
    a = np.asarray(y)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.mod(a, 1) == 0):
        raise InputError(f"{name} must hold integer class indices")
    bad = (a < 0) | (a >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name} must lie in 0..{n_classes - 1}; found {a[i]!r} at index {i}")
    return a.astype(np.int64)


def multiclass_report(y: ArrayLike, prob: ArrayLike, class_names: list[str] | None = None) -> dict[str, Any]:
    """Macro one-vs-rest AUC, accuracy, per-class sensitivity/specificity/AUC/ECE and confusion matrix.

    Predictions are the argmax of ``prob`` (N, K). ``macro_auc`` is None when any class's one-vs-rest AUC
    is undefined (class absent, or the only class): averaging over a silent subset would not be comparable.
    ``confusion_matrix_normalised`` divides each row by its true-class count (its diagonal is the per-class
    sensitivity); a row of a class absent from ``y`` is None. ``ece`` is the top-label ECE, ``per_class``
    carries the classwise ECE of P(class).
    """
    p = as_scores(prob, "prob", ndim=2)
    k = p.shape[1]
    if k < 2:
        raise InputError(f"prob must have at least 2 columns (classes), got {k}")
    yy = as_class_labels(y, k)
    if len(yy) != len(p):
        raise InputError(f"y has {len(yy)} entries but prob has {len(p)} rows")
    names = class_names or [str(i) for i in range(k)]
    if len(names) != k:
        raise ConfigError(f"{len(names)} class names given for {k} classes")
    pred = p.argmax(axis=1)
    per_class, undefined = [], {}
    eces = classwise_ece(yy, p)
    for c in range(k):
        yc = (yy == c).astype(np.int8)
        sens, spec = sensitivity_specificity(yc, (pred == c).astype(np.int8))
        auc = auroc(yc, p[:, c])
        if auc is None:
            undefined[f"auc[{names[c]}]"] = f"class {names[c]}: {undefined_reason(yc)}"
        per_class.append(
            {
                "class": names[c],
                "n": int(yc.sum()),
                "auc": auc,
                "sensitivity": sens,
                "specificity": spec,
                "ece": eces[c],
            }
        )
    aucs = [r["auc"] for r in per_class]
    macro = None if None in aucs else float(np.mean(aucs))
    if macro is None:
        undefined["macro_auc"] = "one-vs-rest AUC undefined for at least one class"
    cm = confusion_matrix(yy, pred, labels=list(range(k)))
    return {
        "n": len(yy),
        "macro_auc": macro,
        "accuracy": float(np.mean(pred == yy)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalised": [
            [float(v) / row.sum() for v in row] if row.sum() else None for row in cm
        ],
        "ece": expected_calibration_error(yy, p),
        "undefined": undefined,
    }


# ---------------------------------------------------------------- pixel level


def _squeeze_channel(a: np.ndarray) -> np.ndarray:
    return a[:, 0] if a.ndim == 4 and a.shape[1] == 1 else a


def as_binary(a: ArrayLike, name: str) -> np.ndarray:
    """Bool array from a bool or 0/1 mask; other values (e.g. 255) raise rather than being guessed at."""
    m = _squeeze_channel(np.asarray(a))
    if m.dtype == bool:
        return m
    if not np.issubdtype(m.dtype, np.number) or not np.isin(m, (0, 1)).all():
        raise InputError(f"{name} must be binary (bool or 0/1)")
    return m.astype(bool)


def _pixels(maps: ArrayLike, masks: ArrayLike, valid: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """Flat (scores, labels) of the pixels that count; float maps keep their dtype to save memory."""
    m = _squeeze_channel(np.asarray(maps))
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float32)
    gt = as_binary(masks, "masks")
    if m.shape != gt.shape:
        raise InputError(f"maps have shape {m.shape} but masks have {gt.shape}")
    if m.size == 0:
        raise InputError("maps are empty")
    check_finite(m, "maps")
    if valid is None:
        return m.ravel(), gt.ravel()
    v = as_binary(valid, "valid")
    if v.shape != m.shape:
        raise InputError(f"valid has shape {v.shape} but maps have {m.shape}")
    if not v.any():
        raise InputError("valid selects no pixels")
    return m[v], gt[v]


def _subsample(scores: np.ndarray, labels: np.ndarray, max_pixels: int | None) -> tuple[np.ndarray, ...]:
    if max_pixels is None or scores.size <= max_pixels:
        return scores, labels
    idx = np.linspace(0, scores.size - 1, num=max_pixels).astype(np.int64)
    return scores[idx], labels[idx]


def pixel_auroc(
    maps: ArrayLike, masks: ArrayLike, valid: ArrayLike | None = None, max_pixels: int | None = MAX_PIXELS
) -> float | None:
    """AUROC over all pixels (within ``valid``) of (N, H, W) maps vs masks; None if masks are all 0 or 1.

    Above ``max_pixels`` pixels an evenly spaced, deterministic subsample is used so memory stays bounded;
    ``max_pixels=None`` always uses every pixel (5 M pixels take about 2 s and < 0.5 GB).
    """
    s, g = _subsample(*_pixels(maps, masks, valid), max_pixels)
    if g.all() or not g.any():
        return None
    return float(roc_auc_score(g, s))


def pixel_auprc(
    maps: ArrayLike, masks: ArrayLike, valid: ArrayLike | None = None, max_pixels: int | None = MAX_PIXELS
) -> float | None:
    """Pixel-level average precision (see :func:`pixel_auroc` for subsampling); None without lesion pixels."""
    s, g = _subsample(*_pixels(maps, masks, valid), max_pixels)
    if not g.any():
        return None
    return float(average_precision_score(g, s))


def _dice_counts(pred: ArrayLike, masks: ArrayLike, valid: ArrayLike | None) -> tuple[np.ndarray, ...]:
    p, g = as_binary(pred, "pred"), as_binary(masks, "masks")
    if p.shape != g.shape:
        raise InputError(f"pred has shape {p.shape} but masks have {g.shape}")
    if valid is not None:
        v = as_binary(valid, "valid")
        if v.shape != p.shape:
            raise InputError(f"valid has shape {v.shape} but pred has {p.shape}")
        p, g = p & v, g & v
    return p, g


def dice(pred: ArrayLike, masks: ArrayLike, valid: ArrayLike | None = None) -> float:
    """Global Dice 2|P∩G|/(|P|+|G|) over all pixels of the set (not a mean of per-image Dice).

    Empty prediction and empty mask give 1.0 (perfect agreement that nothing is there); an empty mask with
    a non-empty prediction gives 0.0.
    """
    p, g = _dice_counts(pred, masks, valid)
    den = int(p.sum()) + int(g.sum())
    return 1.0 if den == 0 else 2.0 * int((p & g).sum()) / den


def dice_per_image(pred: ArrayLike, masks: ArrayLike, valid: ArrayLike | None = None) -> np.ndarray:
    """(N,) Dice of each image in (N, H, W) arrays; an image with empty prediction and mask scores 1.0."""
    p, g = _dice_counts(pred, masks, valid)
    if p.ndim < 2:
        raise InputError(f"pred must be (N, H, W), got shape {p.shape}")
    return dice_from_counts(*_per_image_counts(p, g))


def _per_image_counts(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|P∩G|, |P|+|G|) of each image of binary (N, ...) arrays."""
    p, g = p.reshape(len(p), -1), g.reshape(len(g), -1)
    return (p & g).sum(axis=1), p.sum(axis=1) + g.sum(axis=1)


def dice_from_counts(inter: ArrayLike, den: ArrayLike) -> np.ndarray:
    """2·inter/den elementwise, 1.0 where den is 0 (nothing predicted, nothing there: perfect)."""
    inter, den = np.asarray(inter), np.asarray(den)
    return np.where(den == 0, 1.0, 2.0 * inter / np.maximum(den, 1))


def dice_at_threshold(
    maps: ArrayLike, masks: ArrayLike, threshold: float, valid: ArrayLike | None = None
) -> float:
    """Global Dice of ``maps > threshold`` against the masks (use a threshold fixed on other data)."""
    m = _squeeze_channel(np.asarray(maps))
    check_finite(m, "maps")
    return dice(m > threshold, masks, valid)


def dice_counts(
    maps: ArrayLike, masks: ArrayLike, threshold: float, valid: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (|pred & gt|, |pred| + |gt|) for ``maps > threshold``, inside ``valid`` when given.

    Global Dice over any set of images is :func:`dice_from_counts` of the summed counts, which is what the
    bootstraps resample: whole images (or patients) are drawn and their counts summed.
    """
    m = _squeeze_channel(np.asarray(maps))
    check_finite(m, "maps")
    return _per_image_counts(*_dice_counts(m > threshold, masks, valid))


def best_dice(
    maps: ArrayLike, masks: ArrayLike, n_thresholds: int = 256, valid: ArrayLike | None = None
) -> tuple[float, float]:
    """(best global Dice, its threshold) over ``n_thresholds`` quantiles of the pixel scores.

    OPTIMISTIC when run on the test set: the threshold is chosen on the very data it is scored on. Report
    it as an upper bound, or choose the threshold on a validation split
    (:func:`vaedx.metrics.thresholds.threshold_best_dice`) and use :func:`dice_at_threshold` on test.
    Thresholds are observed scores; ties choose the lowest. One sort serves every threshold, so 5 M pixels
    need no (n_thresholds × pixels) boolean arrays.
    """
    if n_thresholds < 2:
        raise ConfigError(f"n_thresholds must be >= 2, got {n_thresholds}")
    s, g = _pixels(maps, masks, valid)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    pos_below = np.concatenate([[0], np.cumsum(g[order], dtype=np.int64)])
    total_pos = int(pos_below[-1])
    q = np.linspace(0.0, 1.0, n_thresholds)
    cand = np.unique(s_sorted[np.round(q * (s.size - 1)).astype(np.int64)])
    k = np.searchsorted(s_sorted, cand, side="right")  # pixels at or below each threshold
    n_pred = s.size - k
    tp = total_pos - pos_below[k]
    den = n_pred + total_pos
    d = np.where(den == 0, 1.0, 2.0 * tp / np.maximum(den, 1))
    i = int(np.argmax(d))
    return float(d[i]), float(cand[i])

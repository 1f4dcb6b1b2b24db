"""Choosing decision thresholds on calibration data, and saving them beside a model.

Rule used everywhere in vaedx: an image (or pixel) is abnormal when ``score > threshold``. Every function
here returns an *observed* score (the highest one still called normal), so the stated operating point is
reproduced exactly on the calibration data. Choose thresholds on held-out normals or a validation split,
never on the test set they will be evaluated on.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sklearn.metrics import roc_curve

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.measures import as_pair, as_scores, best_dice, undefined_reason


def _order_index(fraction: float, n: int) -> int:
    """ceil(fraction·n), rounded first so 0.95·100 cannot become 96 through floating-point error."""
    return max(1, math.ceil(round(fraction * n, 9)))


def _highest_below(sorted_unique: np.ndarray, value: float) -> float:
    """Largest observed score strictly below ``value`` (so ``> result`` ⇔ ``>= value`` on the data)."""
    i = int(np.searchsorted(sorted_unique, value, side="left"))
    return float(sorted_unique[i - 1]) if i > 0 else float(np.nextafter(value, -np.inf))


def threshold_at_specificity(normal_scores: ArrayLike, specificity: float = 0.95) -> float:
    """The k-th smallest normal score, k = ceil(specificity·n): at least that fraction of normals is <= it.

    This is ``np.quantile(s, specificity, method="inverted_cdf")``; e.g. normals 0..99 at 0.95 give 94 (95
    of 100 at or below). Numpy's ``method="higher"`` would give 95 and over-achieve (96 %). Ties: normals
    equal to the threshold all count as normal, so with ties at the cut the achieved specificity is the
    smallest attainable value >= the target, never below it.
    """
    if not 0 < specificity <= 1:
        raise ConfigError(f"specificity must be in (0, 1], got {specificity}")
    s = np.sort(as_scores(normal_scores, "normal_scores"))
    return float(s[_order_index(specificity, s.size) - 1])


def threshold_at_sensitivity(y: ArrayLike, s: ArrayLike, sensitivity: float = 0.95) -> float:
    """Highest threshold with at least ``sensitivity`` of the positives scoring above it.

    Only positives decide the operating point; all scores (negatives too) are candidate thresholds, so the
    result is the highest observed score below the k-th highest positive, k = ceil(sensitivity·n_pos). When
    no score is below it, returns the float just under it (everything called positive).
    """
    if not 0 < sensitivity <= 1:
        raise ConfigError(f"sensitivity must be in (0, 1], got {sensitivity}")
    yy, ss = as_pair(y, s)
    reason = undefined_reason(yy, "positive")
    if reason:
        raise InputError(f"cannot set a sensitivity threshold: {reason}")
    pos = np.sort(ss[yy == 1])
    kth_highest = pos[pos.size - _order_index(sensitivity, pos.size)]
    return _highest_below(np.unique(ss), float(kth_highest))


def threshold_youden(y: ArrayLike, s: ArrayLike) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity − 1 (ties: the highest threshold).

    When no threshold beats J = 0 (uninformative scores) this is the maximum score: everything normal.
    """
    yy, ss = as_pair(y, s)
    reason = undefined_reason(yy)
    if reason:
        raise InputError(f"cannot set a Youden threshold: {reason}")
    fpr, tpr, thr = roc_curve(yy, ss, drop_intermediate=False)  # positive when s >= thr
    i = int(np.argmax(tpr - fpr))
    return _highest_below(np.unique(ss), float(thr[i]))


def threshold_best_dice(
    maps: ArrayLike, masks: ArrayLike, n_thresholds: int = 256, valid: ArrayLike | None = None
) -> float:
    """Pixel threshold with the best global Dice on a *validation* split (see metrics.best_dice)."""
    return best_dice(maps, masks, n_thresholds=n_thresholds, valid=valid)[1]


class Thresholds(BaseModel):
    """One scorer's calibrated thresholds. Saved only inside the calibration file
    (:class:`vaedx.anomaly.calibration.CalibrationFile`, ``thresholds.json``), its one schema."""

    model_config = ConfigDict(extra="forbid")

    image_threshold: float = Field(description="An image is abnormal when its score > this.")
    target_specificity: float | None = Field(default=None, gt=0, le=1)
    pixel_threshold: float | None = Field(default=None, description="A pixel is abnormal when > this.")
    method: str = Field(default="specificity", min_length=1, description="How image_threshold was chosen.")
    n_calibration: int = Field(ge=0, description="Number of cases the image threshold was chosen on.")

    @field_validator("image_threshold", "pixel_threshold")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("thresholds must be finite")
        return v

    @classmethod
    def from_normal_scores(
        cls, normal_scores: ArrayLike, specificity: float = 0.95, pixel_threshold: float | None = None
    ) -> Thresholds:
        s = as_scores(normal_scores, "normal_scores")
        return cls(
            image_threshold=threshold_at_specificity(s, specificity),
            target_specificity=specificity,
            pixel_threshold=pixel_threshold,
            method="specificity",
            n_calibration=s.size,
        )

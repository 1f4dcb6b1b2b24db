"""Probability calibration and the decision threshold, both chosen on the validation split.

Why calibrate: cross-validated AUC says how well a classifier *ranks* cases, not whether "0.8" means 80 %;
a clinician reading a probability needs the latter. The classifier chosen on the training split is frozen
and a Platt (sigmoid) or isotonic map of its output is fitted on validation images it never saw.

scikit-learn 1.9 removed ``cv="prefit"``; the replacement is ``CalibratedClassifierCV(FrozenEstimator(m))``,
which then fits a single calibrator on all rows it is given. We pass one split covering every row: the
frozen model is never refitted, so the split only decides which rows get predicted, and the default 5-fold
split would needlessly refuse a validation set with fewer than 5 images of some class.

Three or more classes: scikit-learn's "sigmoid" fits one Platt map per class (one-vs-rest) and renormalises
the rows, which can move the argmax, so calibration alone changed which tumour type was predicted. For more
than two classes "sigmoid" therefore fits temperature scaling (Guo et al. 2017), the multi-class form of
Platt scaling: one temperature on the softmax, fitted by log-loss, which keeps every argmax and so the
decisions, accuracy and confusion matrix of the classifier. ``diagnosis.json`` records it as "temperature".
Isotonic stays one-vs-rest and renormalised, as scikit-learn defines it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from threadpoolctl import threadpool_limits

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.thresholds import threshold_at_sensitivity, threshold_at_specificity, threshold_youden

CALIBRATION_METHODS = ("sigmoid", "isotonic", "temperature", "none")


def fit_probability_calibration(
    estimator: Any, x_val: np.ndarray, y_val: np.ndarray, method: str = "sigmoid"
) -> Any:
    """A fitted CalibratedClassifierCV around the frozen ``estimator``, or None for ``method="none"``;
    with more than two classes "sigmoid" fits temperature scaling (see the module docstring)."""
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}, not {method!r}")
    if method == "none":
        return None
    y = np.asarray(y_val)
    known, seen = np.asarray(estimator.classes_), np.unique(y)
    if not np.array_equal(known, seen):
        raise InputError(
            f"validation labels have classes {seen.tolist()} but the classifier was trained on "
            f"{known.tolist()}; calibration needs every class in both"
        )
    if method == "sigmoid" and len(known) > 2:
        method = "temperature"
    every_row = [(np.arange(len(y)), np.arange(len(y)))]
    cal = CalibratedClassifierCV(FrozenEstimator(estimator), method=method, cv=every_row)
    with threadpool_limits(limits=1):  # see vaedx.diagnose.classifiers: tiny fits, no thread pools
        return cal.fit(np.asarray(x_val, dtype=np.float64), y)


@dataclass(frozen=True)
class ThresholdRule:
    """How the binary threshold on P(positive) is chosen: youden, sens:0.95, spec:0.9 or fixed:0.5."""

    kind: str
    value: float | None = None

    @classmethod
    def parse(cls, text: str | float) -> ThresholdRule:
        if isinstance(text, int | float):
            return cls("fixed", float(text))
        t = str(text).strip().lower()
        if t in ("youden", "argmax"):
            return cls(t)
        m = re.fullmatch(r"(sens|spec|fixed):([0-9.]+)", t) or re.fullmatch(r"()([0-9.]+)", t)
        if m is None:
            raise ConfigError(f"threshold must be youden, argmax, sens:F, spec:F or a number, not {text!r}")
        kind, value = m.group(1) or "fixed", float(m.group(2))
        if kind in ("sens", "spec") and not 0 < value <= 1:
            raise ConfigError(f"{kind}:{value} must be a fraction in (0, 1]")
        if kind == "fixed" and not 0 <= value <= 1:
            raise ConfigError(f"a fixed threshold is a probability in [0, 1], got {value}")
        return cls(kind, value)

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    def choose(self, y: np.ndarray, p_positive: np.ndarray) -> float:
        """Threshold on validation probabilities; a case is positive when P(positive) > threshold."""
        if self.kind == "argmax":
            return 0.5
        if self.kind == "fixed":
            return float(self.value)  # type: ignore[arg-type]
        if self.kind == "youden":
            t = threshold_youden(y, p_positive)
        elif self.kind == "sens":
            t = threshold_at_sensitivity(y, p_positive, float(self.value))  # type: ignore[arg-type]
        else:
            normals = np.asarray(p_positive)[np.asarray(y) == 0]
            if normals.size == 0:
                raise InputError("cannot set a specificity threshold: no negative cases in validation")
            t = threshold_at_specificity(normals, float(self.value))  # type: ignore[arg-type]
        return float(t) if math.isfinite(t) else 0.5

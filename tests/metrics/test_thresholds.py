"""Thresholds reproduce their operating point exactly on calibration data (score > threshold = abnormal)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.measures import best_dice
from vaedx.metrics.thresholds import (
    Thresholds,
    threshold_at_sensitivity,
    threshold_at_specificity,
    threshold_best_dice,
    threshold_youden,
)


def test_specificity_exact_on_100_normals():
    normals = np.random.default_rng(0).permutation(100).astype(float)  # 0..99 shuffled
    t = threshold_at_specificity(normals, 0.95)
    assert t == 94.0  # 95 of 100 normals (0..94) at or below
    assert np.mean(normals <= t) == 0.95
    assert threshold_at_specificity(normals, 1.0) == 99.0
    assert threshold_at_specificity(normals, 0.01) == 0.0


def test_specificity_equals_inverted_cdf_quantile_and_is_never_below_target():
    rng = np.random.default_rng(1)
    for n in (7, 50, 333):
        s = rng.normal(size=n)
        for spec in (0.5, 0.9, 0.95, 0.99):
            t = threshold_at_specificity(s, spec)
            assert t == np.quantile(s, spec, method="inverted_cdf")
            assert np.mean(s <= t) >= spec


def test_specificity_ties_overshoot_rather_than_undershoot():
    # 5 normals, 0.5 -> 3rd smallest = 1; all four 1s are at or below it -> achieved 0.8 >= 0.5
    assert threshold_at_specificity([1, 1, 2, 1, 1], 0.5) == 1.0


def test_specificity_bad_inputs():
    with pytest.raises(ConfigError):
        threshold_at_specificity([1, 2], 0.0)
    with pytest.raises(InputError):
        threshold_at_specificity([1, np.nan], 0.9)
    with pytest.raises(InputError):
        threshold_at_specificity([], 0.9)


Y7 = [0, 0, 0, 1, 0, 1, 1]
S7 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_youden_hand_case():
    # calling s >= t positive: t=.7 J=1/3; .6 J=2/3; .5 J=2/3-1/4; .4 J=1-1/4=.75 (best); .3 J=.5
    # the highest score still called normal is 0.3
    assert threshold_youden(Y7, S7) == pytest.approx(0.3)
    with pytest.raises(InputError, match="one class"):
        threshold_youden([1, 1], [0.1, 0.2])


def test_sensitivity_hand_case():
    assert threshold_at_sensitivity(Y7, S7, 2 / 3) == pytest.approx(0.5)  # .6, .7 above: sens 2/3, no FP
    assert threshold_at_sensitivity(Y7, S7, 0.95) == pytest.approx(0.3)  # all 3 positives above
    assert threshold_at_sensitivity(Y7, S7, 0.3) == pytest.approx(0.6)
    # lowest score is positive: everything must be called positive
    t = threshold_at_sensitivity([1, 0, 1], [0.1, 0.2, 0.3], 1.0)
    assert t < 0.1 and np.all(np.array([0.1, 0.2, 0.3]) > t)
    with pytest.raises(InputError, match="no positive"):
        threshold_at_sensitivity([0, 0], [0.1, 0.2])


def test_sensitivity_never_below_target_random():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # with ties
    for target in (0.8, 0.9, 0.95):
        t = threshold_at_sensitivity(y, s, target)
        assert np.mean(s[y == 1] > t) >= target


def test_threshold_best_dice_uses_validation_maps():
    rng = np.random.default_rng(3)
    masks = rng.random((3, 8, 8)) < 0.2
    maps = rng.random((3, 8, 8)) + masks
    assert threshold_best_dice(maps, masks, n_thresholds=32) == best_dice(maps, masks, n_thresholds=32)[1]


def test_thresholds_model_roundtrip(tmp_path):
    th = Thresholds.from_normal_scores(np.arange(100.0), 0.95, pixel_threshold=0.25)
    assert (th.image_threshold, th.target_specificity, th.n_calibration) == (94.0, 0.95, 100)
    assert Thresholds.model_validate_json(th.model_dump_json()) == th


def test_thresholds_model_validation(tmp_path):
    with pytest.raises(ValidationError):
        Thresholds(image_threshold=float("inf"), n_calibration=3)
    with pytest.raises(ValidationError):
        Thresholds(image_threshold=1.0, n_calibration=3, target_specificity=1.5)
    with pytest.raises(ValidationError, match="n_calibration"):
        Thresholds.model_validate({"image_threshold": 1.0})

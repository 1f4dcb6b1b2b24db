"""Paired bootstrap differences: hand-checkable points, symmetry, identical scorers, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect_outputs import second_scorer_output as _second
from detect_outputs import toy_detect_output as _toy
from vaedx.cli import main
from vaedx.errors import ConfigError, InputError
from vaedx.evaluate.compare import Side, compare_scorers
from vaedx.metrics.bootstrap import bootstrap_dice_paired, bootstrap_paired, bootstrap_pixel_paired
from vaedx.metrics.measures import auprc, auroc, dice_at_threshold, dice_counts, pixel_auprc


def test_paired_point_is_the_difference_and_swapping_mirrors_it():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    good = y + rng.normal(0, 0.6, 60)
    poor = y + rng.normal(0, 2.0, 60)
    d = bootstrap_paired("auroc", y, good, poor, n_boot=500, seed=3)
    assert d.point == pytest.approx(auroc(y, good) - auroc(y, poor))
    e = bootstrap_paired("auroc", y, poor, good, n_boot=500, seed=3)  # same resamples, opposite sign
    assert e.point == pytest.approx(-d.point) and e.low == pytest.approx(-d.high)
    assert d.low > 0 and d.p_not_better < 0.05 and e.p_not_better > 0.95
    p = bootstrap_paired("auprc", y, good, poor, groups=np.arange(60) // 3, n_boot=300)
    assert p.point == pytest.approx(auprc(y, good) - auprc(y, poor)) and p.low <= p.point <= p.high


def test_identical_scorers_differ_by_exactly_zero():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    d = bootstrap_paired("auroc", y, s, s.copy(), n_boot=200)
    assert (d.point, d.low, d.high, d.p_not_better) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="metric"):
        bootstrap_paired("dice", y, s, s)
    with pytest.raises(InputError, match="undefined"):
        bootstrap_paired("auroc", np.zeros(6, int), s, s)


def test_pixel_paired_matches_the_exact_pixel_metrics():
    rng = np.random.default_rng(1)
    masks = np.zeros((10, 8, 8), np.uint8)
    masks[5:, 2:5, 2:5] = 1
    sharp = masks + rng.normal(0, 0.3, masks.shape)
    blurry = masks + rng.normal(0, 1.0, masks.shape)
    d = bootstrap_pixel_paired("auprc", sharp, blurry, masks, groups=np.arange(10) // 2, n_boot=300)
    assert d.point == pytest.approx(pixel_auprc(sharp, masks) - pixel_auprc(blurry, masks))
    assert d.low <= d.point <= d.high and d.point > 0
    with pytest.raises(InputError, match="differ in shape"):
        bootstrap_pixel_paired("auprc", sharp, blurry[:5], masks)


def test_paired_dice_by_hand_and_from_maps():
    # A: 2 * (2 + 0 + 1 + 0) / (4 + 2 + 2 + 0) = 0.75; B: 2 * 1 / (4 + 1 + 2 + 0) = 2 / 7
    a, b = ([2, 0, 1, 0], [4, 2, 2, 0]), ([1, 0, 0, 0], [4, 1, 2, 0])
    d = bootstrap_dice_paired(a, b, groups=np.array([0, 0, 1, 1]), n_boot=200)
    assert d.point == pytest.approx(0.75 - 2 / 7)
    assert d.low <= d.point <= d.high
    back = bootstrap_dice_paired(b, a, groups=np.array([0, 0, 1, 1]), n_boot=200)
    assert (back.low, back.high) == pytest.approx((-d.high, -d.low))  # same resamples, mirrored
    same = bootstrap_dice_paired(a, a, n_boot=50)
    assert (same.point, same.low, same.high, same.p_not_better) == (0.0, 0.0, 0.0, 1.0)
    # counts from maps reproduce the exact global Dice at each side's own threshold
    rng = np.random.default_rng(3)
    masks = np.zeros((6, 8, 8), np.uint8)
    masks[3:, 2:6, 2:6] = 1
    maps_a, maps_b = masks + rng.normal(0, 0.3, masks.shape), masks + rng.normal(0, 0.8, masks.shape)
    d = bootstrap_dice_paired(dice_counts(maps_a, masks, 0.5), dice_counts(maps_b, masks, 0.7), n_boot=100)
    exact = dice_at_threshold(maps_a, masks, 0.5) - dice_at_threshold(maps_b, masks, 0.7)
    assert d.point == pytest.approx(exact) and d.point > 0
    with pytest.raises(InputError, match="one value per image"):
        bootstrap_dice_paired(a, ([1], [2]))


def test_compare_two_detect_folders_and_the_cli(tmp_path, capsys):
    pred, store = _toy(tmp_path)  # scorer "toy": AUROC 14/16, perfect pixel maps
    perfect = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    noisy = np.random.default_rng(2).uniform(0, 1, (8, 4, 4)).astype(np.float32)
    other = _second(pred, tmp_path / "pred2", perfect, noisy)
    res = compare_scorers(Side.parse(f"{other}:other"), Side.parse(f"{pred}:toy"), store, n_boot=200)
    diffs = res["differences"]
    assert diffs["auroc"].point == pytest.approx(1 - 14 / 16)
    assert diffs["pixel_auroc"].point < 0  # the toy maps are perfect, the noisy ones are not
    assert res["a"] == "pred2:other" and res["n_images"] == 8
    assert diffs["dice_val_threshold"] is None  # "other" was never calibrated, so it has no pixel threshold
    assert "no pixel threshold" in res["undefined"]["dice_val_threshold"]
    self_cmp = compare_scorers(Side.parse(f"{pred}:toy"), Side.parse(f"{pred}:toy"), store, n_boot=50)
    assert self_cmp["differences"]["dice_val_threshold"].point == 0.0
    out = tmp_path / "cmp.json"
    code = main(["evaluate", "compare", "--a", f"{other}:other", "--b", f"{pred}:toy", "--store", str(store),
                 "--n-boot", "100", "--out", str(out)])  # fmt: skip
    assert code in (0, None)
    doc = json.loads(out.read_text())
    assert doc[0]["differences"]["auroc"]["point"] == pytest.approx(0.125)
    assert "paired bootstrap" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="FOLDER:SCORER"):
        Side.parse("no-scorer")
    with pytest.raises(InputError, match="no scorer 'nope'"):
        compare_scorers(Side.parse(f"{pred}:nope"), Side.parse(f"{pred}:toy"), store, n_boot=10)

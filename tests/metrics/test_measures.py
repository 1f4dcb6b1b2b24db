"""Metrics against hand-computed values, plus the undefined/invalid-input contract."""

from __future__ import annotations

import numpy as np
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.metrics import measures as M

Y = [0, 0, 1, 1]
S = [0.1, 0.4, 0.35, 0.8]


def test_auroc_auprc_hand_example():
    # positive/negative pairs: 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    assert M.auroc(Y, S) == pytest.approx(0.75)
    # descending: 0.8(+) P=1 R=1/2; 0.4(-); 0.35(+) P=2/3 R=1 -> 1/2*1 + 1/2*2/3
    assert M.auprc(Y, S) == pytest.approx(5 / 6)


def test_fpr_at_tpr_hand_example():
    assert M.fpr_at_tpr(Y, S, tpr=0.95) == pytest.approx(0.5)  # TPR 1 needs threshold 0.35: FP = {0.4}
    assert M.fpr_at_tpr(Y, S, tpr=0.5) == pytest.approx(0.0)  # threshold 0.8 alone
    with pytest.raises(ConfigError):
        M.fpr_at_tpr(Y, S, tpr=0)


def test_sensitivity_specificity_hand_example():
    sens, spec = M.sensitivity_specificity([0, 0, 0, 1, 1], [0, 1, 0, 1, 0])
    assert (sens, spec) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert M.sensitivity_specificity([0, 0], [0, 1]) == (None, 0.5)


def test_ece_hand_example():
    # conf = [0.9, 0.85, 0.65, 0.7], correct = [1, 1, 1, 0]; 5 bins:
    # [0.6,0.8): acc 1/2, conf 0.675 -> 0.175; [0.8,1]: acc 1, conf 0.875 -> 0.125; ECE = (0.175+0.125)/2
    assert M.expected_calibration_error([1, 0, 1, 1], [0.9, 0.15, 0.65, 0.3], n_bins=5) == pytest.approx(0.15)
    # multi-class form: top-label confidence/argmax
    prob = np.array([[0.9, 0.1], [0.15, 0.85], [0.35, 0.65], [0.7, 0.3]])
    assert M.expected_calibration_error([0, 1, 1, 1], prob, n_bins=5) == pytest.approx(0.15)
    assert M.expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


def test_binary_report_hand_example():
    r = M.binary_report(Y, S, threshold=0.3)  # pred = [0, 1, 1, 1]
    assert r["confusion_matrix"] == [[1, 1], [0, 2]]
    assert r["auc"] == pytest.approx(0.75)
    assert r["accuracy"] == pytest.approx(0.75)
    assert (r["sensitivity"], r["specificity"]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(0.8)
    assert r["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert r["undefined"] == {}
    # strictly greater: a score equal to the threshold is negative
    assert M.binary_report(Y, S, threshold=0.35)["confusion_matrix"] == [[1, 1], [1, 1]]


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_is_none_with_reason(label):
    y = [label] * 4
    assert M.auroc(y, S) is None
    assert M.fpr_at_tpr(y, S) is None
    assert f"all 4 labels are {label}" in M.undefined_reason(y)
    r = M.binary_report(y, S)
    assert r["auc"] is None and "only one class" in r["undefined"]["auc"]
    missing = "sensitivity" if label == 0 else "specificity"
    assert r[missing] is None and missing in r["undefined"]
    assert not any(isinstance(v, float) and np.isnan(v) for v in r.values())


def test_auprc_one_class():
    assert M.auprc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert M.auprc([1, 1, 1], [0.1, 0.2, 0.3]) == pytest.approx(1.0)  # precision is 1 everywhere


def test_constant_scores():
    y, s = [0, 0, 0, 1], [0.5] * 4
    assert M.auroc(y, s) == pytest.approx(0.5)
    assert M.auprc(y, s) == pytest.approx(0.25)  # one threshold: precision = prevalence
    assert M.fpr_at_tpr(y, s) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "y, s",
    [
        ([0, 1, 1], [0.1, np.nan, 0.3]),
        ([0, 1, 1], [0.1, np.inf, 0.3]),
        ([0, 2, 1], [0.1, 0.2, 0.3]),
        ([0, np.nan, 1], [0.1, 0.2, 0.3]),
        ([0, 1], [0.1, 0.2, 0.3]),
        ([], []),
        (["a", "b"], [0.1, 0.2]),
    ],
)
def test_bad_inputs_raise(y, s):
    with pytest.raises(InputError):
        M.auroc(y, s)


def test_nan_error_names_index():
    with pytest.raises(InputError, match=r"index \(2,\)"):
        M.auprc([0, 1, 1], [0.1, 0.2, np.nan])


def test_binary_report_rejects_non_probabilities():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        M.binary_report([0, 1], [0.2, 1.5])


def test_multiclass_report():
    y = [0, 1, 2, 2]
    prob = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]]
    r = M.multiclass_report(y, prob, class_names=["a", "b", "c"])
    assert r["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert r["accuracy"] == pytest.approx(0.75)
    c = {row["class"]: row for row in r["per_class"]}
    assert c["a"]["sensitivity"] == 1.0 and c["a"]["specificity"] == pytest.approx(2 / 3)
    assert c["c"]["sensitivity"] == 0.5 and c["c"]["specificity"] == 1.0
    # class c one-vs-rest: positives 0.8, 0.2 vs negatives 0.1, 0.1 -> 1.0; a and b separable too
    assert r["macro_auc"] == pytest.approx(1.0)


def test_multiclass_report_row_normalised_matrix_and_classwise_ece():
    y = [0, 1, 2, 2]
    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    r = M.multiclass_report(y, prob)
    assert r["confusion_matrix_normalised"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]
    assert [row["ece"] for row in r["per_class"]] == M.classwise_ece(y, prob)
    # class 0 with bins [0, .5) and [.5, 1]: |0 - (.2 + .1)| + |1 - (.8 + .5)| over 4 images
    assert M.classwise_ece(y, prob, n_bins=2)[0] == pytest.approx(0.6 / 4)
    absent = M.multiclass_report([0, 0, 1, 1], np.full((4, 3), 1 / 3))
    assert absent["confusion_matrix_normalised"][2] is None


def test_multiclass_absent_class_gives_none():
    r = M.multiclass_report([0, 0, 1, 1], np.full((4, 3), 1 / 3))
    assert r["macro_auc"] is None and "macro_auc" in r["undefined"] and "auc[2]" in r["undefined"]
    with pytest.raises(InputError):
        M.multiclass_report([0, 3], np.full((2, 3), 1 / 3))


# ---------------------------------------------------------------- pixel level

PRED = np.array([[[1, 1, 0], [0, 1, 0]]], dtype=bool)
MASK = np.array([[[1, 0, 0], [0, 1, 1]]], dtype=bool)


def test_dice_hand_example():
    # |P| = 3, |G| = 3, |P & G| = 2 -> 4/6
    assert M.dice(PRED, MASK) == pytest.approx(2 / 3)
    valid = np.array([[[1, 1, 1], [0, 0, 0]]], dtype=bool)  # only the first row counts: 2*1/(2+1)
    assert M.dice(PRED, MASK, valid) == pytest.approx(2 / 3)
    assert M.dice(PRED, MASK, ~valid) == pytest.approx(2 / 3)  # second row: 2*1/(1+2)


def test_dice_empty_conventions():
    empty = np.zeros((2, 3, 3), dtype=bool)
    assert M.dice(empty, empty) == 1.0
    some = empty.copy()
    some[0, 1, 1] = True
    assert M.dice(some, empty) == 0.0
    assert M.dice(empty, some) == 0.0
    np.testing.assert_allclose(M.dice_per_image(some, empty), [0.0, 1.0])


def test_dice_per_image_and_global_differ():
    pred = np.concatenate([PRED, np.ones_like(PRED)])
    mask = np.concatenate([MASK, np.ones_like(MASK)])
    np.testing.assert_allclose(M.dice_per_image(pred, mask), [2 / 3, 1.0])
    assert M.dice(pred, mask) == pytest.approx(2 * (2 + 6) / (9 + 9))


def test_masks_must_be_binary():
    with pytest.raises(InputError, match="binary"):
        M.dice(PRED, MASK.astype(np.uint8) * 255)


def test_dice_at_threshold_and_best_dice_hand():
    maps = np.array([[[0.1, 0.2, 0.8, 0.9]]])
    masks = np.array([[[0, 0, 1, 1]]], dtype=np.uint8)
    assert M.dice_at_threshold(maps, masks, 0.2) == 1.0
    assert M.dice_at_threshold(maps, masks, 0.1) == pytest.approx(0.8)  # 3 predicted, 2 hit
    assert M.dice_at_threshold(maps, masks, 0.8) == pytest.approx(2 / 3)
    assert M.best_dice(maps, masks, n_thresholds=4) == (1.0, pytest.approx(0.2))


def test_best_dice_matches_brute_force():
    rng = np.random.default_rng(1)
    masks = rng.random((4, 16, 16)) < 0.1
    maps = rng.random((4, 16, 16)) + masks * 0.5
    d, t = M.best_dice(maps, masks, n_thresholds=50)
    qs = np.unique(np.sort(maps.ravel())[np.round(np.linspace(0, 1, 50) * (maps.size - 1)).astype(int)])
    brute = [M.dice(maps > q, masks) for q in qs]
    assert d == pytest.approx(max(brute))
    assert M.dice_at_threshold(maps, masks, t) == pytest.approx(d)


def test_best_dice_all_empty_masks():
    maps = np.random.default_rng(0).random((2, 4, 4))
    d, t = M.best_dice(maps, np.zeros((2, 4, 4), bool))
    assert d == 1.0 and t == pytest.approx(maps.max())  # predicting nothing is perfect


def test_pixel_auroc_auprc_small_and_valid():
    maps = np.array([[[0.1, 0.4], [0.35, 0.8]]])
    masks = np.array([[[0, 0], [1, 1]]])
    assert M.pixel_auroc(maps, masks) == pytest.approx(0.75)
    assert M.pixel_auprc(maps, masks) == pytest.approx(5 / 6)
    valid = np.array([[[1, 0], [1, 1]]], dtype=bool)  # drop the 0.4 normal pixel
    assert M.pixel_auroc(maps, masks, valid) == pytest.approx(1.0)
    assert M.pixel_auroc(maps[:, None], masks[:, None]) == pytest.approx(0.75)  # (N, 1, H, W) accepted


def test_pixel_metrics_undefined_and_invalid():
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert M.pixel_auroc(maps, np.zeros((2, 4, 4))) is None
    assert M.pixel_auprc(maps, np.zeros((2, 4, 4))) is None
    assert M.pixel_auroc(maps, np.ones((2, 4, 4))) is None
    with pytest.raises(InputError, match="shape"):
        M.pixel_auroc(maps, np.zeros((2, 4, 5)))
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"\(1, 2, 3\)"):
        M.pixel_auroc(bad, np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="no pixels"):
        M.pixel_auroc(maps, np.zeros((2, 4, 4)), valid=np.zeros((2, 4, 4), bool))


def test_pixel_auroc_large_subsampled_deterministic():
    """300x128x128 = 4.9 M pixels: the subsample path is deterministic and close to exact."""
    rng = np.random.default_rng(0)
    masks = np.zeros((300, 128, 128), dtype=bool)
    masks[:, 40:60, 40:70] = True
    maps = rng.random(masks.shape, dtype=np.float32) + masks * np.float32(0.3)
    a = M.pixel_auroc(maps, masks, max_pixels=500_000)
    assert a == M.pixel_auroc(maps, masks, max_pixels=500_000)
    # exact value: P(U + 0.3 > V) for U, V ~ U(0,1) = 1 - 0.7**2 / 2
    assert a == pytest.approx(1 - 0.49 / 2, abs=0.01)

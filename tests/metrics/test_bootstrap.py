"""Bootstrap CIs: coverage of the point, width vs n, patient-level resampling, reproducibility, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaedx.errors import ConfigError, InputError
from vaedx.metrics import measures as M
from vaedx.metrics.bootstrap import (
    BootstrapCI,
    PairedDifference,
    bootstrap_ci,
    bootstrap_paired,
    bootstrap_paired_fn,
    bootstrap_pixel_ci,
)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, rng.normal(size=n) + y


def test_ci_contains_point_and_unpacks():
    y, s = _data(300)
    res = bootstrap_ci(M.auroc, y, s, n_boot=500)
    point, low, high = res
    assert isinstance(res, BootstrapCI) and res.n_boot == 500 and res.n_skipped == 0
    assert point == pytest.approx(M.auroc(y, s))
    assert low < point < high
    assert str(res) == f"{point:.3f} [{low:.2f}, {high:.2f}]"


def test_ci_narrows_with_more_data():
    small = bootstrap_ci(M.auroc, *_data(100), n_boot=300)
    large = bootstrap_ci(M.auroc, *_data(2000), n_boot=300)
    assert large.high - large.low < 0.5 * (small.high - small.low)


def test_seeded_reproducibility():
    y, s = _data(200)
    assert bootstrap_ci(M.auprc, y, s, seed=3) == bootstrap_ci(M.auprc, y, s, seed=3)
    assert bootstrap_ci(M.auprc, y, s, seed=3) != bootstrap_ci(M.auprc, y, s, seed=4)


@pytest.mark.parametrize("metric", [M.auroc, M.auprc])
@pytest.mark.parametrize("grouped", [False, True])
def test_vectorised_path_equals_per_resample_calls(metric, grouped):
    y, s = _data(120, seed=5)
    s = np.round(s, 1)  # ties must be handled the sklearn way too
    groups = np.arange(120) // 4 if grouped else None
    fast = bootstrap_ci(metric, y, s, groups=groups, n_boot=200, seed=1)
    slow = bootstrap_ci(lambda a, b: metric(a, b), y, s, groups=groups, n_boot=200, seed=1)
    assert fast.n_skipped == slow.n_skipped
    np.testing.assert_allclose(tuple(fast), tuple(slow), rtol=1e-12)


def test_patient_level_keeps_rows_together():
    # 40 patients with 3 identical rows each: every resample must hold each patient's rows in multiples of 3
    groups = np.repeat(np.arange(40), 3)
    values = groups.astype(float)
    seen_sizes = []

    def mean_checking_groups(v: np.ndarray) -> float:
        _, counts = np.unique(v, return_counts=True)
        assert np.all(counts % 3 == 0)
        seen_sizes.append(len(v))
        return float(v.mean())

    res = bootstrap_ci(mean_checking_groups, values, groups=groups, n_boot=100)
    assert set(seen_sizes[1:]) == {120}  # 40 patients drawn, 3 rows each
    rows = bootstrap_ci(np.mean, values, n_boot=300)
    patients = bootstrap_ci(np.mean, values, groups=groups, n_boot=300)
    # rows of a patient are perfectly correlated: the honest interval is ~sqrt(3) wider
    assert patients.high - patients.low > 1.4 * (rows.high - rows.low)
    assert res.low < res.point < res.high


def test_groups_accept_strings():
    y, s = _data(60)
    groups = np.array([f"patient-{i // 2}" for i in range(60)])
    res = bootstrap_ci(M.auroc, y, s, groups=groups, n_boot=100)
    assert res.low <= res.point <= res.high


@pytest.mark.filterwarnings("error")  # sklearn's one-class warnings are silenced for resamples
def test_undefined_resamples_are_skipped_and_counted():
    y = np.array([0] * 9 + [1])
    s = np.linspace(0, 1, 10)
    res = bootstrap_ci(M.auroc, y, s, n_boot=400)
    # P(no positive in 10 draws) = 0.9**10 ~ 0.35
    assert 0.25 * 400 < res.n_skipped < 0.45 * 400
    raw = bootstrap_ci(roc_auc_score, y, s, n_boot=50)
    assert raw.n_skipped > 0  # sklearn's NaN (or ValueError in older versions) counts as undefined


def test_undefined_on_full_data_raises():
    with pytest.raises(InputError, match="full data"):
        bootstrap_ci(M.auroc, [0, 0, 0], [0.1, 0.2, 0.3])


def test_bad_arguments():
    y, s = _data(20)
    with pytest.raises(ConfigError):
        bootstrap_ci(M.auroc, y, s, n_boot=0)
    with pytest.raises(ConfigError):
        bootstrap_ci(M.auroc, y, s, alpha=1.5)
    with pytest.raises(InputError):
        bootstrap_ci(M.auroc, y, s[:10])
    with pytest.raises(InputError, match="groups"):
        bootstrap_ci(M.auroc, y, s, groups=np.arange(5))
    with pytest.raises(InputError, match="NaN"):
        bootstrap_ci(M.auroc, y, np.where(y, np.nan, s))


def test_speed_1000_auroc_on_600():
    y, s = _data(600)
    t = time.perf_counter()
    bootstrap_ci(M.auroc, y, s, n_boot=1000)
    assert time.perf_counter() - t < 2.0


# ------------------------------------------------------------------------------------- pixel-level CIs
def _two_images() -> tuple[np.ndarray, np.ndarray]:
    """Image 0: lesion pixel 1, normal 3; image 1: lesion 2, normal 0. Pooled pixel AUROC = 2/4."""
    maps = np.array([[[1.0, 3.0]], [[2.0, 0.0]]])
    masks = np.array([[[1, 0]], [[1, 0]]])
    return maps, masks


def test_pixel_ci_by_hand():
    # resamples {0,0}: AUROC 0, AP 1/2; {1,1}: AUROC 1, AP 1; {0,1}: AUROC 1/2, AP (1/2 + 2/3) / 2 = 7/12
    maps, masks = _two_images()
    roc = bootstrap_pixel_ci("auroc", maps, masks, n_boot=2000)
    assert (roc.point, roc.low, roc.high, roc.n_skipped) == (0.5, 0.0, 1.0, 0)
    ap = bootstrap_pixel_ci("auprc", maps, masks, n_boot=2000)
    assert ap.point == pytest.approx(7 / 12) and (ap.low, ap.high) == (0.5, 1.0)


def test_pixel_ci_one_patient_has_zero_width_and_skips_lesion_free_resamples():
    maps, masks = _two_images()
    same = bootstrap_pixel_ci("auroc", maps, masks, groups=np.array(["p", "p"]), n_boot=100)
    assert (same.low, same.high) == (0.5, 0.5)
    masks[1] = 0  # lesion 1 vs normal 3, 2, 0 -> 1/3; resamples {0,0} -> 0, {1,1} (a quarter) undefined
    res = bootstrap_pixel_ci("auroc", maps, masks, n_boot=2000)
    assert res.point == pytest.approx(1 / 3) and (res.low, res.high) == (0.0, pytest.approx(1 / 3))
    assert 400 < res.n_skipped < 600
    with pytest.raises(InputError, match="undefined on the full data"):
        bootstrap_pixel_ci("auprc", maps, np.zeros_like(masks))
    with pytest.raises(ConfigError, match="metric must be one of"):
        bootstrap_pixel_ci("dice", maps, masks)


@pytest.mark.parametrize("metric", ["auroc", "auprc"])
@pytest.mark.parametrize("grouped", [False, True])
def test_pixel_ci_equals_resampling_images_with_sklearn(metric, grouped):
    # few distinct values -> the histogram path is exact; the same seed draws the same images
    rng = np.random.default_rng(2)
    masks = rng.random((30, 6, 6)) < 0.2
    maps = np.round(rng.normal(size=(30, 6, 6)) + masks, 1)
    valid = rng.random((30, 6, 6)) < 0.9
    groups = np.arange(30) // 3 if grouped else None
    fn = M.pixel_auroc if metric == "auroc" else M.pixel_auprc
    fast = bootstrap_pixel_ci(metric, maps, masks, valid, groups=groups, n_boot=60, seed=4)
    rows = np.arange(30)
    slow = bootstrap_ci(lambda i: fn(maps[i], masks[i], valid[i]), rows, groups=groups, n_boot=60, seed=4)
    assert fast.n_skipped == slow.n_skipped
    np.testing.assert_allclose(tuple(fast), tuple(slow), rtol=1e-12)


def test_pixel_ci_binned_is_close_to_exact():
    rng = np.random.default_rng(3)
    masks = rng.random((40, 16, 16)) < 0.1
    maps = rng.normal(size=(40, 16, 16)) + 1.5 * masks
    exact = bootstrap_pixel_ci("auprc", maps, masks, n_boot=200, n_bins=10**6)
    binned = bootstrap_pixel_ci("auprc", maps, masks, n_boot=200, n_bins=512)
    assert binned.point == exact.point
    np.testing.assert_allclose((binned.low, binned.high), (exact.low, exact.high), atol=0.01)


# ------------------------------------------------------------------------- paired, any metric function
def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p > 0.5) == y))


def test_paired_fn_identical_predictions_differ_by_exactly_zero():
    y, s = _data(150)
    p = 1 / (1 + np.exp(-s))
    for fn in (_accuracy, M.auroc):  # per-resample calls and the batched AUROC path
        res = bootstrap_paired_fn(fn, y, p, p.copy(), n_boot=200)
        assert isinstance(res, PairedDifference)
        assert (res.point, res.low, res.high, res.n_skipped) == (0.0, 0.0, 0.0, 0)
        assert res.p_not_better == 1.0  # A is never better than itself


def test_paired_fn_clearly_better_a_has_interval_above_zero():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    good = np.clip(y + rng.normal(0, 0.2, 200), 0, 1)  # ~99 % right at 0.5
    poor = rng.uniform(0, 1, 200)  # a coin
    res = bootstrap_paired_fn(_accuracy, y, good, poor, n_boot=500)
    assert res.point == pytest.approx(_accuracy(y, good) - _accuracy(y, poor))
    assert 0.3 < res.low < res.point < res.high and res.p_not_better < 0.05
    flipped = bootstrap_paired_fn(_accuracy, y, poor, good, n_boot=500)
    assert flipped.point == -res.point and flipped.high < 0 and flipped.p_not_better == 1.0


@pytest.mark.parametrize("grouped", [False, True])
def test_paired_fn_draws_the_resamples_of_bootstrap_ci(grouped):
    """Same seed, same rows or patients drawn as bootstrap_ci of the difference itself: equal intervals."""
    y, s = _data(90, seed=3)
    s_b = s + np.random.default_rng(4).normal(0, 1, 90)
    groups = np.arange(90) // 3 if grouped else None
    paired = bootstrap_paired_fn(_accuracy, y, s, s_b, groups=groups, n_boot=300, seed=7)
    joint = bootstrap_ci(
        lambda yy, a, b: _accuracy(yy, a) - _accuracy(yy, b), y, s, s_b, groups=groups, n_boot=300, seed=7
    )
    assert tuple(paired) == pytest.approx(tuple(joint), abs=1e-12)
    fast = bootstrap_paired_fn(M.auroc, y, s, s_b, groups=groups, n_boot=300, seed=7)
    assert fast == bootstrap_paired("auroc", y, s, s_b, groups=groups, n_boot=300, seed=7)


def test_paired_fn_by_patient_keeps_rows_together_and_widens_the_interval():
    # 50 patients with 4 identical rows each: each resample holds whole patients, so 4 rows at a time
    y, s = _data(50, seed=8)
    s_b = np.random.default_rng(9).normal(size=50) + 0.3 * y
    y4, a4, b4 = (np.repeat(v, 4) for v in (y, s, s_b))
    groups = np.repeat(np.arange(50), 4)
    sizes = []

    def checked(yy: np.ndarray, p: np.ndarray) -> float:
        _, counts = np.unique(p, return_counts=True)
        assert np.all(counts % 4 == 0)
        sizes.append(len(p))
        return _accuracy(yy, p)

    by_patient = bootstrap_paired_fn(checked, y4, a4, b4, groups=groups, n_boot=300)
    assert set(sizes[2:]) == {200}  # 50 patients drawn, 4 rows each
    by_row = bootstrap_paired_fn(_accuracy, y4, a4, b4, n_boot=300)
    assert by_patient.point == by_row.point
    assert by_patient.high - by_patient.low > 1.5 * (by_row.high - by_row.low)  # ~2x (sqrt 4)


@pytest.mark.filterwarnings("error")
def test_paired_fn_skips_resamples_where_either_side_is_undefined():
    y = np.array([0] * 9 + [1])
    s = np.linspace(0, 1, 10)
    # A's accuracy is always defined, B's AUROC not without a positive: those resamples are skipped
    res = bootstrap_paired_fn(_accuracy, y, s, s, n_boot=400, metric_fn_b=M.auroc)
    alone = bootstrap_ci(M.auroc, y, s, n_boot=400)  # same seed, same draws
    assert res.n_skipped == alone.n_skipped and 0.25 * 400 < res.n_skipped < 0.45 * 400
    assert res.point == pytest.approx(_accuracy(y, s) - 1.0)


def test_paired_fn_scores_b_with_its_own_metric_and_takes_probability_matrices():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 120)
    pa = rng.dirichlet([1, 1, 1], 120)
    pa[np.arange(120), y] += 1.0
    pa /= pa.sum(axis=1, keepdims=True)
    pb = rng.dirichlet([1, 1, 1], 120)

    def macro(yy: np.ndarray, p: np.ndarray) -> float | None:
        return float(roc_auc_score(yy, p, multi_class="ovr")) if len(np.unique(yy)) == 3 else None

    res = bootstrap_paired_fn(macro, y, pa, pb, n_boot=100)
    assert res.point == pytest.approx(macro(y, pa) - macro(y, pb)) and res.low > 0
    at = bootstrap_paired_fn(_accuracy, y[:50] % 2, pa[:50, 0], pa[:50, 0], metric_fn_b=lambda yy, p: 0.25)
    assert at.point == pytest.approx(_accuracy(y[:50] % 2, pa[:50, 0]) - 0.25)


def test_paired_fn_refuses_bad_input():
    y, s = _data(20)
    with pytest.raises(InputError, match="B is undefined"):
        bootstrap_paired_fn(M.auroc, y, s, s, metric_fn_b=lambda yy, p: None)
    with pytest.raises(InputError, match="one row per image"):
        bootstrap_paired_fn(M.auroc, y, s, s[:10])
    with pytest.raises(ConfigError):
        bootstrap_paired_fn(M.auroc, y, s, s, n_boot=0)

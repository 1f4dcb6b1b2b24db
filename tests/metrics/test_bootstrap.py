"""Bootstrap CIs: coverage of the point, width vs n, patient-level resampling, reproducibility, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaedx.errors import ConfigError, InputError
from vaedx.metrics import measures as M
from vaedx.metrics.bootstrap import BootstrapCI, bootstrap_ci, bootstrap_pixel_ci


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

"""Volume metrics on real LGG tumour volumes: components, stacking, Dice, lesion detection, AUPRC, CIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.volume import (
    components,
    label_components,
    lesion_volume_mm3,
    slice_layout,
    stack_volumes,
    volume_metrics,
)
from volume_fixtures import LGG_CASES, flair_map, lgg_volume

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def lgg(lgg_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{case: (FLAIR map, tumour mask)} of five real patients."""
    out = {}
    for case in LGG_CASES:
        flair, mask = lgg_volume(lgg_dir / case)
        out[case] = (flair_map(flair), mask)
    return out


def _truth(lgg: dict) -> dict[str, np.ndarray]:
    return {k: m for k, (_, m) in lgg.items()}


def _central(lgg: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(maps, truth) cropped to the central 128 x 128 pixels, where exact sklearn runs in a second."""
    crop = (slice(None), slice(64, 192), slice(64, 192))
    return {k: f[crop] for k, (f, _) in lgg.items()}, {k: m[crop] for k, (_, m) in lgg.items()}


def test_components_match_scipy_on_real_tumours(lgg):
    for case, (_, mask) in lgg.items():
        comps = components(mask, spacing=(2.0, 1.0, 0.5))
        _, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        assert len(comps) == n, case
        sizes = [c["voxels"] for c in comps]
        assert sizes == sorted(sizes, reverse=True) and sum(sizes) == mask.sum()
        assert comps[0]["volume_mm3"] == pytest.approx(comps[0]["voxels"] * 1.0)
        assert lesion_volume_mm3(mask, (2.0, 1.0, 0.5)) == pytest.approx(mask.sum())
        labels, _ = label_components(mask)
        for c in comps:  # the centroid lies in the box, and the box holds every voxel of the component
            box = tuple(slice(a, b) for a, b in c["bbox"])
            assert (labels[box] == c["label"]).sum() == c["voxels"]
            assert all(a <= x < b for x, (a, b) in zip(c["centroid_voxel"], c["bbox"], strict=True))
    assert [len(components(m)) for _, m in lgg.values()] == [1, 1, 2, 2, 3]


def test_connectivity_changes_the_count_where_tumour_touches_at_a_corner(lgg):
    mask = lgg["TCGA_CS_6186_20000601"][1]
    assert len(components(mask, connectivity=26)) == 1
    assert len(components(mask, connectivity=6)) == 2
    with pytest.raises(ConfigError, match="connectivity"):
        components(mask, connectivity=8)
    with pytest.raises(ConfigError, match="spacing"):
        components(mask, spacing=(1.0, -1.0, 1.0))


def test_truth_against_itself_scores_perfectly(lgg):
    truth = _truth(lgg)
    res = volume_metrics({k: m.astype(np.float32) for k, m in truth.items()}, truth, 0.5, n_boot=200)
    assert res["dice_mean"]["point"] == 1.0 and res["dice_mean"]["low"] == 1.0
    assert res["voxel_auprc"]["point"] == pytest.approx(1.0)
    les = res["lesions"]
    assert (les["n"], les["detected"], les["missed"], les["false_positive_components"]) == (9, 9, 0, 0)
    assert les["sensitivity"]["point"] == 1.0
    assert res["dice_best_threshold_optimistic"]["dice_mean"] == 1.0
    assert [r["lesions"] for r in res["per_volume"]] == [1, 1, 2, 2, 3]


def test_shifted_and_dilated_predictions_give_the_expected_dice(lgg):
    truth = _truth(lgg)
    shifted = {k: np.roll(m, 1, axis=2).astype(np.float32) for k, m in truth.items()}
    dilated = {k: ndimage.binary_dilation(m).astype(np.float32) for k, m in truth.items()}
    for maps in (shifted, dilated):
        res = volume_metrics(maps, truth, 0.5, n_boot=100)
        for row in res["per_volume"]:
            m, p = truth[row["volume"]], maps[row["volume"]] > 0.5
            assert row["dice"] == pytest.approx(2 * (m & p).sum() / (m.sum() + p.sum()))
        assert 0.7 < res["dice_mean"]["point"] < 0.99
        assert res["lesions"]["missed"] == 0 and res["lesions"]["false_positive_components"] == 0


def test_planted_false_positive_and_a_missed_lesion(lgg):
    truth = _truth(lgg)
    maps = {k: m.astype(np.float32) for k, m in truth.items()}
    case = "TCGA_HT_7882_19970125"
    smallest = components(truth[case])[-1]
    box = tuple(slice(a, b) for a, b in smallest["bbox"])
    labels, _ = label_components(truth[case])
    maps[case][box][labels[box] == smallest["label"]] = 0.0  # the smallest lesion is not predicted
    z = int(np.flatnonzero(~truth[case].any(axis=(1, 2)))[0])
    maps[case][z, 2:5, 2:5] = 1.0  # a blob in a slice without tumour
    res = volume_metrics(maps, truth, 0.5, n_boot=100)
    row = next(r for r in res["per_volume"] if r["volume"] == case)
    assert (row["lesions"], row["lesions_detected"], row["false_positive_components"]) == (3, 2, 1)
    assert row["lesion_detected"] == [True, True, False]  # sizes are listed largest first
    assert res["lesions"]["missed"] == 1 and res["lesions"]["sensitivity"]["point"] == pytest.approx(8 / 9)
    assert res["lesions"]["false_positive_components_per_volume"] == pytest.approx(1 / 5)


def test_binned_auprc_agrees_with_exact_sklearn(lgg):
    maps, truth = _central(lgg)
    res = volume_metrics(maps, truth, 0.45, n_boot=100)
    exact = average_precision_score(
        np.concatenate([truth[k].ravel() for k in maps]), np.concatenate([maps[k].ravel() for k in maps])
    )
    assert res["voxel_auprc"]["point"] == pytest.approx(exact, abs=1e-4)
    for row in res["per_volume"]:
        k = row["volume"]
        assert row["auprc"] == pytest.approx(
            average_precision_score(truth[k].ravel(), maps[k].ravel()), abs=1e-4
        )


def test_cis_contain_the_point_are_seeded_and_best_dice_is_an_upper_bound(lgg):
    maps, truth = _central(lgg)
    res = volume_metrics(maps, truth, 0.45, n_boot=300, seed=3)
    for ci in (res["dice_mean"], res["voxel_auprc"], res["lesions"]["sensitivity"]):
        assert ci["low"] <= ci["point"] <= ci["high"] and ci["n_boot"] == 300
    assert res["dice_mean"]["low"] < res["dice_mean"]["high"]
    assert res["dice_mean"]["point"] == pytest.approx(np.mean([r["dice"] for r in res["per_volume"]]))
    again = volume_metrics(maps, truth, 0.45, n_boot=300, seed=3)
    assert again["dice_mean"] == res["dice_mean"] and again["voxel_auprc"] == res["voxel_auprc"]
    best = res["dice_best_threshold_optimistic"]
    for t in (0.35, 0.45, 0.55):
        assert volume_metrics(maps, truth, t, n_boot=1)["dice_mean"]["point"] <= best["dice_mean"] + 0.01
    at_best = volume_metrics(maps, truth, best["threshold"], n_boot=1)["dice_mean"]["point"]
    assert at_best == pytest.approx(best["dice_mean"])


def test_valid_masks_spacing_and_no_threshold(lgg):
    maps, truth = _central(lgg)
    valid = {k: np.broadcast_to(np.arange(len(m))[:, None, None] % 2 == 0, m.shape) for k, m in truth.items()}
    res = volume_metrics(maps, truth, 0.45, spacing=(3.0, 1.0, 1.0), valid=valid, n_boot=50)
    row = res["per_volume"][0]
    k = row["volume"]
    assert row["voxels"] == valid[k].sum() and row["lesion_voxels"] == (truth[k] & valid[k]).sum()
    assert row["lesion_volume_mm3"] == 3.0 * row["lesion_voxels"] and res["spacing_assumed"] is False
    plain = volume_metrics(maps, truth, None, n_boot=50)
    assert plain["dice_mean"] is None and plain["lesions"]["detected"] is None
    assert "no pixel threshold" in plain["undefined"]["dice_mean"] and plain["voxel_auprc"] is not None
    with pytest.raises(ConfigError, match="no spacing for volume"):
        volume_metrics(maps, truth, 0.5, spacing={k: (1, 1, 1)}, n_boot=10)


def test_bad_volume_inputs_are_refused(lgg):
    maps, truth = {k: f for k, (f, _) in lgg.items()}, _truth(lgg)
    k = next(iter(maps))
    with pytest.raises(InputError, match="different volumes"):
        volume_metrics(maps, {k: truth[k]}, 0.5)
    bad = dict(maps)
    bad[k] = bad[k].copy()
    bad[k][0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        volume_metrics(bad, truth, 0.5)
    with pytest.raises(InputError, match="shape"):
        volume_metrics({k: maps[k][1:]}, {k: truth[k]}, 0.5)


def test_stack_volumes_orders_slices_and_refuses_mixups(lgg):
    case = "TCGA_HT_7874_19950902"
    mask = lgg[case][1]
    z = len(mask)
    order = np.random.default_rng(0).permutation(2 * z)  # two volumes' rows, shuffled together
    ids = np.array(["a"] * z + ["b"] * z)[order]
    slices = np.r_[np.arange(z), np.arange(z)][order]
    rows = np.concatenate([mask, mask[::-1]])[order]
    stacked = stack_volumes(ids.tolist(), [str(s) for s in slices], rows)
    assert np.array_equal(stacked["a"], mask) and np.array_equal(stacked["b"], mask[::-1])

    keep = slices != 5  # slice 5 of both volumes not scored: an empty plane keeps 4 and 6 apart
    gapped = stack_volumes(ids[keep].tolist(), slices[keep].tolist(), rows[keep])
    assert gapped["a"].shape == mask.shape and not gapped["a"][5].any()
    lay = slice_layout(ids[keep].tolist(), slices[keep].tolist())["a"]
    assert lay.n_gaps == 1 and not lay.present[5] and lay.present.sum() == z - 1

    with pytest.raises(InputError, match="slice 3 appears more than once"):
        stack_volumes(["a", "a"], [3, "3"], mask[:2])
    with pytest.raises(InputError, match="not a non-negative integer"):
        stack_volumes(["a", "a"], ["1", "1.5"], mask[:2])
    with pytest.raises(InputError, match="not a non-negative integer"):
        stack_volumes(["a"], [""], mask[:1])
    with pytest.raises(InputError, match="no volume id"):
        stack_volumes(["a", ""], [0, 1], mask[:2])
    with pytest.raises(InputError, match="axis 0 and axis 2"):
        slice_layout(["a", "a"], [0, 1], axes=["0", "2"])
    with pytest.raises(InputError, match="N = 3 rows"):
        stack_volumes(["a", "a", "a"], [0, 1, 2], mask[:2])

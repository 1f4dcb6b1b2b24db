"""Post-processing on hand-made images: component removal, top-k scores, foreground masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vaedx.anomaly.postprocess import (
    apply_mask,
    foreground_mask,
    gaussian_filter,
    image_score,
    median_filter,
    remove_small_components,
)
from vaedx.errors import ConfigError, InputError

BLOBS = np.array(
    [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 1, 0, 1, 1],
        [0, 0, 1, 1, 1],
    ],
    dtype=bool,
)


def test_remove_small_components_hand_image():
    # 8-connected: block (4 px), lone (1,4), and (3,1) joined diagonally to the 5-px blob -> 6 px
    out = remove_small_components(BLOBS, min_size=2)
    expected = BLOBS.copy()
    expected[1, 4] = False
    np.testing.assert_array_equal(out, expected)
    # 4-connected: (3,1) is alone too
    expected[3, 1] = False
    np.testing.assert_array_equal(remove_small_components(BLOBS, min_size=2, connectivity=1), expected)
    # only the 6-px component survives min_size=5 (8-connected)
    assert remove_small_components(BLOBS, min_size=5).sum() == 6


def test_remove_small_components_is_per_image():
    single = np.zeros_like(BLOBS)
    single[0, 0] = True  # would join image 0's block if components crossed the batch axis
    out = remove_small_components(np.stack([BLOBS, single]), min_size=2)
    assert out[0, 0, 0] and not out[1].any()


def test_image_score_by_hand():
    maps = np.arange(10, dtype=float).reshape(1, 2, 5)  # values 0..9
    assert image_score(maps, "topk", topk_percent=20) == pytest.approx([8.5])  # k = 2: (9 + 8) / 2
    assert image_score(maps, "topk", topk_percent=0.1) == pytest.approx([9.0])  # at least one pixel
    assert image_score(maps, "mean") == pytest.approx([4.5])
    assert image_score(maps, "max") == pytest.approx([9.0])
    valid = np.ones((1, 2, 5), dtype=bool)
    valid[0, 1, 4] = False  # exclude the 9: 9 valid pixels, k = ceil(1.8) = 2 -> (8 + 7) / 2
    assert image_score(maps, "topk", topk_percent=20, valid=valid) == pytest.approx([7.5])
    assert image_score(maps, "max", valid=valid) == pytest.approx([8.0])
    assert image_score(maps, "mean", valid=valid) == pytest.approx([4.0])


def test_image_score_batch_and_channels():
    rng = np.random.default_rng(0)
    maps = rng.random((4, 1, 8, 8))
    valid = rng.random((4, 8, 8)) < 0.5
    got = image_score(maps, "topk", topk_percent=10, valid=valid)
    for i in range(4):
        v = np.sort(maps[i, 0][valid[i]])[::-1]
        k = int(np.ceil(0.1 * v.size))
        assert got[i] == pytest.approx(v[:k].mean())


def test_image_score_errors():
    maps = np.zeros((3, 4, 4))
    valid = np.ones((3, 4, 4), dtype=bool)
    valid[1] = False
    with pytest.raises(InputError, match="image 1 has no valid pixels"):
        image_score(maps, "mean", valid=valid)
    with pytest.raises(ConfigError):
        image_score(maps, "median")
    with pytest.raises(ConfigError):
        image_score(maps, "topk", topk_percent=0)
    maps[2, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        image_score(maps)


def _disk(size: int = 64, r: float = 20.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r**2


def test_foreground_mask_on_disk_with_hole():
    disk = _disk()
    img = disk * 0.8
    img[_disk(r=5.0)] = 0.0  # dark hole inside the body (e.g. a ventricle)
    fg = foreground_mask(img[None], threshold=0.1)
    np.testing.assert_array_equal(fg[0], disk)  # hole filled, background excluded
    eroded = foreground_mask(img[None, None], threshold=0.1, erosion_iters=2)  # (N, C, H, W) input
    np.testing.assert_array_equal(eroded[0], ndimage.binary_erosion(disk, iterations=2))
    assert eroded.sum() < fg.sum()


def test_foreground_mask_relative_absolute_and_constant():
    disk = _disk()
    imgs = np.stack([disk * 100.0 + 5.0, np.full(disk.shape, 3.0)])
    fg = foreground_mask(imgs, threshold=0.5)
    np.testing.assert_array_equal(fg[0], disk)
    assert not fg[1].any()  # constant image: no foreground
    assert foreground_mask(imgs, threshold=2.0, relative=False)[1].all()


def test_apply_mask_and_filters():
    maps = np.zeros((2, 9, 9))
    maps[0, 4, 4] = 10.0  # an isolated hot pixel
    assert not median_filter(maps, 3).any()
    smooth = gaussian_filter(maps, 1.0)
    assert smooth[0].sum() == pytest.approx(10.0) and not smooth[1].any()  # nothing leaks across images
    fg = np.zeros((2, 9, 9), dtype=bool)
    fg[:, 3:6, 3:6] = True
    out = apply_mask(smooth, fg)
    assert out[0, 4, 4] == smooth[0, 4, 4] and out[0, 0, 0] == 0.0
    assert apply_mask(maps[:, None], fg, fill=-1.0)[0, 0, 0, 0] == -1.0
    with pytest.raises(InputError):
        apply_mask(maps, fg[:, :5])

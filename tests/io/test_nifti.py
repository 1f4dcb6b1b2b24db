"""NIfTI: canonical orientation, slicing along each axis, foreground filtering, spacing, bad shapes."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_nifti

SHAPE = (4, 5, 6)
FLIP_X = np.diag([-2.0, 3.0, 4.0, 1.0])  # x runs right-to-left (LAS storage): not canonical RAS


@pytest.fixture
def flipped(build):
    data = np.zeros(SHAPE, np.float32)
    data[0, 1, 2] = 100.0  # stored first along x, i.e. the rightmost voxel: canonical x index 3
    return build.nifti("flip.nii", data, FLIP_X)


def test_marked_voxel_lands_where_ras_puts_it(flipped):
    by_axis = {axis: read_nifti(flipped, axis=axis) for axis in (0, 1, 2)}
    expected = {0: (3, (1, 2)), 1: (1, (3, 2)), 2: (2, (3, 1))}  # slice index, (row, col) in that slice
    for axis, (k, rc) in expected.items():
        images = by_axis[axis]
        hits = [i.meta["slice_index"] for i in images if i.array.max() > 0]
        assert hits == [k]
        assert images[k].array[0][rc] == 100.0 and images[k].array.sum() == 100.0
        assert images[k].meta["orientation"] == "RAS"


@pytest.mark.parametrize(
    "axis,count,size,spacing,thickness",
    [(0, 4, (5, 6), (3.0, 4.0), 2.0), (1, 5, (4, 6), (2.0, 4.0), 3.0), (2, 6, (4, 5), (2.0, 3.0), 4.0)],
)
def test_slice_shapes_counts_and_spacing(flipped, axis, count, size, spacing, thickness):
    images = read_nifti(flipped, axis=axis)
    assert len(images) == count
    for img in images:
        assert img.array.shape == (1, *size) and img.array.dtype == np.float32
        assert img.meta["size"] == size and img.meta["axis"] == axis and img.meta["n_slices_total"] == count
        assert img.meta["spacing"] == pytest.approx(spacing) and img.meta["slice_thickness"] == thickness
    assert [i.meta["slice_index"] for i in images] == list(range(count))


def test_min_foreground_skips_empty_and_faint_slices(build):
    data = np.zeros(SHAPE, np.float32)
    data[:, :, 1] = 100.0  # full slice
    data[:1, :, 3] = 100.0  # 25 % of slice 3
    data[:, :, 4] = 10.0  # faint: 10 % of the volume range
    path = build.nifti("fg.nii.gz", data)
    assert len(read_nifti(path)) == 6  # defaults keep everything
    kept = read_nifti(path, min_foreground=0.01)
    assert [i.meta["slice_index"] for i in kept] == [1, 3, 4]
    assert all(i.meta["n_slices_total"] == 6 for i in kept)
    kept = read_nifti(path, min_foreground=0.5, foreground_threshold=0.2)
    assert [i.meta["slice_index"] for i in kept] == [1]


def test_scale_slope_and_intercept_are_applied(build):
    data = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    images = read_nifti(build.nifti("s.nii", data, slope=2.0, inter=10.0))
    np.testing.assert_array_equal(images[1].array[0], data[:, :, 1] * 2 + 10)


def test_2d_nifti_gives_one_slice_whatever_the_axis(build):
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = build.nifti("p.nii.gz", plane)
    for axis in (0, 2):
        [img] = read_nifti(path, axis=axis)
        np.testing.assert_array_equal(img.array[0], plane)
        assert img.meta["axis"] == 2 and img.meta["n_slices_total"] == 1


def test_4d_is_refused_with_its_shape_but_trailing_1_is_fine(build):
    with pytest.raises(InputError, match=r"4-D NIfTI of shape \(3, 3, 3, 2\)") as e:
        read_nifti(build.nifti("t.nii", np.zeros((3, 3, 3, 2), np.float32)))
    assert "t.nii" in str(e.value)
    assert len(read_nifti(build.nifti("t1.nii", np.zeros((3, 3, 3, 1), np.float32)))) == 3


def test_truncated_nii_gz(build):
    path = build.nifti("v.nii.gz", np.random.default_rng(0).random((16, 16, 16), dtype=np.float32))
    raw = gzip.decompress(path.read_bytes())
    cut = build.raw("cut.nii.gz", gzip.compress(raw)[:2000])
    with pytest.raises(InputError, match="truncated or corrupt") as e:
        read_nifti(cut)
    assert "cut.nii.gz" in str(e.value)


@pytest.mark.parametrize("kw", [{"axis": 3}, {"min_foreground": 1.5}, {"foreground_threshold": -0.1}])
def test_bad_options(flipped, kw):
    with pytest.raises(ConfigError):
        read_nifti(flipped, **kw)

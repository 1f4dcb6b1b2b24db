"""NIfTI: display-oriented planes (those of the volume route), each axis, foreground, spacing, bad shapes."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_nifti, read_nifti_volume
from vaedx.io.nifti import read_nifti_plane
from vaedx.io.volume import model_plane

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"

SHAPE = (4, 5, 6)
FLIP_X = np.diag([-2.0, 3.0, 4.0, 1.0])  # x runs right-to-left (LAS storage): not canonical RAS


@pytest.fixture
def flipped(build):
    data = np.zeros(SHAPE, np.float32)
    data[0, 1, 2] = 100.0  # stored first along x, i.e. the rightmost voxel: canonical x index 3
    return build.nifti("flip.nii", data, FLIP_X)


def test_marked_voxel_lands_where_the_display_planes_put_it(flipped):
    by_axis = {axis: read_nifti(flipped, axis=axis) for axis in (0, 1, 2)}
    # stored first along x (LAS storage) = the patient's rightmost voxel: LPS x index 0, column 0 of an
    # axial plane; y index 1 of 5 anterior-to-posterior = LPS 3; z index 2 of 6 = row 3 counted from the top
    expected = {0: (0, (3, 3), "sagittal"), 1: (3, (3, 0), "coronal"), 2: (2, (3, 0), "axial")}
    for axis, (k, rc, plane) in expected.items():
        images = by_axis[axis]
        hits = [i.meta["slice_index"] for i in images if i.array.max() > 0]
        assert hits == [k]
        assert images[k].array[0][rc] == 100.0 and images[k].array.sum() == 100.0
        assert images[k].meta["orientation"] == "LPS" and images[k].meta["plane"] == plane


@pytest.mark.parametrize(
    "axis,count,size,spacing,thickness",
    [(0, 4, (6, 5), (4.0, 3.0), 2.0), (1, 5, (6, 4), (4.0, 2.0), 3.0), (2, 6, (5, 4), (3.0, 2.0), 4.0)],
)
def test_slice_shapes_counts_and_spacing(flipped, axis, count, size, spacing, thickness):
    images = read_nifti(flipped, axis=axis)
    assert len(images) == count
    for img in images:
        assert img.array.shape == (1, *size) and img.array.dtype == np.float32
        assert img.meta["size"] == size and img.meta["axis"] == axis and img.meta["n_slices_total"] == count
        assert img.meta["spacing"] == pytest.approx(spacing) and img.meta["slice_thickness"] == thickness
    assert [i.meta["slice_index"] for i in images] == list(range(count))


@pytest.mark.parametrize("axis,plane", [(2, 0), (1, 1), (0, 2)])
def test_slices_equal_the_volume_route_on_a_real_volume(axis, plane):
    path = NIBABEL_DATA / "anatomical.nii"  # LAS storage: every plane needs a turn
    lps = read_nifti_volume(path).reoriented("LPS").data
    images = read_nifti(path, axis=axis)
    assert len(images) == lps.shape[plane]
    for img in images:
        np.testing.assert_array_equal(img.array[0], model_plane(lps, plane, img.meta["slice_index"]))


def test_4d_volume_index_picks_one_volume():
    path = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(InputError, match="holds 2 volumes"):
        read_nifti(path)
    second = read_nifti(path, volume_index=1)
    lps = read_nifti_volume(path, volume_index=1).reoriented("LPS").data
    assert len(second) == 24 and second[0].meta["spacing"] == pytest.approx((2.0, 2.0))
    np.testing.assert_array_equal(second[12].array[0], lps[12])


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
    np.testing.assert_array_equal(images[1].array[0], (data[:, :, 1] * 2 + 10).T[::-1, ::-1])


def test_2d_nifti_gives_one_slice_whatever_the_axis(build):
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)  # x, y with an identity (RAS) affine
    path = build.nifti("p.nii.gz", plane)
    display = plane.T[::-1, ::-1]  # rows anterior first, columns the patient's right first
    for axis in (0, 2):
        [img] = read_nifti(path, axis=axis)
        np.testing.assert_array_equal(img.array[0], display)
        assert img.meta["axis"] == 2 and img.meta["n_slices_total"] == 1
    np.testing.assert_array_equal(read_nifti_plane(path), display)  # masks turn like their images
    with pytest.raises(InputError, match="expected a 2-D NIfTI"):
        read_nifti_plane(NIBABEL_DATA / "anatomical.nii")


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

"""NIfTI volumes on real files shipped with nibabel (and nilearn's MNI152 template when installed)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.io import Volume, read_nifti_volume

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
ANAT = NIB_DATA / "anatomical.nii"  # 33x41x25, stored LAS: reading must flip x
EX4D = NIB_DATA / "example4d.nii.gz"  # 128x96x24 with 2 volumes


def _one_line(e: pytest.ExceptionInfo, path: Path) -> str:
    text = str(e.value)
    assert "\n" not in text and str(path) in text
    return text


@pytest.fixture(scope="module", autouse=True)
def _nibabel_data() -> None:
    if not ANAT.exists():
        pytest.fail(f"nibabel's test data is not installed ({NIB_DATA})")


def test_reads_las_file_as_ras_with_zyx_axes() -> None:
    vol = read_nifti_volume(ANAT)
    assert vol.shape == (25, 41, 33) and vol.data.dtype == np.float32
    assert vol.orientation == "RAS" and vol.meta["original_orientation"] == "LAS"
    assert vol.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert vol.meta["source"] == "anatomical.nii" and vol.meta["spacing_assumed"] is False


def test_every_voxel_keeps_its_place_in_the_world() -> None:
    """data[k, j, i] sits at affine @ (i, j, k): the same world point holds the same value in the file."""
    vol = read_nifti_volume(ANAT)
    orig = nib.load(ANAT)
    stored = orig.get_fdata()
    rng = np.random.default_rng(0)
    for k, j, i in rng.integers(0, vol.shape, size=(50, 3)):
        world = vol.affine @ np.array([i, j, k, 1.0])
        oi, oj, ok = np.rint(np.linalg.inv(orig.affine) @ world)[:3].astype(int)
        assert vol.data[k, j, i] == stored[oi, oj, ok]


@pytest.mark.parametrize(("path", "index"), [(ANAT, None), (EX4D, 1)])
def test_to_original_round_trip(path: Path, index: int | None, tmp_path: Path) -> None:
    vol = read_nifti_volume(path, volume_index=index)
    back = vol.to_original(vol.data)
    orig = nib.load(path)
    expected = orig.get_fdata() if index is None else orig.get_fdata()[..., index]
    assert back.shape == expected.shape
    assert np.array_equal(back.affine, orig.affine)
    assert np.allclose(back.get_fdata(), expected)
    nib.save(back, tmp_path / "back.nii.gz")  # a writable image
    assert np.array_equal(nib.load(tmp_path / "back.nii.gz").affine, orig.affine)


def test_to_original_keeps_masks_integer_and_checks_the_shape() -> None:
    vol = read_nifti_volume(ANAT)
    mask = vol.data > vol.data.mean()
    back = vol.to_original(mask)
    assert back.get_data_dtype() == np.uint8
    assert back.get_fdata().sum() == mask.sum()
    with pytest.raises(ConfigError, match="does not match"):
        vol.to_original(mask[:-1])


def test_four_d_needs_a_volume_index() -> None:
    with pytest.raises(InputError) as e:
        read_nifti_volume(EX4D)
    assert "2 volumes" in _one_line(e, EX4D) and "volume_index" in str(e.value)
    vol = read_nifti_volume(EX4D, volume_index=0)
    assert vol.shape == (24, 96, 128)
    assert vol.meta["n_volumes"] == 2 and vol.meta["volume_index"] == 0
    assert vol.spacing == pytest.approx((2.2, 2.0, 2.0), rel=1e-5)
    with pytest.raises(ConfigError, match="out of range"):
        read_nifti_volume(EX4D, volume_index=2)


def test_functional_volumes_differ_by_index() -> None:
    path = NIB_DATA / "functional.nii"
    a, b = read_nifti_volume(path, volume_index=0), read_nifti_volume(path, volume_index=19)
    assert a.shape == b.shape == (3, 21, 17)
    assert not np.array_equal(a.data, b.data)
    assert np.array_equal(a.affine, b.affine)


def test_truncated_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "cut.nii"
    bad.write_bytes(ANAT.read_bytes()[:2000])
    with pytest.raises(InputError) as e:
        read_nifti_volume(bad)
    assert "truncated" in _one_line(e, bad)


def test_cifti_is_refused_in_one_line() -> None:
    path = NIB_DATA / "row_major.dconn.nii"
    with pytest.raises(InputError) as e:
        read_nifti_volume(path)
    assert "not a NIfTI" in _one_line(e, path)


def test_gzip_copy_reads_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "anat.nii.gz"
    nib.save(nib.load(ANAT), copy)
    a, b = read_nifti_volume(ANAT), read_nifti_volume(copy)
    assert np.array_equal(a.data, b.data) and np.allclose(a.affine, b.affine)


def test_canonical_of_a_reoriented_volume_keeps_the_way_back() -> None:
    """A volume in another voxel order (here LAS, built from the RAS one) comes back to the same RAS data."""
    ras = read_nifti_volume(ANAT)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = ras.shape[2] - 1
    las = Volume(data=ras.data[:, :, ::-1].copy(), affine=ras.affine @ flip, spacing=ras.spacing)
    assert las.orientation is None and las.canonical().orientation == "RAS"
    canon = las.canonical()
    assert np.array_equal(canon.data, ras.data) and np.allclose(canon.affine, ras.affine)
    assert np.array_equal(canon.to_original(canon.data).get_fdata().transpose(2, 1, 0), las.data)


def test_mni152_template_if_nilearn_is_installed() -> None:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        pytest.skip("nilearn is not installed (optional)")
    path = Path(spec.origin).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    vol = read_nifti_volume(path)
    assert vol.shape == (189, 233, 197) and vol.orientation == "RAS"
    assert vol.spacing == pytest.approx((1.0, 1.0, 1.0))
    # MNI origin: the anterior commissure is at world (0, 0, 0) and lies inside the brain
    i, j, k = np.rint(np.linalg.inv(vol.affine) @ np.array([0.0, 0.0, 0.0, 1.0]))[:3].astype(int)
    assert vol.data[k, j, i] > 0.2 * vol.data.max()
    assert vol.data[0, 0, 0] == 0  # a corner is background


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_nifti_volume(tmp_path / "nope.nii")
    shutil.copy(ANAT, tmp_path / "a.nii")
    assert read_nifti_volume(tmp_path / "a.nii").path == tmp_path / "a.nii"


def test_reoriented_to_lps_keeps_world_positions_and_the_way_back() -> None:
    from vaedx.io.volume import model_plane

    ras = read_nifti_volume(ANAT)
    lps = ras.reoriented("LPS")
    assert lps.orientation == "LPS" and np.array_equal(lps.data, ras.data[:, ::-1, ::-1])
    rng = np.random.default_rng(1)
    for k, j, i in rng.integers(0, lps.shape, size=(30, 3)):
        world = lps.affine @ np.array([i, j, k, 1.0])
        ri, rj, rk = np.rint(np.linalg.inv(ras.affine) @ world)[:3].astype(int)
        assert lps.data[k, j, i] == ras.data[rk, rj, ri]
    back = lps.to_original(lps.data)
    orig = nib.load(ANAT)
    assert np.array_equal(back.affine, orig.affine) and np.allclose(back.get_fdata(), orig.get_fdata())
    # axial planes as a radiologist sees them: row 0 anterior, column 0 the patient's right
    plane = model_plane(lps.data, 0, 10)
    assert np.array_equal(plane, ras.data[10, ::-1, ::-1])
    assert np.array_equal(model_plane(lps.data, 1, 5), lps.data[::-1, 5, :])
    with pytest.raises(ConfigError, match="axis must be"):
        model_plane(lps.data, 3, 0)


def test_a_volume_of_unknown_orientation_is_not_reoriented(lgg_dir: Path) -> None:
    from vaedx.io import read_lgg_patient

    vol, _ = read_lgg_patient(next(p for p in sorted(lgg_dir.iterdir()) if p.is_dir()))
    assert vol.orientation is None and vol.reoriented("LPS") is vol

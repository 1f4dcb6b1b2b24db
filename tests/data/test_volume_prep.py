"""Whole volumes as model inputs and back, on nibabel's bundled NIfTI files and the real LGG patients."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.volume_prep import prepare_volume
from vaedx.errors import ConfigError
from vaedx.io import read_lgg_patient, read_nifti_volume

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
ANATOMICAL = NIBABEL_DATA / "anatomical.nii"  # 33x41x25, 2 mm, LAS storage
EXAMPLE4D = NIBABEL_DATA / "example4d.nii.gz"  # 128x96x24x2, 2 x 2 x 2.2 mm
LGG_CASE = "TCGA_CS_4941_19960909"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.parametrize(
    "path,index,cfg",
    [
        (ANATOMICAL, None, PreprocessConfig(size=64, normalize_scope="volume")),
        (EXAMPLE4D, 1, PreprocessConfig(size=(48, 64), target_spacing=(3.0, 3.0), normalize_scope="volume")),
    ],
)
def test_to_original_has_the_files_shape_and_affine(path: Path, index: int | None, cfg) -> None:
    original = nib.load(path)
    prepared = prepare_volume(read_nifti_volume(path, volume_index=index), cfg)
    assert prepared.slices.shape[1:] == (1, *cfg.size) and prepared.slices.dtype == np.float32
    back = prepared.to_original(prepared.slices[:, 0])
    assert back.shape == original.shape[:3] and np.array_equal(back.affine, original.affine)
    truth = prepared.to_original(np.ones(prepared.slices[:, 0].shape, np.uint8), is_mask=True)
    assert truth.get_data_dtype() == np.uint8 and np.asarray(truth.dataobj).all()


def test_planted_blob_lands_in_the_same_voxels(tmp_path: Path) -> None:
    img = nib.load(ANATOMICAL)
    data = np.asarray(img.dataobj, dtype=np.float32)
    blob = np.zeros(data.shape, bool)
    blob[8:14, 20:27, 10:15] = True  # in the file's own voxel order
    data[blob] = data.max() * 10
    planted = tmp_path / "planted.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), planted)
    vol = read_nifti_volume(planted)
    exact = prepare_volume(vol, PreprocessConfig(normalize="minmax", normalize_scope="volume"))
    hot = exact.to_original((exact.slices[:, 0] >= 1.0).astype(np.uint8), is_mask=True)
    np.testing.assert_array_equal(np.asarray(hot.dataobj).astype(bool), blob)  # no resizing: voxel exact
    resized = prepare_volume(vol, PreprocessConfig(normalize="minmax", normalize_scope="volume", size=64))
    hot = resized.to_original((resized.slices[:, 0] > 0.5).astype(np.uint8), is_mask=True)
    assert _dice(np.asarray(hot.dataobj).astype(bool), blob) > 0.85
    truth = vol.data > data.max() / 2  # the same blob laid out like vol.data, carried as ground truth
    with_mask = prepare_volume(vol, PreprocessConfig(size=64), truth)
    back = with_mask.to_original(with_mask.masks, is_mask=True)
    assert _dice(np.asarray(back.dataobj).astype(bool), blob) > 0.85


def test_volume_scope_differs_from_slice_scope_on_a_tumour_slice(lgg_dir: Path) -> None:
    vol, mask = read_lgg_patient(lgg_dir / LGG_CASE)
    k = int(mask.reshape(len(mask), -1).sum(axis=1).argmax())  # the slice with the largest lesion
    per_slice = prepare_volume(vol, PreprocessConfig(channels=[1]), mask)
    per_volume = prepare_volume(vol, PreprocessConfig(channels=[1], normalize_scope="volume"), mask)
    assert per_slice.value_range is None and per_volume.value_range is not None
    lesion = mask[k].astype(bool)
    a, b = per_slice.slices[k, 0], per_volume.slices[k, 0]
    assert np.abs(a - b).max() > 0.05
    assert abs(float(a[lesion].mean()) - float(b[lesion].mean())) > 0.01
    lo, hi = per_volume.value_range
    expected = np.clip((vol.data[k] - lo) / (hi - lo), 0, 1)  # one range for every slice of the patient
    np.testing.assert_allclose(b, expected, atol=1e-6)
    np.testing.assert_array_equal(per_volume.masks, mask)


def test_target_spacing_sets_the_grid(lgg_dir: Path) -> None:
    vol = read_nifti_volume(ANATOMICAL)  # 2 mm voxels; LPS axial planes are 41 x 33
    prepared = prepare_volume(vol, PreprocessConfig(target_spacing=(1.0, 3.0)))
    assert prepared.grid == (82, 22) and prepared.slices.shape == (25, 1, 82, 22)
    assert prepared.to_source(prepared.slices[:, 0]).shape == prepared.source.shape
    lgg, _ = read_lgg_patient(lgg_dir / LGG_CASE)  # spacing assumed: resampling would invent millimetres
    with pytest.raises(ConfigError, match="no known spacing"):
        prepare_volume(lgg, PreprocessConfig(target_spacing=(1.0, 1.0)))


def test_a_multi_channel_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="train on one channel"):
        prepare_volume(read_nifti_volume(ANATOMICAL), PreprocessConfig(channels=[0, 1, 2]))
    single = prepare_volume(read_nifti_volume(ANATOMICAL), PreprocessConfig(channels=[1]))
    assert "channel 1" in single.notes["channel_mapped"]

"""Brain extraction on a real LGG patient (``data_dir`` and a missing deepbet fail, not skip, under CI)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from vaedx.data import brain
from vaedx.data.brain import METHODS, brain_mask
from vaedx.errors import ConfigError, InputError
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.io.volume import Volume

# Frontal tumour that reaches the orbit roof: a mask that hugs the skull too tightly cuts it.
CASE = "TCGA_CS_4941_19960909"


def _need_deepbet() -> None:
    if importlib.util.find_spec("deepbet") is None:
        msg = "deepbet is not installed (pip install 'vaedx[brain]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def patient(lgg_dir: Path) -> tuple[Volume, np.ndarray]:
    return read_lgg_patient(lgg_dir / CASE, sequence="flair")


@pytest.fixture(scope="module")
def flair_mask(patient: tuple[Volume, np.ndarray]) -> np.ndarray:
    _need_deepbet()
    return brain_mask(patient[0], "deepbet", sequence_hint="flair")


def _head(data: np.ndarray) -> np.ndarray:
    fg = ndimage.binary_opening(data > 0.05 * np.percentile(data, 99), iterations=2)
    return np.stack([ndimage.binary_fill_holes(s) for s in fg])


def test_mask_is_boolean_like_the_volume_and_keeps_the_tumour(
    patient: tuple[Volume, np.ndarray], flair_mask: np.ndarray
) -> None:
    vol, truth = patient
    assert flair_mask.shape == vol.shape and flair_mask.dtype == np.bool_
    tumour = truth > 0
    assert (flair_mask & tumour).sum() / tumour.sum() > 0.98


def test_mask_removes_scalp_and_skull(patient: tuple[Volume, np.ndarray], flair_mask: np.ndarray) -> None:
    head = _head(patient[0].data)
    assert flair_mask.sum() < 0.7 * head.sum()  # measured 0.47: skull, scalp, face are half the head
    assert (flair_mask & ~head).sum() < 0.01 * flair_mask.sum()  # no mask in the air
    in_plane = ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0])[:, None, None]
    rim = head & ~ndimage.binary_erosion(head, in_plane, iterations=4)  # scalp: 4 voxels in from the air
    assert (flair_mask & rim).sum() < 0.05 * rim.sum()


def test_none_keeps_every_voxel(patient: tuple[Volume, np.ndarray]) -> None:
    assert "none" in METHODS
    mask = brain_mask(patient[0], "none")
    assert mask.shape == patient[0].shape and mask.all()


def test_unknown_method_is_a_one_line_config_error(patient: tuple[Volume, np.ndarray]) -> None:
    with pytest.raises(ConfigError) as e:
        brain_mask(patient[0], "bet2")
    text = str(e.value)
    assert "\n" not in text and "'bet2'" in text and "deepbet" in text


def test_missing_library_is_a_one_line_install_hint(
    patient: tuple[Volume, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    brain._deepbet.cache_clear()
    monkeypatch.setitem(sys.modules, "deepbet", None)  # import deepbet now raises ImportError
    try:
        with pytest.raises(ConfigError) as e:
            brain_mask(patient[0], "deepbet")
    finally:
        brain._deepbet.cache_clear()
    text = str(e.value)
    assert "\n" not in text and "pip install 'vaedx[brain]'" in text


def test_blank_volume_is_a_one_line_error_naming_the_case(patient: tuple[Volume, np.ndarray]) -> None:
    vol = patient[0]
    blank = Volume(np.zeros_like(vol.data), vol.affine, vol.spacing, path=vol.path, meta=dict(vol.meta))
    with pytest.raises(InputError) as e:
        brain_mask(blank, "deepbet")
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{CASE}:") and str(vol.path.parent) not in text

"""Tiny synthetic data sets built in tmp_path, one per kind of source the data layer understands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synth_data import gradient, write_nifti, write_png


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """normal/ (3 images) and pneumonia/ (2 images), 16x16 grey PNGs."""
    root = tmp_path / "classes"
    for i in range(3):
        write_png(root / "normal" / f"n{i}.png", gradient(seed=i))
    for i in range(2):
        write_png(root / "pneumonia" / f"p{i}.png", gradient(seed=10 + i))
    return root


@pytest.fixture
def mask_folder(tmp_path: Path) -> Path:
    """Two patients' folders of 32x32 RGB slices, X_mask.png beside X.png; slice 1 of each has a lesion."""
    root = tmp_path / "lesions"
    for p in ("patA", "patB"):
        for s in (1, 2):
            rgb = np.stack([gradient(32, 32, seed=s + k) for k in range(3)], axis=-1)
            write_png(root / p / f"{p}_{s}.png", rgb)
            mask = np.zeros((32, 32), np.uint8)
            if s == 1:
                mask[8:20, 8:20] = 255
            write_png(root / p / f"{p}_{s}_mask.png", mask)
    return root


@pytest.fixture
def small_npz(tmp_path: Path) -> Path:
    """MedMNIST-style archive: train 6, val 2, test 3 images of 8x8, labels (N, 1) uint8 as MedMNIST has."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    path = tmp_path / "tinymnist.npz"
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def nifti_volume(tmp_path: Path) -> Path:
    """12x10x5 volume; slice k along axis 2 holds the value k+1 in a block, slices 0 and 4 are empty."""
    vol = np.zeros((12, 10, 5), np.float32)
    for k in (1, 2, 3):
        vol[2:10, 2:8, k] = k + 1
    return write_nifti(tmp_path / "vols" / "case7.nii.gz", vol)

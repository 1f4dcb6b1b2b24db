"""A small VAE trained on real LGG FLAIR volumes prepared per volume, for the volume-detection tests.

Built from a handful of patients at 32 px and one epoch, so it takes a few seconds: enough for a bright
planted blob to stand out in its residual map, which is what the tests check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter
from vaedx.data.volume_prep import prepare_volume
from vaedx.io.slice_stack import read_lgg_patient

SIZE = 32
CONFIG = PreprocessConfig(size=(SIZE, SIZE), channels=[1], normalize_scope="volume")


def lgg_cases(lgg_dir: Path, n: int) -> list[Path]:
    return sorted(p for p in lgg_dir.iterdir() if p.is_dir() and p.name.startswith("TCGA"))[:n]


def make_lgg_volume_store(lgg_dir: Path, out: Path, n_patients: int = 4) -> Path:
    """Slices of ``n_patients`` FLAIR volumes; the last patient is the val split (for calibration)."""
    prepared = []
    for k, case in enumerate(lgg_cases(lgg_dir, n_patients)):
        vol, mask = read_lgg_patient(case)
        prepared.append((k, case.name, prepare_volume(vol, CONFIG, mask)))
    total = sum(p.slices.shape[0] for _, _, p in prepared)
    writer = StoreWriter(out, total, (1, SIZE, SIZE), with_masks=True)
    for k, name, p in prepared:
        assert p.masks is not None
        for z in range(p.slices.shape[0]):
            lesion = int(p.masks[z].any())
            writer.add(
                p.slices[z],
                label=lesion,
                mask=p.masks[z],
                split="val" if k == n_patients - 1 else "train",
                path=f"{name}/{name}_{z + 1}.png",
                patient_id=name,
                volume=name,
                slice_index=z,
            )
    writer.finish(["no_tumour", "tumour"], CONFIG)
    return out


def plant_blob(data: np.ndarray, centre: tuple[int, int, int], half: int = 16) -> np.ndarray:
    """A copy of (z, y, x) ``data`` with a bright cube (twice the volume's maximum) around ``centre``."""
    out = data.copy()
    z, y, x = centre
    out[max(0, z - 1) : z + 2, y - half : y + half, x - half : x + half] = 2 * float(data.max())
    return out

"""Tiny labelled stores with lesion masks, shared by the detect and report tests.

Blobs; odd rows get a bright 4x4 square 'lesion' with its mask; rows go train, train, val, test in pairs
and four rows make one patient, so every split has both labels and patient-level bootstrap has work to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter


def make_lesion_store(
    out: Path,
    n: int = 36,
    size: int = 16,
    *,
    noise: float = 0.0,
    random_lesions: bool = False,
    path_pattern: str = "patient{i}/img{i}.png",
) -> Path:
    """``random_lesions`` places each square at random (else at rows/cols 4:8); ``noise`` adds uniform
    background noise up to that value, so no two normal images reconstruct alike."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    writer = StoreWriter(out, n, (1, size, size), with_masks=True)
    for i in range(n):
        cy, cx = rng.uniform(size / 3, 2 * size / 3, 2)
        img = 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / size)
        if noise:
            img = img + rng.uniform(0, noise, (size, size))
        mask = np.zeros((size, size), np.uint8)
        if i % 2:
            y0, x0 = rng.integers(2, size - 7, 2) if random_lesions else (4, 4)
            mask[y0 : y0 + 4, x0 : x0 + 4] = 1
            img = np.where(mask, 1.0, img)
        writer.add(
            img[None].astype(np.float32),
            label=i % 2,
            mask=mask,
            split=("train", "train", "val", "test")[(i // 2) % 4],
            path=path_pattern.format(i=i),
            patient_id=f"p{i // 4}",
        )
    writer.finish(["normal", "lesion"], PreprocessConfig(size=(size, size)))
    return out

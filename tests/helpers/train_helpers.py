"""Helpers for the training tests: tiny synthetic stores (Gaussian blobs) and fast settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter, TensorStore


def make_store(
    out: Path, n: int = 48, c: int = 1, size: int = 16, seed: int = 0, val_every: int = 4
) -> TensorStore:
    """Blob images; labels alternate normal/abnormal (abnormal is brighter); 1 pair in val_every is val."""
    rng = np.random.default_rng(seed)
    writer = StoreWriter(out, n, (c, size, size), with_masks=False)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        label = i % 2
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (size / 2)) * (0.6 + 0.4 * label)
        img = np.repeat(img[None].astype(np.float32), c, 0)
        split = "val" if (i // 2) % val_every == val_every - 1 else "train"  # both labels in each split
        writer.add(img, label=label, split=split, path=f"img{i}.png", patient_id=f"p{i}")
    return writer.finish(["normal", "abnormal"], PreprocessConfig(size=(size, size)))


# Small, fast settings shared by the engine tests.
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "lr": 3e-3, "num_threads": 1, "log_every": 1}


def cli_module() -> str:
    """Module run with ``python -m`` in the subprocess tests: the real CLI."""
    return "vaedx.cli"

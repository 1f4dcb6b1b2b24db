"""A real, tiny PneumoniaMNIST run for the model-card tests: a seconds-long subset of the real images.

Why a subset npz: the card must show the counts of the store the run used, so the test needs a store whose
counts it knows exactly; slicing the real archive keeps real images and makes training take a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SUBSET = {"train": 60, "val": 40, "test": 50}  # first images of each official split
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "num_threads": 1}


@dataclass(frozen=True)
class RealRun:
    store: Path
    run: Path
    labels: dict[str, np.ndarray]  # split -> label codes (0 normal, 1 pneumonia) of the subset


def counts(labels: np.ndarray) -> tuple[int, int]:
    """(normal, pneumonia) images among ``labels``."""
    return int((labels == 0).sum()), int((labels == 1).sum())


@pytest.fixture(scope="session")
def real_run(pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """A VAE trained for one epoch on the normal training images of a PneumoniaMNIST subset."""
    import torch
    from threadpoolctl import threadpool_limits

    import vaedx

    root = tmp_path_factory.mktemp("card")
    src = np.load(pneumonia_npz)
    arrays, labels = {}, {}
    for split, n in SUBSET.items():
        arrays[f"{split}_images"] = src[f"{split}_images"][:n]
        arrays[f"{split}_labels"] = src[f"{split}_labels"][:n]
        labels[split] = arrays[f"{split}_labels"].ravel()
    np.savez(root / "pneumoniamnist.npz", **arrays)  # the file name gives the label names
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            vaedx.prepare(root / "pneumoniamnist.npz", root / "store")
            vaedx.train(root / "store", root / "run", epochs=1, label_filter=["normal"], **FAST)
    finally:
        torch.set_num_threads(threads)
    return RealRun(root / "store", root / "run", labels)

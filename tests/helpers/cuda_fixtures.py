"""The shared fixture of the tests marked ``cuda``: real PneumoniaMNIST images and a VAE trained on the GPU.

Why real data and a GPU-trained model: CPU/GPU agreement is only worth checking on the images and weights the
product meets (a 2-epoch VAE on blobs gives near-equal scores for any device). The subset keeps the whole
``pytest -m cuda`` run to about a minute on one GPU. Tests marked ``cuda`` are skipped by the root conftest
on machines without CUDA, before this fixture runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SUBSET = {"train": 1200, "val": 300, "test": 400}
ARCH = {"widths": [16, 32], "latent_dim": 16, "batch_size": 64, "lr": 2e-3}
# scores may move with the device: cuDNN picks other convolution algorithms (TF32 on Ampere and later) and
# inference runs under bfloat16/float16 autocast; rankings, and so AUROC, must barely move
FP32_RTOL = 2e-2
AUROC_TOL = 0.03


@dataclass(frozen=True)
class CudaRun:
    root: Path
    store: Path
    run: Path


@pytest.fixture(scope="session")
def cuda_run(pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> CudaRun:
    """A PneumoniaMNIST subset prepared into a store and a VAE trained for 4 epochs on its normal training
    images, on the GPU (seeded)."""
    import vaedx

    root = tmp_path_factory.mktemp("cuda")
    src = np.load(pneumonia_npz)
    arrays = {}
    for split, n in SUBSET.items():
        arrays[f"{split}_images"] = src[f"{split}_images"][:n]
        arrays[f"{split}_labels"] = src[f"{split}_labels"][:n]
    np.savez(root / "pneumoniamnist.npz", **arrays)  # the file name gives the label names
    vaedx.prepare(root / "pneumoniamnist.npz", root / "store")
    opts = {"epochs": 4, "seed": 0, "label_filter": ["normal"], "device": "cuda", **ARCH}
    vaedx.train(root / "store", root / "run", quiet=True, **opts)
    return CudaRun(root, root / "store", root / "run")


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the spread of a: scores of different scorers live on very different scales."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.ptp(a)), 1e-12))

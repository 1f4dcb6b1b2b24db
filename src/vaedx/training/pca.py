"""'Training' the PCA baseline through the same command, output layout and metrics as the VAE.

Why: comparisons are only fair when the baseline is fitted on exactly the images (split, label filter,
cap) the VAE saw and can be loaded by the same ``load_model``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.models.baselines import PCABaseline
from vaedx.runs.config import TrainConfig
from vaedx.runs.folder import BEST, LAST, RunFolder
from vaedx.training.batches import RowView
from vaedx.training.progress import MetricsLog, Reporter


def gaussian_nll(err: np.ndarray, sigma: float) -> np.ndarray:
    """Per-image NLL (summed over pixels) under N(x_hat, sigma^2): the VAE's fixed-sigma recon term."""
    return (0.5 * (err / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)).sum(1)


def fit_pca(
    cfg: TrainConfig,
    store: TensorStore,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    out: Path,
    meta: dict[str, Any],
    metrics: MetricsLog | None,
    reporter: Reporter,
) -> PCABaseline:
    t0 = time.perf_counter()
    pca = PCABaseline(cfg.model.latent_dim).fit(RowView(store.images, train_idx))
    secs = time.perf_counter() - t0
    speed = len(train_idx) / max(secs, 1e-9)
    row: dict[str, Any] = {"epoch": 1, "step": 1, "seconds": secs, "images_per_s": speed}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        if len(idx):
            nll_sum, se_sum = 0.0, 0.0
            for x in RowView(store.images, idx).chunks():
                err = (pca.reconstruct(x) - x).reshape(len(x), -1)
                nll_sum += float(gaussian_nll(err, cfg.model.sigma).sum())
                se_sum += float((err.astype(np.float64) ** 2).mean(1).sum())
            nll = nll_sum / len(idx)
            row.update({f"{name}_loss": nll, f"{name}_recon": nll, f"{name}_kl": 0.0})
            row[f"{name}_mse"] = se_sum / len(idx)
    if metrics is not None:
        metrics.append(row)
    run = {"epoch": 1, "global_step": 1, "best_epoch": 1, "metrics": row}
    folder = RunFolder(out)
    folder.write_checkpoint(LAST, pca.save, meta, {"run": run})
    folder.copy_checkpoint(LAST, BEST)
    k = len(pca.components) if pca.components is not None else 0
    val = f", val mse {row['val_mse']:.5g}" if "val_mse" in row else ""
    reporter.line(f"PCA with {k} components fitted in {secs:.2f} s{val}")
    return pca

"""Training of the M2 semi-supervised VAE (:mod:`vaedx.models.semi`) on a tensor store.

Every step takes one batch of unlabelled images (the training split minus the labelled subset; images
with label -1 count as unlabelled) and one batch of labelled ones, cycling the small labelled set, so both
terms of the objective are estimated at every step. The labelled subset is the same seeded, stratified
one the other methods of the label-fraction study use. The best epoch by validation AUC of q(y|x) is kept.
With ``augment`` both batches are randomly rotated, zoomed and shifted (the same transform family as the
supervised CNN's, so the study compares objectives, not augmentation recipes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.data.augment import AugmentConfig, random_affine
from vaedx.data.store import TensorStore
from vaedx.diagnose.labels import subset_rows
from vaedx.diagnose.torchfit import (
    class_index,
    cycle,
    fit_classifier,
    fit_inputs,
    load_rows,
    model_config_for,
    torch_threads,
    val_rows,
)
from vaedx.models.config import ModelConfig
from vaedx.models.semi import SemiConfig, SemiVAE
from vaedx.runs.networks import save_semi
from vaedx.training.batches import derive_seed


@dataclass
class SemiResult:
    """The trained model (best validation epoch) and how it got there."""

    model: SemiVAE
    config: SemiConfig
    labelled_rows: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def classes(self) -> np.ndarray:
        return np.asarray(self.config.classes)


def train_semi(
    store: TensorStore | str | Path,
    labelled_fraction: float = 0.01,
    seed: int = 0,
    epochs: int = 10,
    *,
    model: ModelConfig | dict[str, Any] | None = None,
    batch_size: int = 64,
    labelled_batch_size: int | None = None,
    lr: float = 1e-3,
    alpha: float | None = None,
    patience: int = 0,
    augment: AugmentConfig | dict[str, Any] | bool | None = None,
    schedule: str = "none",
    train_split: str = "train",
    val_split: str | None = "val",
    out: str | Path | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
) -> SemiResult:
    """Train M2 with ``labelled_fraction`` of the training labels (stratified, seeded by ``seed``).

    ``alpha`` defaults to 0.1 * N / N_l (Kingma et al. 2014); ``labelled_batch_size`` to
    min(N_l, max(8, batch_size // 4)). ``augment`` and ``schedule`` ("none" | "onecycle") as for
    :func:`vaedx.diagnose.supervised.train_supervised`. Saved to ``out`` (safetensors + JSON) when given.
    """
    st, device, aug = fit_inputs(store, epochs, batch_size, device, schedule, augment)
    lab, all_rows = subset_rows(st, train_split, labelled_fraction, seed)
    unl = np.setdiff1d(all_rows, lab)
    classes = np.unique(st.labels[lab])
    n_l, n_u = len(lab), len(unl)
    alpha = 0.1 * (n_l + n_u) / n_l if alpha is None else float(alpha)
    cfg = SemiConfig(
        model=model_config_for(st, model),
        classes=classes.tolist(),
        label_names=list(st.label_names),
        alpha=alpha,
    )
    torch.manual_seed(derive_seed(seed, 0x5E41))
    net = SemiVAE(cfg.model, len(classes), cfg.classifier_hidden).to(device)
    result = SemiResult(net, cfg, lab)
    b_l = labelled_batch_size or min(n_l, max(8, batch_size // 4))
    with torch_threads(num_threads):
        val = val_rows(st, val_split, classes)
        _fit(result, st, unl, val, epochs=epochs, batch_size=batch_size, b_l=b_l, lr=lr, patience=patience,
             seed=seed, device=device, aug=aug, schedule=schedule)  # fmt: skip
    if out is not None:
        info = {"labelled_fraction": labelled_fraction, "seed": seed, "n_labelled": n_l, "n_unlabelled": n_u}
        info |= {"augment": aug.model_dump() if aug else None, "schedule": schedule, "lr": lr}
        save_semi(net, cfg, st.preprocess, out, history=result.history, best_epoch=result.best_epoch, **info)
    return result


def _fit(
    result: SemiResult,
    st: TensorStore,
    unl: np.ndarray,
    val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    b_l: int,
    lr: float,
    patience: int,
    seed: int,
    device: str,
    aug: AugmentConfig | None = None,
    schedule: str = "none",
) -> None:
    """Mixed batches through :func:`fit_classifier`: validation AUC of q(y|x), best epoch kept."""
    net, lab, classes, alpha = result.model, result.labelled_rows, result.classes, result.config.alpha
    n_l, n_u = len(lab), len(unl)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    rng = np.random.default_rng(derive_seed(seed, 0xBA7C))
    lab_batches = cycle(lab, b_l, rng)
    steps = math.ceil(n_u / batch_size) if n_u else math.ceil(n_l / b_l)
    gen = torch.Generator().manual_seed(derive_seed(seed, 0xBA7D))

    order = unl

    def new_epoch() -> None:
        nonlocal order
        order = rng.permutation(unl)

    def batch_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows_l = np.sort(next(lab_batches))
        x_l = random_affine(load_rows(st.images, rows_l, device), aug, gen)
        y_l = torch.from_numpy(class_index(st.labels[rows_l], classes)).to(device)
        rows_u = order[step * batch_size : (step + 1) * batch_size]
        x_u = random_affine(load_rows(st.images, rows_u, device), aug, gen) if n_u else None
        loss, logs = net.loss(x_l, y_l, x_u, alpha=alpha)
        result.step_losses.append(logs["loss"])
        return loss, logs

    result.best_epoch = fit_classifier(
        net, st, val, classes, opt=opt, schedule=schedule, epochs=epochs, steps=steps, patience=patience,
        batch_loss=batch_loss, new_epoch=new_epoch, history=result.history, what="M2",
    )  # fmt: skip

"""Training of the supervised CNN (:mod:`vaedx.models.cnn`) end-to-end on labels.

Two uses, one trainer:

* the baseline: a latent classifier or M2 "at 1 % labels" means little unless a plain CNN given the same
  labelled images is in the same table. The encoder is built by the same code as ConvVAE's (a ConvAE's
  encoder and latent projection), so only the training signal differs;
* ``init_from=`` a trained VAE run: its encoder and the mean half of its latent projection start the
  network, which is then fine-tuned on the labels (the "pretrain without labels, fine-tune with few"
  recipe; method ``vae_finetune`` of the label-fraction study).

Early stopping uses validation AUC, as for M2: both run :func:`vaedx.diagnose.torchfit.fit_classifier`.
Saved like M2 by :mod:`vaedx.runs.networks` (``model.safetensors`` + ``supervised.json``), never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
from vaedx.errors import ConfigError
from vaedx.models.cnn import SupervisedCNN
from vaedx.models.config import ModelConfig
from vaedx.runs.networks import save_supervised
from vaedx.training.batches import derive_seed


@dataclass
class SupervisedResult:
    model: SupervisedCNN
    classes: np.ndarray
    labelled_rows: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0


def train_supervised(
    store: TensorStore | str | Path,
    labelled_fraction: float = 1.0,
    seed: int = 0,
    epochs: int = 20,
    *,
    model: ModelConfig | dict[str, Any] | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 5,
    min_steps: int = 0,
    augment: AugmentConfig | dict[str, Any] | bool | None = None,
    schedule: str = "none",
    init_from: Any = None,
    pretrained: bool = True,
    train_split: str = "train",
    val_split: str | None = "val",
    out: str | Path | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    class_weight: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> SupervisedResult:
    """Cross-entropy training on the labelled subset ``labelled_subset(train labels, fraction, seed)``.

    An epoch is one pass over the labelled images (at least one batch); the best epoch by validation AUC
    is kept and training stops after ``patience`` epochs without improvement (0 = never). ``min_steps``
    raises the epoch count so that at least that many optimiser steps are allowed: at 1 % labels an epoch
    is one or two batches, and a fixed epoch count would leave the baseline untrained.

    ``augment`` (True, a dict or an AugmentConfig) randomly rotates, zooms and shifts every labelled
    batch; ``schedule="onecycle"`` warms the learning rate up to ``lr``, anneals it to ~0 over ``epochs``
    and keeps the final weights (no early stopping; see ``fit_epochs``). ``init_from`` (a VAE run folder or
    LoadedModel, whose architecture then replaces ``model``) starts from that VAE's encoder, or with
    ``pretrained=False`` only takes its architecture and starts from random weights: the supervised
    baseline that the VAE's pretraining must beat, through the same code. Saved to
    ``out`` (safetensors + JSON) when given. ``progress(done, total)`` follows the optimiser steps.
    ``class_weight="balanced"`` weighs the loss by inverse class frequency of the labelled rows, so a
    minority class is not traded away on an imbalanced set; ``stop()`` is asked after every epoch and
    ends training when True (see :func:`vaedx.diagnose.torchfit.fit_epochs`).
    """
    if class_weight not in (None, "balanced"):
        raise ConfigError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    st, device, aug = fit_inputs(store, epochs, batch_size, device, schedule, augment)
    lab, _ = subset_rows(st, train_split, labelled_fraction, seed)
    classes = np.unique(st.labels[lab])
    vae = _pretrained(init_from, st) if init_from is not None else None
    cfg = model_config_for(st, vae.config.model if vae is not None else model)
    torch.manual_seed(derive_seed(seed, 0xC44))
    net = SupervisedCNN(cfg, len(classes))
    if vae is not None and pretrained:
        net.load_vae_encoder(vae.model)
    result = SupervisedResult(net.to(device), classes, lab)
    opts = {"lr": lr, "weight_decay": weight_decay}
    steps = math.ceil(len(lab) / min(batch_size, len(lab)))
    epochs = max(epochs, math.ceil(min_steps / steps))
    recipe = {"augment": aug.model_dump() if aug else None, "schedule": schedule, "lr": lr}
    recipe |= {"init_from": str(vae.path) if vae is not None and pretrained else None}
    with torch_threads(num_threads):
        val = val_rows(st, val_split, classes)
        weight = _balanced(st.labels[lab], classes, device) if class_weight else None
        _fit(result, st, val, epochs, batch_size, opts, patience, seed, device, aug, schedule, progress,
             weight, stop)  # fmt: skip
    if out is not None:
        info = {"labelled_fraction": labelled_fraction, "seed": seed, "n_labelled": len(lab), **recipe}
        info |= {"best_epoch": result.best_epoch, "history": result.history}
        save_supervised(result.model, classes, st.label_names, st.preprocess, out, **info)
    return result


def _balanced(labels: np.ndarray, classes: np.ndarray, device: str) -> torch.Tensor:
    """Cross-entropy class weights n / (K * count), the "balanced" weighting of scikit-learn."""
    counts = np.bincount(class_index(labels, classes), minlength=len(classes)).astype(np.float64)
    w = len(labels) / (len(classes) * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32, device=device)


def _pretrained(init_from: Any, st: TensorStore) -> Any:
    """The VAE to start from, checked against the store; an AE/PCA run cannot seed a VAE encoder."""
    from vaedx.diagnose.encoder import as_loaded

    loaded = as_loaded(init_from)
    if loaded.kind != "vae":
        raise ConfigError(f"init_from needs a VAE run, {loaded.path} holds a {loaded.kind}")
    st.check_compatible(loaded.preprocess, loaded.image_shape)
    return loaded


def _fit(
    result: SupervisedResult,
    st: TensorStore,
    val: np.ndarray,
    epochs: int,
    batch_size: int,
    opts: dict[str, float],
    patience: int,
    seed: int,
    device: str,
    aug: AugmentConfig | None = None,
    schedule: str = "none",
    progress: Callable[[int, int], None] | None = None,
    weight: torch.Tensor | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Cross-entropy (class-weighted when ``weight`` is given) on cycled labelled batches through
    :func:`fit_classifier`."""
    net, lab, classes = result.model, result.labelled_rows, result.classes
    opt = torch.optim.AdamW(net.parameters(), **opts)
    rng = np.random.default_rng(derive_seed(seed, 0xC45))
    gen = torch.Generator().manual_seed(derive_seed(seed, 0xC46))
    b = min(batch_size, len(lab))
    batches, steps = cycle(lab, b, rng), math.ceil(len(lab) / b)

    def batch_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = np.sort(next(batches))
        y = torch.from_numpy(class_index(st.labels[rows], classes)).to(device)
        x = load_rows(st.images, rows, device)
        loss = F.cross_entropy(net(random_affine(x, aug, gen)), y, weight=weight)
        return loss, {"loss": float(loss.detach())}

    result.best_epoch = fit_classifier(
        net, st, val, classes, opt=opt, schedule=schedule, epochs=epochs, steps=steps, patience=patience,
        batch_loss=batch_loss, history=result.history, what="supervised", progress=progress, stop=stop,
    )  # fmt: skip

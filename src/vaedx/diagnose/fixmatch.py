"""FixMatch (Sohn et al., 2020) on a VAE encoder: few labels plus pseudo-labels on the unlabelled images.

Why: fine-tuning the VAE's encoder on 1 % of the labels uses the unlabelled images only through the
pre-training, and the supervised CNN not at all. FixMatch adds them to the fine-tuning itself: each step
the network labels a weakly augmented view of unlabelled training images, keeps only the predictions
whose confidence reaches ``threshold``, and is trained with cross-entropy to give the same class to a
strongly augmented view of the same images. Starting from the VAE encoder makes the first pseudo-labels
better than chance, which is what a consistency method with this few labels lacks when started from
scratch.

The network, the labelled subset, the weak augmentation (:func:`vaedx.data.augment.random_affine`), the
one-cycle schedule and the epoch loop (:func:`vaedx.diagnose.torchfit.fit_classifier`) are those of the
fine-tuned encoder and the supervised CNN, so in the label-fraction study the three differ only in the
unlabelled term. The unlabelled images are the rest of the training split (label -1 included); their
labels are never read.

Strong augmentation on greyscale medical images: RandAugment's colour operations assume RGB photographs,
so the strong view here is a wider random affine, random contrast, brightness and gamma, and a cut-out
square (the part of RandAugment + Cutout that FixMatch's ablation found to matter is the cut-out).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vaedx.data.augment import AugmentConfig, random_affine
from vaedx.data.store import TensorStore
from vaedx.diagnose.labels import subset_rows
from vaedx.diagnose.supervised import SupervisedResult, _pretrained
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


class StrongAugment(BaseModel):
    """Ranges of the strong view; every draw is uniform in its range, independently per image."""

    model_config = ConfigDict(extra="forbid")

    rotate_deg: float = Field(default=25.0, ge=0, le=180, description="Maximum rotation in degrees.")
    scale: float = Field(default=0.2, ge=0, lt=1, description="Maximum relative zoom in or out.")
    translate: float = Field(default=0.125, ge=0, le=1, description="Maximum shift, fraction of the size.")
    contrast: float = Field(default=0.4, ge=0, lt=1, description="Contrast factor in [1 - c, 1 + c].")
    brightness: float = Field(default=0.2, ge=0, le=1, description="Added offset in [-b, b].")
    gamma: float = Field(default=0.4, ge=0, le=2, description="Gamma exp(u), u in [-g, g].")
    cutout: float = Field(default=0.5, ge=0, le=1, description="Largest cut-out side, fraction of the size.")


def strong_augment(
    x: torch.Tensor, cfg: StrongAugment, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The strong view of a batch (N, C, H, W) of images in [0, 1]: wide affine, intensity jitter, cut-out.

    The cut-out square is filled with the image's own mean, so its edge is the only cue it adds; random
    numbers come from ``generator`` on the CPU, so a seeded run repeats on any device.
    """
    n = x.shape[0]
    if n == 0:
        return x
    affine = AugmentConfig(rotate_deg=cfg.rotate_deg, scale=cfg.scale, translate=cfg.translate)
    x = random_affine(x, None if affine.is_identity else affine, generator)

    def uniform(span: float) -> torch.Tensor:
        u = (torch.rand(n, generator=generator) * 2 - 1) * span
        return u.to(x.device, x.dtype).view(n, 1, 1, 1)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * (1 + uniform(cfg.contrast)) + mean + uniform(cfg.brightness)).clamp(0, 1)
    x = x ** torch.exp(uniform(cfg.gamma))
    if cfg.cutout > 0:
        h, w = x.shape[-2:]
        centre = torch.rand(n, 2, generator=generator)
        half = torch.rand(n, generator=generator) * cfg.cutout / 2
        yy = torch.linspace(0, 1, h).view(1, h, 1)
        xx = torch.linspace(0, 1, w).view(1, 1, w)
        inside = ((yy - centre[:, 0].view(n, 1, 1)).abs() <= half.view(n, 1, 1)) & (
            (xx - centre[:, 1].view(n, 1, 1)).abs() <= half.view(n, 1, 1)
        )
        inside = inside.to(x.device).unsqueeze(1)
        x = torch.where(inside, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x), x)
    return x


def consistency_loss(
    logits_weak: torch.Tensor, logits_strong: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mask): cross-entropy of the strong view against the weak view's argmax, counted only where
    the weak view's top probability is at least ``threshold``, averaged over *all* unlabelled images.

    Why over all and not over the confident ones: as in FixMatch, the term then grows with the share of
    confident predictions, which acts as its own warm-up while the network is still unsure. The weak
    logits are detached: the pseudo-label is a target, not something to move towards the strong view.
    """
    probs = logits_weak.detach().softmax(1)
    confidence, pseudo = probs.max(1)
    mask = (confidence >= threshold).to(logits_strong.dtype)
    loss = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
    return loss, mask


def train_fixmatch(
    store: TensorStore | str | Path,
    labelled_fraction: float = 0.01,
    seed: int = 0,
    epochs: int = 20,
    *,
    init_from: Any = None,
    model: ModelConfig | dict[str, Any] | None = None,
    batch_size: int = 64,
    unlabelled_ratio: int = 3,
    threshold: float = 0.95,
    lambda_u: float = 1.0,
    strong: StrongAugment | dict[str, Any] | None = None,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    patience: int = 5,
    min_steps: int = 0,
    augment: AugmentConfig | dict[str, Any] | bool | None = True,
    schedule: str = "onecycle",
    train_split: str = "train",
    val_split: str | None = "val",
    out: str | Path | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> SupervisedResult:
    """FixMatch on the seeded stratified ``labelled_fraction`` subset of ``train_split``.

    Each optimiser step takes one labelled batch (``batch_size`` or all labelled images, weakly augmented
    by ``augment``) and ``unlabelled_ratio`` times as many unlabelled training images, seen weakly (the
    pseudo-label) and strongly (``strong``, trained to match it where the weak view's confidence is at
    least ``threshold``); loss = labelled cross-entropy + ``lambda_u`` x :func:`consistency_loss`.
    ``unlabelled_ratio=0`` leaves out the unlabelled images: the supervised fine-tuning, step for step.

    Steps, epochs, ``min_steps``, ``schedule``, ``patience``, ``init_from`` (a VAE run: its encoder starts
    the network; None: random start), ``out``, ``progress`` and ``stop`` are as in
    :func:`vaedx.diagnose.supervised.train_supervised`, so a study gives both the same budget of steps.
    Each history row also logs the epoch's mean share of confident pseudo-labels (``mask_rate``).
    """
    if unlabelled_ratio < 0:
        raise ConfigError(f"unlabelled_ratio must be >= 0, got {unlabelled_ratio}")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    if lambda_u < 0:
        raise ConfigError(f"lambda_u must be >= 0, got {lambda_u}")
    try:
        strong_cfg = (
            strong if isinstance(strong, StrongAugment) else StrongAugment.model_validate(strong or {})
        )
    except ValueError as e:
        raise ConfigError(f"invalid strong augmentation ({str(e).splitlines()[0]})") from None
    st, device, aug = fit_inputs(store, epochs, batch_size, device, schedule, augment)
    lab, all_rows = subset_rows(st, train_split, labelled_fraction, seed)
    unl = np.setdiff1d(all_rows, lab) if unlabelled_ratio else np.zeros(0, dtype=np.int64)
    if unlabelled_ratio and unl.size == 0:
        raise ConfigError("no unlabelled training images left for FixMatch; lower the labelled fraction")
    classes = np.unique(st.labels[lab])
    vae = _pretrained(init_from, st) if init_from is not None else None
    cfg = model_config_for(st, vae.config.model if vae is not None else model)
    torch.manual_seed(derive_seed(seed, 0xC44))  # the CNN's seed: same head initialisation
    net = SupervisedCNN(cfg, len(classes))
    if vae is not None:
        net.load_vae_encoder(vae.model)
    result = SupervisedResult(net.to(device), classes, lab)
    b = min(batch_size, len(lab))
    steps = math.ceil(len(lab) / b)
    epochs = max(epochs, math.ceil(min_steps / steps))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(derive_seed(seed, 0xC45))
    gen = torch.Generator().manual_seed(derive_seed(seed, 0xC46))
    urng = np.random.default_rng(derive_seed(seed, 0xF1C))
    lab_batches = cycle(lab, b, rng)
    unl_batches = cycle(unl, unlabelled_ratio * b, urng) if unl.size else None

    def batch_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = np.sort(next(lab_batches))
        y = torch.from_numpy(class_index(st.labels[rows], classes)).to(device)
        x_l = random_affine(load_rows(st.images, rows, device), aug, gen)
        if unl_batches is None:
            loss = F.cross_entropy(net(x_l), y)
            return loss, {"loss": float(loss.detach()), "loss_x": float(loss.detach())}
        x_u = load_rows(st.images, next(unl_batches), device)
        views = torch.cat([x_l, random_affine(x_u, aug, gen), strong_augment(x_u, strong_cfg, gen)])
        logits = net(views)  # one pass, so batch statistics see labelled and unlabelled images alike
        n_l, n_u = len(rows), len(x_u)
        loss_x = F.cross_entropy(logits[:n_l], y)
        loss_u, mask = consistency_loss(logits[n_l : n_l + n_u], logits[n_l + n_u :], threshold)
        loss = loss_x + lambda_u * loss_u
        logs = {"loss": float(loss.detach()), "loss_x": float(loss_x.detach())}
        return loss, logs | {"loss_u": float(loss_u.detach()), "mask_rate": float(mask.mean())}

    with torch_threads(num_threads):
        val = val_rows(st, val_split, classes)
        result.best_epoch = fit_classifier(
            net, st, val, classes, opt=opt, schedule=schedule, epochs=epochs, steps=steps, patience=patience,
            batch_loss=batch_loss, history=result.history, what="FixMatch", progress=progress, stop=stop,
        )  # fmt: skip
    if out is not None:
        recipe = {"augment": aug.model_dump() if aug else None, "schedule": schedule, "lr": lr}
        recipe |= {"init_from": str(vae.path) if vae is not None else None, "method": "fixmatch"}
        recipe |= {"unlabelled_ratio": unlabelled_ratio, "threshold": threshold, "lambda_u": lambda_u}
        recipe |= {"strong": strong_cfg.model_dump(), "n_unlabelled": int(unl.size)}
        info = {"labelled_fraction": labelled_fraction, "seed": seed, "n_labelled": len(lab), **recipe}
        info |= {"best_epoch": result.best_epoch, "history": result.history}
        save_supervised(result.model, classes, st.label_names, st.preprocess, out, **info)
    return result

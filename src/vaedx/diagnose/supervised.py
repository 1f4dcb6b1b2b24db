"""Supervised baseline: the VAE's encoder architecture plus a linear head, trained end-to-end on labels only.

Why: a latent classifier or M2 "at 1 % labels" means little unless a plain CNN given the same labelled
images is in the same table. The encoder is built by the same code as ConvVAE's (a ConvAE's encoder and
latent projection), so only the training signal differs; early stopping uses validation AUC, as for M2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaedx.data.store import TensorStore
from vaedx.diagnose.labels import subset_rows
from vaedx.diagnose.torchfit import (
    BestState,
    class_index,
    cycle,
    load_rows,
    model_config_for,
    torch_threads,
    val_rows,
    val_scores,
)
from vaedx.errors import ConfigError
from vaedx.models.config import ModelConfig
from vaedx.models.vae import ConvAE
from vaedx.train.data import RowView, derive_seed


class SupervisedCNN(nn.Module):
    """ConvAE encoder (conv trunk + projection to latent_dim) followed by a linear class head."""

    def __init__(self, cfg: ModelConfig, n_classes: int):
        super().__init__()
        ae = ConvAE(cfg)  # borrow its encoder; the decoder is dropped with ``ae``
        self.encoder, self.to_latent, self._pad, self._check = ae.encoder, ae.to_latent, ae._pad, ae._check
        self.head = nn.Linear(cfg.latent_dim, n_classes)
        self.cfg, self.n_classes = cfg, n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h = self.encoder(F.pad(x, self._pad) if any(self._pad) else x)
        return self.head(self.to_latent(h.flatten(1)))

    @torch.no_grad()
    def predict_proba(self, images: Any, batch_size: int = 256) -> np.ndarray:
        was, dev = self.training, self.head.weight.device
        self.eval()
        try:
            out = []
            for s in range(0, len(images), batch_size):
                xb = torch.from_numpy(np.array(images[s : s + batch_size], dtype=np.float32))
                out.append(self(xb.to(dev)).softmax(1).double().cpu().numpy())
        finally:
            self.train(was)
        return np.concatenate(out)


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
    train_split: str = "train",
    val_split: str | None = "val",
    device: str = "cpu",
    num_threads: int | None = None,
) -> SupervisedResult:
    """Cross-entropy training on the labelled subset ``labelled_subset(train labels, fraction, seed)``.

    An epoch is one pass over the labelled images (at least one batch); the best epoch by validation AUC
    is kept and training stops after ``patience`` epochs without improvement (0 = never).
    """
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    if epochs < 1 or batch_size < 1:
        raise ConfigError("epochs and batch_size must be >= 1")
    lab, _ = subset_rows(st, train_split, labelled_fraction, seed)
    classes = np.unique(st.labels[lab])
    cfg = model_config_for(st, model)
    torch.manual_seed(derive_seed(seed, 0xC44))
    result = SupervisedResult(SupervisedCNN(cfg, len(classes)).to(device), classes, lab)
    opts = {"lr": lr, "weight_decay": weight_decay}
    with torch_threads(num_threads):
        _fit(result, st, val_rows(st, val_split, classes), epochs, batch_size, opts, patience, seed, device)
    return result


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
) -> None:
    """The epochs: cross-entropy on cycled labelled batches, best validation epoch restored."""
    net, lab, classes = result.model, result.labelled_rows, result.classes
    opt = torch.optim.AdamW(net.parameters(), **opts)
    rng = np.random.default_rng(derive_seed(seed, 0xC45))
    b = min(batch_size, len(lab))
    batches, steps = cycle(lab, b, rng), math.ceil(len(lab) / b)
    best = BestState(patience)
    for epoch in range(1, epochs + 1):
        net.train()
        total = 0.0
        for _ in range(steps):
            rows = np.sort(next(batches))
            y = torch.from_numpy(class_index(st.labels[rows], classes)).to(device)
            loss = F.cross_entropy(net(load_rows(st.images, rows, device)), y)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"supervised training diverged (non-finite loss) in epoch {epoch}; lower lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) / steps
        row: dict[str, Any] = {"epoch": epoch, "loss": total}
        if len(val):
            scores = val_scores(st.labels[val], net.predict_proba(RowView(st.images, val)), classes)
            row |= {f"val_{k}": v for k, v in scores.items()}
        result.history.append(row)
        if best.update(net, row.get("val_auc"), epoch):
            break
    best.restore(net)
    net.eval()
    result.best_epoch = best.epoch

"""Supervised CNN: the VAE's encoder architecture plus a linear head, trained end-to-end on labels.

Two uses, one trainer:

* the baseline: a latent classifier or M2 "at 1 % labels" means little unless a plain CNN given the same
  labelled images is in the same table. The encoder is built by the same code as ConvVAE's (a ConvAE's
  encoder and latent projection), so only the training signal differs;
* ``init_from=`` a trained VAE run: its encoder and the mean half of its latent projection start the
  network, which is then fine-tuned on the labels (the "pretrain without labels, fine-tune with few"
  recipe; method ``vae_finetune`` of the label-fraction study).

Early stopping uses validation AUC, as for M2. Saved like M2 (``model.safetensors`` + ``supervised.json``
with architecture, classes, preprocessing, training recipe and checksum), never pickled.
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

from vaedx.data.augment import AugmentConfig, as_augment, random_affine
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import TensorStore
from vaedx.diagnose.labels import subset_rows
from vaedx.diagnose.torchfit import (
    check_schedule,
    class_index,
    cycle,
    fit_epochs,
    load_rows,
    make_schedule,
    model_config_for,
    torch_threads,
    val_rows,
)
from vaedx.errors import ConfigError, InputError
from vaedx.models.config import ModelConfig
from vaedx.models.vae import ConvAE
from vaedx.runs.checkpoint import read_net_json, save_net
from vaedx.training.batches import derive_seed

SUPERVISED_FORMAT = "vaedx-supervised-1"
SUPERVISED_JSON, SUPERVISED_WEIGHTS = "supervised.json", "model.safetensors"


class SupervisedCNN(nn.Module):
    """ConvAE encoder (conv trunk + projection to latent_dim) followed by a linear class head."""

    def __init__(self, cfg: ModelConfig, n_classes: int):
        super().__init__()
        ae = ConvAE(cfg)  # borrow its encoder; the decoder is dropped with ``ae``
        self.encoder, self.to_latent, self._pad, self._check = ae.encoder, ae.to_latent, ae._pad, ae._check
        self.head = nn.Linear(cfg.latent_dim, n_classes)
        self.cfg, self.n_classes = cfg, n_classes

    def load_encoder(self, vae: nn.Module) -> None:
        """Copy a ConvVAE's encoder and the posterior-mean rows of its latent projection."""
        self.encoder.load_state_dict(vae.encoder.state_dict())
        d = self.cfg.latent_dim
        with torch.no_grad():
            self.to_latent.weight.copy_(vae.to_latent.weight[:d])
            self.to_latent.bias.copy_(vae.to_latent.bias[:d])

    def encoder_into(self, vae_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`load_encoder`: a ConvVAE state dict with this network's encoder and
        posterior-mean projection written in (decoder and log-variance rows left as they were)."""
        out = {k: v.detach().cpu().clone() for k, v in vae_state.items()}
        for k, v in self.encoder.state_dict().items():
            out[f"encoder.{k}"] = v.detach().cpu().clone()
        d = self.cfg.latent_dim
        out["to_latent.weight"][:d] = self.to_latent.weight.detach().cpu()
        out["to_latent.bias"][:d] = self.to_latent.bias.detach().cpu()
        return out

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
    min_steps: int = 0,
    augment: AugmentConfig | dict[str, Any] | bool | None = None,
    schedule: str = "none",
    init_from: Any = None,
    train_split: str = "train",
    val_split: str | None = "val",
    out: str | Path | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
) -> SupervisedResult:
    """Cross-entropy training on the labelled subset ``labelled_subset(train labels, fraction, seed)``.

    An epoch is one pass over the labelled images (at least one batch); the best epoch by validation AUC
    is kept and training stops after ``patience`` epochs without improvement (0 = never). ``min_steps``
    raises the epoch count so that at least that many optimiser steps are allowed: at 1 % labels an epoch
    is one or two batches, and a fixed epoch count would leave the baseline untrained.

    ``augment`` (True, a dict or an AugmentConfig) randomly rotates, zooms and shifts every labelled
    batch; ``schedule="onecycle"`` warms the learning rate up to ``lr``, anneals it to ~0 over ``epochs``
    and keeps the final weights (no early stopping; see ``fit_epochs``). ``init_from`` (a VAE run folder or
    LoadedModel, whose architecture then replaces ``model``) starts from that VAE's encoder. Saved to
    ``out`` (safetensors + JSON) when given.
    """
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    if epochs < 1 or batch_size < 1:
        raise ConfigError("epochs and batch_size must be >= 1")
    check_schedule(schedule)
    aug = as_augment(augment)
    lab, _ = subset_rows(st, train_split, labelled_fraction, seed)
    classes = np.unique(st.labels[lab])
    vae = _pretrained(init_from, st) if init_from is not None else None
    cfg = model_config_for(st, vae.config.model if vae is not None else model)
    torch.manual_seed(derive_seed(seed, 0xC44))
    net = SupervisedCNN(cfg, len(classes))
    if vae is not None:
        net.load_encoder(vae.model)
    result = SupervisedResult(net.to(device), classes, lab)
    opts = {"lr": lr, "weight_decay": weight_decay}
    steps = math.ceil(len(lab) / min(batch_size, len(lab)))
    epochs = max(epochs, math.ceil(min_steps / steps))
    recipe = {"augment": aug.model_dump() if aug else None, "schedule": schedule, "lr": lr}
    recipe |= {"init_from": str(vae.path) if vae is not None else None}
    with torch_threads(num_threads):
        val = val_rows(st, val_split, classes)
        _fit(result, st, val, epochs, batch_size, opts, patience, seed, device, aug, schedule)
    if out is not None:
        info = {"labelled_fraction": labelled_fraction, "seed": seed, "n_labelled": len(lab), **recipe}
        info |= {"best_epoch": result.best_epoch, "history": result.history}
        save_supervised(result.model, classes, st.label_names, st.preprocess, out, **info)
    return result


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
) -> None:
    """The epochs: cross-entropy on cycled labelled batches, best validation epoch restored."""
    net, lab, classes = result.model, result.labelled_rows, result.classes
    opt = torch.optim.AdamW(net.parameters(), **opts)
    rng = np.random.default_rng(derive_seed(seed, 0xC45))
    gen = torch.Generator().manual_seed(derive_seed(seed, 0xC46))
    b = min(batch_size, len(lab))
    batches, steps = cycle(lab, b, rng), math.ceil(len(lab) / b)
    sched = make_schedule(opt, schedule, epochs * steps)

    def train_epoch(epoch: int) -> dict[str, Any]:
        total = 0.0
        for _ in range(steps):
            rows = np.sort(next(batches))
            y = torch.from_numpy(class_index(st.labels[rows], classes)).to(device)
            x = load_rows(st.images, rows, device)
            loss = F.cross_entropy(net(random_affine(x, aug, gen)), y)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"supervised training diverged (non-finite loss) in epoch {epoch}; lower lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) / steps
        return {"loss": total}

    result.best_epoch = fit_epochs(
        net, st, val, classes, epochs=epochs, patience=patience, train_epoch=train_epoch,
        history=result.history, keep_last=schedule == "onecycle",
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- persistence
@dataclass
class LoadedSupervised:
    """A saved supervised CNN with what is needed to feed it and read its columns."""

    model: SupervisedCNN
    classes: np.ndarray  # store label codes of the probability columns
    label_names: list[str]
    preprocess: PreprocessConfig
    path: Path
    meta: dict[str, Any]

    kind = "supervised_cnn"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.cfg.require_shape()


def save_supervised(
    model: SupervisedCNN,
    classes: np.ndarray,
    label_names: list[str],
    preprocess: PreprocessConfig,
    directory: str | Path,
    **meta: Any,
) -> Path:
    """``model.safetensors`` (weights) + ``supervised.json`` (architecture, classes, preprocessing, hash)."""
    doc = {
        "model": model.cfg.model_dump(mode="json"),
        "classes": [int(c) for c in classes],
        "label_names": [str(n) for n in label_names],
        "preprocess": preprocess.model_dump(mode="json"),
        **meta,
    }
    return save_net(Path(directory), model, SUPERVISED_FORMAT, (SUPERVISED_JSON, SUPERVISED_WEIGHTS), doc)


def load_supervised(directory: str | Path, device: str | torch.device = "cpu") -> LoadedSupervised:
    """Inverse of :func:`save_supervised`; a wrong format, bad config or altered weights name the file."""
    from pydantic import ValidationError

    from vaedx.runs import checkpoint as ck

    d = Path(directory)
    doc = read_net_json(d / SUPERVISED_JSON, SUPERVISED_FORMAT, "a supervised CNN")
    try:
        cfg = ModelConfig.model_validate(doc["model"])
        pre = PreprocessConfig.model_validate(doc["preprocess"])
        classes = np.asarray([int(c) for c in doc["classes"]], dtype=np.int64)
        names = [str(n) for n in doc["label_names"]]
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        why = str(e).splitlines()[0]
        raise InputError(f"invalid supervised CNN config ({why})", d / SUPERVISED_JSON) from None
    if len(classes) < 2:
        raise InputError("a supervised CNN needs at least two classes", d / SUPERVISED_JSON)
    model = SupervisedCNN(cfg, len(classes))
    ck.load_weights(model, d / SUPERVISED_WEIGHTS, doc.get("sha256"))
    known = ("format", "model", "classes", "label_names", "preprocess", "sha256")
    meta = {k: v for k, v in doc.items() if k not in known}
    return LoadedSupervised(model.to(device).eval(), classes, names, pre, d, meta)

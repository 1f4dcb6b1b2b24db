"""The training loop of the torch classifiers of this package (M2, the supervised CNN and its fine-tuning
from a VAE encoder) and the small pieces around it.

Why one loop: the label-fraction study compares these networks, so they must step, schedule, score
validation and keep their best epoch the same way; otherwise a difference in the table could come from
the loop. Each trainer only says how to draw a batch and compute its loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.data.augment import AugmentConfig, as_augment
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, ModelMismatchError
from vaedx.metrics.measures import auroc, multiclass_report
from vaedx.models.config import ModelConfig
from vaedx.models.device import resolve_device
from vaedx.training.batches import RowView

#: Small default architecture for the study's models (the images are small and the label sets tiny).
SMALL_MODEL = {"widths": [16, 32, 64], "latent_dim": 16}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (None: leave as is), restoring the previous count.

    Why offer it: these networks are tiny, and on a shared machine a second intra-op thread spinning for a
    busy core made one M2 run take 5-30 s instead of 0.2 s.
    """
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ConfigError(f"num_threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_inputs(
    store: TensorStore | str | Path,
    epochs: int,
    batch_size: int,
    device: str,
    schedule: str,
    augment: AugmentConfig | dict[str, Any] | bool | None,
) -> tuple[TensorStore, str, AugmentConfig | None]:
    """(store, device, augmentation) of a classifier trainer, after the arguments they all take are checked.

    Why here: M2 and the CNN must refuse the same bad arguments with the same one line, before any work.
    ``device`` "auto" becomes CUDA when present.
    """
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    if epochs < 1 or batch_size < 1:
        raise ConfigError("epochs and batch_size must be >= 1")
    check_schedule(schedule)
    return st, str(resolve_device(device)), as_augment(augment)


def model_config_for(store: TensorStore, model: ModelConfig | dict[str, Any] | None) -> ModelConfig:
    """A VAE ModelConfig with channels and size taken from the store (a conflicting shape is an error)."""
    base = model.model_dump() if isinstance(model, ModelConfig) else {**SMALL_MODEL, **(model or {})}
    c, h, w = store.image_shape
    if base.get("in_channels") not in (None, c) or base.get("image_size") not in (None, (h, w), [h, w]):
        want = f"{base.get('in_channels')} x {base.get('image_size')}"
        raise ModelMismatchError(f"model config expects {want}; the store has {c} x {(h, w)}", store.root)
    try:
        return ModelConfig.model_validate({**base, "kind": "vae", "in_channels": c, "image_size": (h, w)})
    except ValueError as e:
        raise ConfigError(f"invalid model config ({str(e).splitlines()[0]})") from None


def val_rows(store: TensorStore, split: str | None, classes: np.ndarray) -> np.ndarray:
    """Labelled rows of the validation split whose class the model knows (empty: no validation)."""
    if split is None:
        return np.zeros(0, dtype=np.int64)
    rows = store.select(split=split)
    return rows[np.isin(store.labels[rows], classes)]


def load_rows(images: np.ndarray, rows: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """One memmap gather of sorted rows (the order inside a batch does not matter to the losses)."""
    return torch.from_numpy(np.ascontiguousarray(images[np.sort(rows)], dtype=np.float32)).to(device)


def cycle(rows: np.ndarray, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless batches of ``rows``, a fresh permutation each pass, so a tiny labelled set is reused evenly."""
    while True:
        perm = rng.permutation(rows)
        for s in range(0, len(perm), batch):
            yield perm[s : s + batch]


SCHEDULES = ("none", "onecycle")


def check_schedule(schedule: str) -> None:
    """Fail before any training when the schedule name is not one of :data:`SCHEDULES`."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def make_schedule(opt: torch.optim.Optimizer, schedule: str, total_steps: int) -> Any:
    """None for "none"; "onecycle": warm up to the optimiser's lr over 30 % of the steps, then anneal.

    Why one-cycle: with a fixed lr the small diagnosis networks ended on a noisy validation AUC; annealing
    to ~0 by the last step made the best epoch (and so the test figure) depend far less on the seed.
    """
    check_schedule(schedule)
    if schedule == "none":
        return None
    lr = opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total_steps, 1))


def class_index(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Store label codes -> column indices 0..K-1."""
    return np.searchsorted(classes, labels).astype(np.int64)


def val_scores(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float | None]:
    """AUC (binary: of classes[1]; multi-class: macro one-vs-rest) and accuracy of argmax predictions."""
    idx = class_index(labels, classes)
    acc = float(np.mean(proba.argmax(1) == idx))
    if len(classes) == 2:
        return {"auc": auroc((idx == 1).astype(np.int8), proba[:, 1]), "acc": acc}
    return {"auc": multiclass_report(idx, proba)["macro_auc"], "acc": acc}


class BestState:
    """Keeps the weights of the best validation epoch and says when patience has run out."""

    def __init__(self, patience: int = 0):
        self.patience, self.best, self.epoch, self.bad = patience, -np.inf, 0, 0
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, model: torch.nn.Module, score: float | None, epoch: int) -> bool:
        """Record an epoch; True when training should stop. No score (no validation): keep the latest."""
        value = -np.inf if score is None else score
        if score is None or value > self.best:
            self.best, self.epoch, self.bad = value, epoch, 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.bad += 1
        return self.patience > 0 and self.bad >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def fit_epochs(
    net: Any,
    store: TensorStore,
    val: np.ndarray,
    classes: np.ndarray,
    *,
    epochs: int,
    patience: int,
    train_epoch: Callable[[int], dict[str, Any]],
    history: list[dict[str, Any]],
    keep_last: bool = False,
    stop: Callable[[], bool] | None = None,
) -> int:
    """The epoch loop both torch classifiers share; returns the kept epoch, whose weights end in ``net``.

    ``train_epoch(epoch)`` runs one epoch's steps and returns its logged means; each row then gets the
    validation AUC/accuracy of ``net.predict_proba`` and is appended to ``history``. The best validation
    epoch is kept, or with ``keep_last`` the final one (validation is then only logged): after a one-cycle
    anneal the final weights are the intended model, and on PneumoniaMNIST the validation AUC sits at
    0.99+ from the third epoch on, so picking an epoch by it picks by noise.

    ``stop()`` is asked after each epoch and ends training when True (the settings search uses it to
    keep a trial inside its time budget); the kept epoch is then chosen among those run.
    """
    best = BestState(0 if keep_last else patience)
    for epoch in range(1, epochs + 1):
        net.train()
        row: dict[str, Any] = {"epoch": epoch, **train_epoch(epoch)}
        # keep_last: validation is only logged, so ~10 evaluations suffice (at 1 % labels an epoch is
        # one step and scoring validation every epoch cost more than the training)
        logged = not keep_last or epoch == epochs or epoch % max(1, epochs // 10) == 0
        if len(val) and logged:
            scores = val_scores(store.labels[val], net.predict_proba(RowView(store.images, val)), classes)
            row |= {f"val_{k}": v for k, v in scores.items()}
        history.append(row)
        if best.update(net, None if keep_last else row.get("val_auc"), epoch):
            break
        if stop is not None and stop():
            break
    best.restore(net)
    net.eval()
    return best.epoch




def fit_classifier(
    net: Any,
    store: TensorStore,
    val: np.ndarray,
    classes: np.ndarray,
    *,
    opt: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    steps: int,
    patience: int,
    batch_loss: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    history: list[dict[str, Any]],
    what: str,
    new_epoch: Callable[[], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """``epochs`` x ``steps`` optimiser steps on ``batch_loss(step) -> (loss, logged floats)``; returns the
    kept epoch (see :func:`fit_epochs`), whose weights end in ``net``.

    ``new_epoch()`` runs before each epoch's steps (M2 reshuffles its unlabelled rows there). Each history
    row holds the epoch means of the logged floats. A non-finite loss stops training with a ConfigError
    naming ``what`` and the epoch. ``schedule="onecycle"`` steps the one-cycle rate after every update and
    keeps the final weights. ``progress(done, total)`` is called after every optimiser step (total:
    ``epochs * steps``; early stopping ends short of it). ``stop``: see :func:`fit_epochs`; it is also
    asked before every step after an epoch's first, and True ends that epoch (then validated) early.
    """
    sched = make_schedule(opt, schedule, epochs * steps)

    def train_epoch(epoch: int) -> dict[str, Any]:
        if new_epoch is not None:
            new_epoch()
        sums: dict[str, float] = {}
        for step in range(steps):
            if step and stop is not None and stop():  # an epoch may be longer than the budget left
                break
            loss, logs = batch_loss(step)
            if not torch.isfinite(loss):
                raise ConfigError(f"{what} training diverged (non-finite loss) in epoch {epoch}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if progress is not None:
                progress((epoch - 1) * steps + step + 1, epochs * steps)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v / steps
        return sums

    return fit_epochs(
        net, store, val, classes, epochs=epochs, patience=patience, train_epoch=train_epoch,
        history=history, keep_last=schedule == "onecycle", stop=stop,
    )  # fmt: skip

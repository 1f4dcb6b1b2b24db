"""Which images of a split carry labels, and the seeded stratified labelled subset every method shares.

Why one function for the subset: the label-fraction study compares a latent classifier, the M2
semi-supervised VAE and a supervised CNN "at 1 % labels"; that comparison is only fair when all three see
exactly the same labelled images for a given (fraction, seed), so they all call :func:`labelled_subset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError


def _names(codes: Sequence[int] | np.ndarray, label_names: Sequence[str] | None) -> str:
    def name(c: int) -> str:
        return str(label_names[c]) if label_names is not None and 0 <= c < len(label_names) else str(c)

    return ", ".join(name(int(c)) for c in codes)


def labelled_subset(
    labels: np.ndarray | Sequence[int],
    fraction: float,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Sorted positions into ``labels`` of a stratified random subset holding ``fraction`` of each class.

    Unlabelled entries (-1) are never chosen. Each class keeps round(fraction * its count) images (half
    rounds up), so class proportions survive even at 1 %; the draw depends only on ``seed``. A class that
    would get no image is an error, because a classifier that never saw a class cannot be evaluated on it.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"labelled fraction must be in (0, 1], got {fraction}")
    y = np.asarray(labels, dtype=np.int64)
    present = np.unique(y[y >= 0])
    if present.size == 0:
        raise InputError("no labelled images (all labels are -1)")
    if present.size == 1:
        raise InputError(
            f"all labelled images are of class {_names(present, label_names)}; need at least two"
        )
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c in present:  # sorted, so the draw order (and result) does not depend on the data order
        members = np.flatnonzero(y == c)
        k = min(members.size, math.floor(fraction * members.size + 0.5))
        chosen.append(rng.permutation(members)[:k])
    picked = np.sort(np.concatenate(chosen))
    got = np.unique(y[picked])
    if got.size < 2:
        only = _names(got, label_names) if got.size else "none"
        raise ConfigError(
            f"labelled subset has only class {only}; need at least one image of each class "
            f"— raise --labelled-fraction (now {fraction:g})"
        )
    missing = np.setdiff1d(present, got)
    if missing.size:
        raise ConfigError(
            f"labelled subset has no image of class {_names(missing, label_names)}; need at least one image "
            f"of each class — raise --labelled-fraction (now {fraction:g})"
        )
    return picked


def labelled_rows(store: TensorStore, split: str, *, min_classes: int = 2) -> np.ndarray:
    """Store rows of ``split`` that have a label; errors name the split when labels cannot support a task."""
    rows = store.select(split=split)
    if rows.size == 0:
        have = sorted({str(s) for s in store.splits})
        raise InputError(f"split {split!r} is empty (store splits: {', '.join(have)})", store.root)
    rows = rows[store.labels[rows] >= 0]
    if rows.size == 0:
        raise InputError(f"split {split!r} has no labelled images (all labels are -1)", store.root)
    classes = np.unique(store.labels[rows])
    if classes.size < min_classes:
        raise InputError(
            f"split {split!r} has labels of class {_names(classes, store.label_names)} only; "
            f"diagnosis needs at least {min_classes} classes",
            store.root,
        )
    return rows


def subset_rows(store: TensorStore, split: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labelled rows chosen for training, all rows of the split) for a fraction of the split's labels."""
    all_rows = store.select(split=split)
    rows = labelled_rows(store, split)
    pick = labelled_subset(store.labels[rows], fraction, seed, store.label_names)
    return rows[pick], all_rows

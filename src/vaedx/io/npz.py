"""MedMNIST-style npz archives: whole labelled data sets rather than single images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaedx.errors import InputError
from vaedx.io._files import describe, existing_file

SPLITS = ("train", "val", "test")


@dataclass
class NpzData:
    """``splits`` maps split name -> (images (N, H, W) or (N, H, W, C), labels int64 (N,))."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    path: Path


def read_npz(path: str | Path) -> NpzData:
    """Load ``{split}_images`` / ``{split}_labels`` pairs, checking they agree before anything trains on them.

    Never unpickles: an npz from the internet must not be able to run code.
    """
    p = existing_file(path)
    try:
        with p.open("rb") as fh:  # our own handle: np.load leaks it when the zip is corrupt
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise InputError("a single .npy array, not an npz archive of splits", p)
            keys = set(z.files)
            wanted = [s for s in SPLITS if f"{s}_images" in keys or f"{s}_labels" in keys]
            arrays = {k: z[k] for s in wanted for k in (f"{s}_images", f"{s}_labels") if k in keys}
            z.close()
    except InputError:
        raise
    except Exception as e:  # not a zip, a corrupt member, or an object array that would need pickle
        raise InputError(f"cannot read npz ({describe(e)})", p) from e
    if not wanted:
        found = ", ".join(sorted(keys)) or "none"
        raise InputError(f"npz has no train/val/test _images/_labels keys (found: {found})", p)
    return NpzData({s: _split(p, s, arrays) for s in wanted}, p)


def _split(p: Path, split: str, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ikey, lkey = f"{split}_images", f"{split}_labels"
    for key in (ikey, lkey):
        if key not in arrays:
            raise InputError(f"npz key '{key}' is missing", p)
    images, labels = arrays[ikey], arrays[lkey]
    if images.ndim == 4 and images.shape[-1] > 4:
        raise InputError(f"npz key '{ikey}' of shape {images.shape} holds 3-D volumes; need 2-D images", p)
    if images.ndim not in (3, 4):
        raise InputError(f"npz key '{ikey}' has shape {images.shape}; need (N, H, W) or (N, H, W, C)", p)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InputError(f"npz key '{lkey}' has shape {labels.shape}: multi-label data is not supported", p)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise InputError(f"npz key '{lkey}' must hold integer class labels, got {labels.dtype}", p)
    if len(labels) != len(images):
        raise InputError(f"npz keys '{ikey}' ({len(images)}) and '{lkey}' ({len(labels)}) differ in size", p)
    return images, labels.astype(np.int64)

"""`StoreDataset`: a tensor store as a torch ``Dataset``, for training loops of your own.

Why: vaedx's engine reads batches straight from the memory-mapped store, but people who train their own
network (or a MONAI one in MONAI's loops) want a ``DataLoader``. Each item is a dict, MONAI's convention::

    {"image": float32 (C, H, W), "label": int64 (), "index": int64 (), "mask": float32 (1, H, W)}

(``mask`` only when the store has masks; ``label`` is -1 for unlabelled rows; ``index`` is the store row).
Items are read from the memory map on demand, so RAM stays flat and ``num_workers > 0`` works (each
worker maps the same files). ``transform`` is applied as in training: a dictionary transform (MONAI
``RandFlipd`` etc.) gets the whole dict, a torchio transform a ``tio.Subject`` of image and mask, any other
callable the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vaedx.data.augment import Transform, apply_one
from vaedx.data.store import TensorStore
from vaedx.errors import InputError


class StoreDataset(Dataset):
    """Rows of a tensor store, optionally one split and/or some labels, as dicts of tensors."""

    def __init__(
        self,
        store: TensorStore | str | Path,
        split: str | None = None,
        labels: Sequence[str | int] | None = None,
        transform: Transform | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ):
        """``indices`` (store rows) wins over ``split``/``labels`` when given."""
        self.store = store if isinstance(store, TensorStore) else TensorStore.open(store)
        if indices is None:
            rows = self.store.select(split, labels)
        else:
            rows = np.asarray(indices, dtype=np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= len(self.store)):
                raise InputError(f"row indices must lie in [0, {len(self.store)})", self.store.root)
        self.rows = rows
        self.transform = transform

    def __len__(self) -> int:
        return int(len(self.rows))

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.array(self.store.images[row], dtype=np.float32)),
            "label": torch.tensor(int(self.store.labels[row])),
            "index": torch.tensor(row),
        }
        if self.store.masks is not None:
            item["mask"] = torch.from_numpy(np.array(self.store.masks[row], dtype=np.float32))
        return item if self.transform is None else apply_one(self.transform, item)

    @property
    def label_names(self) -> list[str]:
        return list(self.store.label_names)

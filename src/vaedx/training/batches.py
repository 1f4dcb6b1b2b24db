"""Batches straight from the memory-mapped tensor store.

Why no torch Dataset/DataLoader: a per-item ``__getitem__`` costs Python overhead per image and worker
processes would each map the store; reading one sorted chunk of row indices per batch is a single
vectorised memmap gather (sequential-ish disk access) and keeps RAM flat whatever the store size.

Shuffling is a permutation drawn from a ``torch.Generator`` seeded with (seed, epoch), so epoch e has the
same order whether a run was interrupted or not, and every DDP rank derives the same permutation and takes
its own shard (DistributedSampler semantics: pad by wrapping, then rank::world_size).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (stable across runs and platforms, unlike hash())."""
    s = 0x9E3779B97F4A7C15
    for p in parts:
        s = (s ^ (int(p) + 0x9E3779B97F4A7C15 + (s << 6) + (s >> 2))) & ((1 << 64) - 1)
    return s & ((1 << 63) - 1)


def select_indices(
    store: TensorStore,
    split: str | None,
    label_filter: Sequence[str | int] | None,
    max_images: int | None,
    seed: int,
) -> np.ndarray:
    """Sorted row indices of a split (optionally only some labels), capped by a seeded random subset."""
    if split is None:
        return np.zeros(0, dtype=np.int64)
    idx = store.select(split=split, labels=list(label_filter) if label_filter else None)
    if max_images is not None and len(idx) > max_images:
        g = torch.Generator().manual_seed(derive_seed(seed, 0xCAB))
        keep = torch.randperm(len(idx), generator=g)[:max_images].numpy()
        idx = idx[np.sort(keep)]
    return idx.astype(np.int64)


class RowView:
    """Lazy (N, C, H, W) view of some store rows: slicing reads only those rows from the memmap."""

    def __init__(self, images: np.ndarray, indices: np.ndarray):
        self.images, self.indices = images, np.asarray(indices, dtype=np.int64)
        self.shape = (len(self.indices), *images.shape[1:])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: slice) -> np.ndarray:
        return np.asarray(self.images[self.indices[item]], dtype=np.float32)

    def chunks(self, size: int = 1024) -> Iterator[np.ndarray]:
        for i in range(0, len(self), size):
            yield self[i : i + size]


class BatchReader:
    """Iterates (row_indices, float32 tensor) batches of one split for one rank."""

    def __init__(
        self,
        images: np.ndarray,
        indices: np.ndarray,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_single: bool = False,
    ):
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_single = drop_single  # BatchNorm cannot train on a batch of one image

    def shard_size(self) -> int:
        return -(-len(self.indices) // self.world_size) if len(self.indices) else 0

    def num_batches(self) -> int:
        n = self.shard_size()
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and (not self.drop_single or full == 0)) else 0)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's rows for ``epoch``, in training order."""
        n = len(self.indices)
        if n == 0:
            return self.indices
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        perm = torch.randperm(n, generator=g).numpy()
        total = self.shard_size() * self.world_size
        if total > n:  # pad by wrapping so every rank runs the same number of steps
            perm = np.concatenate([perm, np.resize(perm, total - n)])
        return self.indices[perm[self.rank : total : self.world_size]]

    def _batches(self, rows: np.ndarray, pin: bool) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        for i in range(0, len(rows), self.batch_size):
            chunk = np.sort(rows[i : i + self.batch_size])
            if len(chunk) == 1 and self.drop_single and i > 0:
                break
            x = torch.from_numpy(np.ascontiguousarray(self.images[chunk], dtype=np.float32))
            yield chunk, (x.pin_memory() if pin else x)

    def epoch(self, epoch: int, pin: bool = False) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        if len(self.indices) == 0:
            raise ConfigError("no training images (check --train-split and --label-filter)")
        return self._batches(self.epoch_order(epoch), pin)

    def sequential(self, pin: bool = False) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """This rank's share of the split in store order, without padding (for validation sums)."""
        return self._batches(self.indices[self.rank :: self.world_size], pin)

"""Cached tensor store: preprocessed images as memory-mapped .npy arrays plus JSON metadata.

Why: decoding PNG/DICOM/NIfTI and resizing is far slower than training a small VAE, so it is done once.
Opening a store maps the arrays without reading them, so it takes milliseconds whatever its size, and
training reads only the rows it needs (RAM does not grow with the data set).

Layout of a store folder::

    images.npy      float32 (N, C, H, W), preprocessed
    masks.npy       uint8   (N, 1, H, W), 0/1 ground truth (only when the manifest has masks)
    labels.npy      int64   (N,), index into label_names, -1 = unlabelled
    records.json    column lists: path, split, patient_id, has_mask, plus source metadata
    store.json      version, shape, label_names, preprocess config, counts, skipped files
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.atomic import atomic_write_json
from vaedx.data.preprocess import PreprocessConfig
from vaedx.errors import InputError, ModelMismatchError

STORE_VERSION = 1
SPLITS = ("train", "val", "test")


class StoreWriter:
    """Writes rows one at a time into pre-allocated memory-mapped arrays, so RAM stays flat."""

    def __init__(self, out_dir: str | Path, n: int, image_shape: Sequence[int], with_masks: bool):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.images = np.lib.format.open_memmap(
            self.out / "images.npy", mode="w+", dtype=np.float32, shape=(n, *image_shape)
        )
        self.masks = (
            np.lib.format.open_memmap(
                self.out / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, 1, *image_shape[-2:])
            )
            if with_masks
            else None
        )
        self.labels = np.full(n, -1, dtype=np.int64)
        self.records: dict[str, list[Any]] = {"path": [], "split": [], "patient_id": [], "has_mask": []}
        self.count = 0

    def add(
        self,
        image: np.ndarray,
        *,
        label: int = -1,
        mask: np.ndarray | None = None,
        path: str = "",
        split: str = "",
        patient_id: str = "",
        **extra: Any,
    ) -> None:
        i = self.count
        if i >= self.n:
            raise IndexError("store is full")
        if tuple(image.shape) != tuple(self.images.shape[1:]):
            raise InputError(
                f"image shape {tuple(image.shape)} differs from the store's {tuple(self.images.shape[1:])}; "
                "set a common size in the preprocessing config",
                path,
            )
        self.images[i] = image
        if self.masks is not None:
            if mask is not None:
                self.masks[i, 0] = mask
            else:
                self.masks[i] = 0
        self.labels[i] = label
        row = {"path": path, "split": split, "patient_id": patient_id, "has_mask": mask is not None, **extra}
        for k in set(row) | set(self.records):
            col = self.records.setdefault(k, [None] * i)
            col.append(row.get(k))
        self.count += 1

    def add_batch(
        self,
        images: np.ndarray,
        *,
        labels: Sequence[int] | np.ndarray | None = None,
        masks: np.ndarray | None = None,
        records: dict[str, Sequence[Any]] | None = None,
    ) -> None:
        """Write B rows at once (B, C, H, W); the vectorised path for large in-memory sources such as npz.

        ``records`` maps column -> B values (path, split, patient_id, extras); ``masks`` is (B, H, W) or None.
        """
        i, b = self.count, len(images)
        if i + b > self.n:
            raise IndexError("store is full")
        if tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
            got, want = tuple(images.shape[1:]), tuple(self.images.shape[1:])
            raise InputError(f"image shape {got} differs from the store's {want}")
        self.images[i : i + b] = images
        if self.masks is not None:
            self.masks[i : i + b, 0] = 0 if masks is None else masks
        if labels is not None:
            self.labels[i : i + b] = np.asarray(labels, dtype=np.int64)
        cols: dict[str, Sequence[Any]] = {"has_mask": [masks is not None] * b, **(records or {})}
        for k in set(cols) | set(self.records):
            col = self.records.setdefault(k, [None] * i)
            col.extend(cols[k] if k in cols else [None] * b)
        self.count += b

    def finish(
        self,
        label_names: Sequence[str],
        preprocess: PreprocessConfig,
        *,
        skipped: Sequence[dict[str, str]] = (),
        source: str = "",
        extra: dict[str, Any] | None = None,
    ) -> TensorStore:
        """Flush arrays, trim unused rows (files skipped on error), and write the metadata last."""
        n = self.count
        self.images.flush()
        if self.masks is not None:
            self.masks.flush()
        del self.images, self.masks
        if n < self.n:
            _truncate_npy(self.out / "images.npy", n)
            if (self.out / "masks.npy").exists():
                _truncate_npy(self.out / "masks.npy", n)
        np.save(self.out / "labels.npy", self.labels[:n])
        atomic_write_json(self.out / "records.json", self.records)
        shape = list(np.load(self.out / "images.npy", mmap_mode="r").shape)
        meta = {
            "version": STORE_VERSION,
            "n": n,
            "shape": shape,
            "label_names": list(label_names),
            "preprocess": preprocess.model_dump(mode="json"),
            "has_masks": (self.out / "masks.npy").exists(),
            "skipped": list(skipped),
            "source": source,
            **(extra or {}),
        }
        atomic_write_json(self.out / "store.json", meta)
        return TensorStore.open(self.out)


def _truncate_npy(path: Path, n: int) -> None:
    full = np.load(path, mmap_mode="r")
    tmp = path.with_suffix(".trim.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=full.dtype, shape=(n, *full.shape[1:]))
    out[:] = full[:n]
    out.flush()
    del out, full
    tmp.replace(path)


@dataclass
class TensorStore:
    """An opened store. ``images``/``masks`` are read-only memory maps."""

    root: Path
    images: np.ndarray
    masks: np.ndarray | None
    labels: np.ndarray
    label_names: list[str]
    records: dict[str, list[Any]]
    preprocess: PreprocessConfig
    meta: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> TensorStore:
        root = Path(root)
        meta_path = root / "store.json"
        if not meta_path.is_file():
            if (root / "images.npy").is_file():  # store.json is moved in last, so the swap was cut short
                raise InputError(
                    "incomplete tensor store (store.json missing: `vaedx data prepare` was interrupted); "
                    "rerun it with --overwrite",
                    root,
                )
            raise InputError(
                "not a vaedx tensor store (store.json missing); create one with `vaedx data prepare`", root
            )
        try:
            meta = json.loads(meta_path.read_text())
            images = np.load(root / "images.npy", mmap_mode="r")
            masks = np.load(root / "masks.npy", mmap_mode="r") if meta.get("has_masks") else None
            labels = np.load(root / "labels.npy")
            records = json.loads((root / "records.json").read_text())
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"tensor store is damaged or incomplete ({e})", root) from None
        if meta.get("version") != STORE_VERSION:
            raise InputError(
                f"store version {meta.get('version')} is not supported (need {STORE_VERSION})", root
            )
        if images.shape[0] != meta["n"] or labels.shape[0] != meta["n"]:
            raise InputError("tensor store arrays disagree on the number of images", root)
        return cls(
            root=root,
            images=images,
            masks=masks,
            labels=labels,
            label_names=list(meta["label_names"]),
            records=records,
            preprocess=PreprocessConfig.model_validate(meta["preprocess"]),
            meta=meta,
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def splits(self) -> np.ndarray:
        return np.asarray(self.records["split"], dtype=object)

    @property
    def patient_ids(self) -> np.ndarray:
        return np.asarray(self.records["patient_id"], dtype=object)

    @property
    def paths(self) -> list[str]:
        return list(self.records["path"])

    def label_index(self, label: str | int) -> int:
        """Accept a label name ('normal') or its integer code."""
        if isinstance(label, str) and label in self.label_names:
            return self.label_names.index(label)
        try:
            code = int(label)
        except (TypeError, ValueError):
            raise InputError(f"label {label!r} not in {self.label_names}", self.root) from None
        if not -1 <= code < len(self.label_names):
            raise InputError(f"label code {code} out of range for {self.label_names}", self.root)
        return code

    def select(self, split: str | None = None, labels: Sequence[str | int] | None = None) -> np.ndarray:
        """Row indices in a split and/or with given labels."""
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            keep &= self.splits == split
        if labels is not None:
            codes = [self.label_index(lab) for lab in labels]
            keep &= np.isin(self.labels, codes)
        return np.flatnonzero(keep)

    def check_compatible(self, preprocess: PreprocessConfig, image_shape: Sequence[int]) -> None:
        """Refuse to feed a model data prepared differently from its training data."""
        problems = []
        if tuple(image_shape) != self.image_shape:
            problems.append(f"image shape {tuple(image_shape)} (model) vs {self.image_shape} (store)")
        diffs = preprocess.describe_difference(self.preprocess)
        problems += [f"preprocess {d} (model vs store)" for d in diffs]
        if problems:
            raise ModelMismatchError("model and store do not match: " + "; ".join(problems), self.root)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split x label name."""
        out: dict[str, dict[str, int]] = {}
        names = [*self.label_names, "unlabelled"]
        for s, lab in zip(self.splits, self.labels, strict=True):
            name = names[lab] if lab >= 0 else "unlabelled"
            out.setdefault(str(s or "none"), {}).setdefault(name, 0)
            out[str(s or "none")][name] += 1
        return out

"""``ModelInputs``: image arrays, files or store rows turned into what one trained model takes.

Why one reader: detection, diagnosis prediction and the service all feed new images to a model trained on
data prepared one way (its run's :class:`PreprocessConfig`). Reading and preprocessing them in one place
means an image gets the same tensor whichever command scores it, and a file or store that does not fit is
refused with one line naming it rather than scored on garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.preprocess import PreprocessConfig, apply, channel_mapped, no_neighbours
from vaedx.data.store import TensorStore
from vaedx.errors import InputError, ModelMismatchError


@dataclass(frozen=True)
class ModelInputs:
    """Prepares images for a model with ``image_shape`` (C, H, W) trained on ``preprocess``d data.

    ``image_shape`` None accepts any shape (all images of one batch must still agree).
    """

    preprocess: PreprocessConfig
    image_shape: tuple[int, int, int] | None = None

    @classmethod
    def for_model(cls, loaded: Any, fill_size: bool = False) -> ModelInputs:
        """The reader of a :class:`vaedx.runs.loaded.LoadedModel`. ``fill_size``: a model trained without a
        fixed size still needs one for images of any size, so they are resized to its training size."""
        pre, shape = loaded.preprocess, tuple(loaded.image_shape)
        if fill_size and pre.size is None:
            pre = pre.model_copy(update={"size": shape[1:]})
        return cls(pre, shape)  # type: ignore[arg-type]

    def mismatch(self, x: np.ndarray) -> str | None:
        """What about a preprocessed (C, H, W) image does not fit the model, or None."""
        if self.image_shape is None:
            return None
        (c, h, w), (ec, eh, ew) = x.shape, self.image_shape
        diffs = []
        if c != ec:
            diffs.append(f"{c} channels but the model expects {ec}")
        if (h, w) != (eh, ew):
            diffs.append(f"size {h}x{w} but the model expects {eh}x{ew}")
        return "input does not fit the model: " + "; ".join(diffs) if diffs else None

    def prepare(self, array: np.ndarray) -> np.ndarray:
        """One image ((H, W) or (C, H, W)) preprocessed like the training data, unchecked."""
        return apply(np.asarray(array), self.preprocess)[0]

    def array(self, array: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """One image preprocessed and checked; ModelMismatchError naming ``source`` when it does not fit."""
        if self.preprocess.context_slices:  # a 2.5-D model needs the slice's neighbours: volumes only
            raise ModelMismatchError(no_neighbours(self.preprocess), source)
        x = self.prepare(array)
        why = self.mismatch(x)
        if why is not None:
            raise ModelMismatchError(why + " (check the model's preprocessing)", source)
        return x

    def mapping_note(self, n_channels: int) -> str | None:
        """What to tell the user when an image of ``n_channels`` stands for the model's one channel."""
        if not channel_mapped(n_channels, self.preprocess):
            return None
        c = self.preprocess.channels[0]  # type: ignore[index]
        return f"single-channel images taken as channel {c}, the one channel the model was trained on"

    def files(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[tuple[Path, int]]]:
        """(N, C, H, W) float32 from image files (a multi-frame file gives several) and (file, frame) each."""
        images, refs, _ = self.read_files(paths)
        return images, refs

    def read_files(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[tuple[Path, int]], list[str]]:
        """:meth:`files` plus the notes to show the user (a single-channel image mapped to the model's)."""
        from vaedx.io.dispatch import read_any

        images, refs, notes = [], [], set()
        for f in map(Path, paths):
            for k, img in enumerate(read_any(f)):
                note = self.mapping_note(img.array.shape[0] if img.array.ndim == 3 else 1)
                if note:
                    notes.add(note)
                images.append(self.array(img.array, f))
                refs.append((f, k))
        if not images:
            raise InputError("no images to read", paths[0] if paths else None)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise InputError(f"files give different shapes after preprocessing: {sorted(shapes)}")
        return np.stack(images).astype(np.float32), refs, sorted(notes)

    def store(self, store: TensorStore, split: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(images, row indices) of one split (all rows when None) of a store prepared like the model's data.

        The store holds preprocessed images already, so they are only checked (shape and preprocessing).
        """
        if self.image_shape is not None:
            store.check_compatible(self.preprocess, self.image_shape)
        idx = store.select(split=split)
        if idx.size == 0:
            splits = sorted(set(store.splits))
            raise InputError(f"split '{split}' has no images (splits: {splits})", store.root)
        return np.asarray(store.images[idx], dtype=np.float32), idx

"""The one in-memory form every reader returns, so later stages never care which file format came in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Image:
    """A decoded 2-D image: ``array`` is float32 (C, H, W) and ``meta`` holds only non-identifying facts.

    ``meta`` always has the keys of :func:`base_meta` so callers can rely on them whatever the format;
    readers add their own (``frame_index``, ``slice_index``, ``axis``, ``window``...). Every value is a
    plain Python type so the dict can be written to JSON as it is.
    """

    array: np.ndarray = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here once so no consumer has to defend against (H, W) arrays or integer dtypes.
        if self.array.ndim != 3 or self.array.shape[0] < 1:
            raise ValueError(f"Image.array must be (C, H, W) with C >= 1, got shape {self.array.shape}")
        if self.array.dtype != np.float32:
            self.array = self.array.astype(np.float32)

    def __repr__(self) -> str:
        return f"Image(shape={tuple(self.array.shape)}, meta={self.meta!r})"


def base_meta(
    path: Path,
    fmt: str,
    array: np.ndarray,
    *,
    bit_depth: int | None,
    photometric: str | None,
    modality: str | None = None,
    spacing: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The keys every reader fills, in one place so the formats cannot drift apart.

    ``source`` is the bare file name, never the full path: directories often carry patient names or dates.
    """
    return {
        "format": fmt,
        "modality": modality,
        "spacing": spacing,
        "size": (int(array.shape[1]), int(array.shape[2])),
        "channels": int(array.shape[0]),
        "bit_depth": bit_depth,
        "photometric": photometric,
        "source": path.name,
    }

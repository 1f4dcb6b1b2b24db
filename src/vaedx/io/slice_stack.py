"""Numbered 2-D slice files (PNG/TIFF) stacked into one :class:`Volume`, and the LGG patient layout.

Some datasets ship a volume as one image file per slice with the slice number in the name and no
geometry at all: the LGG segmentation set (``TCGA_<inst>_<patient>_<date>/..._<n>.tif`` with
``..._<n>_mask.tif``) is one. Their spacing and orientation are unknown, so the volume gets 1 mm in-plane
and 1 mm between slices and an identity affine, and says so: ``meta["spacing_assumed"]`` is True and
``orientation`` is None. Measurements in mm on such a volume are in voxels, not millimetres.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from vaedx.errors import ConfigError, InputError
from vaedx.io.raster import read_mask, read_raster
from vaedx.io.volume import Volume

# The LGG images hold three MR sequences as channels, in this order (see the dataset's README).
LGG_SEQUENCES = ("pre-contrast", "flair", "post-contrast")
_NUMBERED = re.compile(r"^(?P<stem>.*?)_(?P<n>\d+)(?P<mask>_mask)?$")
_SUFFIXES = (".png", ".tif", ".tiff")
LggSequence = Literal["pre-contrast", "flair", "post-contrast"]


def slice_number(path: str | Path) -> int:
    """The slice number at the end of a file name (``case_12.png``, ``case_12_mask.png`` -> 12)."""
    p = Path(path)
    m = _NUMBERED.match(p.stem)
    if m is None:
        raise InputError("file name has no slice number (expected <name>_<number>.<ext>)", p)
    return int(m.group("n"))


def stack_slices(paths: Iterable[str | Path], *, channel: int | None = None) -> Volume:
    """Stack 2-D slice files into a (z, y, x) Volume in slice-number order.

    ``channel`` picks one channel of multi-channel slices (None: the slices must be single-channel, or
    RGB, which is folded to grey). Slice numbers must run without gaps, since a missing slice would make
    neighbours in the volume that are not neighbours in the patient. Spacing is unknown and assumed to
    be 1 mm in every direction (``meta["spacing_assumed"] = True``), with an identity affine.
    """
    ordered = _ordered(paths)
    planes = []
    for p in ordered:
        img = read_raster(p, rgb="grey" if channel is None else "keep")
        arr = img.array
        if channel is not None:
            if not 0 <= channel < arr.shape[0]:
                raise ConfigError(f"channel {channel} does not exist: {p.name} has {arr.shape[0]} channel(s)")
            arr = arr[channel : channel + 1]
        if arr.shape[0] != 1:
            raise InputError(f"slice has {arr.shape[0]} channels: choose one with channel=", p)
        if planes and arr.shape[1:] != planes[0].shape:
            h, w = planes[0].shape
            raise InputError(
                f"slice size {arr.shape[1]}x{arr.shape[2]} differs from {h}x{w} of {ordered[0].name}", p
            )
        planes.append(arr[0])
    data = np.stack(planes).astype(np.float32)
    meta = {
        "format": "slice-stack",
        "source": ordered[0].parent.name,
        "modality": None,
        "shape": tuple(int(d) for d in data.shape),
        "spacing": (1.0, 1.0, 1.0),
        "spacing_assumed": True,
        "orientation": None,
        "n_slices": len(ordered),
        "first_slice_number": slice_number(ordered[0]),
        "channel": channel,
    }
    return Volume(
        data=data,
        affine=np.eye(4),
        spacing=(1.0, 1.0, 1.0),
        path=ordered[0].parent,
        orientation=None,
        meta=meta,
    )


def read_lgg_patient(folder: str | Path, *, sequence: LggSequence = "flair") -> tuple[Volume, np.ndarray]:
    """One LGG patient folder as (volume of one MR sequence, uint8 0/1 mask volume), both (z, y, x).

    ``sequence`` picks the channel (the masks outline the FLAIR abnormality, hence the default). Slice
    ``n`` of the files is ``z = n - first``. Spacing is not in the files: 1 mm in-plane and 1 mm between
    slices are assumed (``meta["spacing_assumed"] = True``); every slice must have its ``_mask`` file.
    """
    if sequence not in LGG_SEQUENCES:
        raise ConfigError(f"unknown LGG sequence {sequence!r}: use one of {', '.join(LGG_SEQUENCES)}")
    root = Path(folder)
    if not root.is_dir():
        raise InputError("LGG patient folder not found", root)
    files = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in _SUFFIXES]
    images = [f for f in files if _NUMBERED.match(f.stem) and not f.stem.endswith("_mask")]
    masks = {slice_number(f): f for f in files if f.stem.endswith("_mask") and _NUMBERED.match(f.stem)}
    if not images:
        raise InputError("no numbered slice images (<case>_<n>.tif) in this folder", root)
    volume = stack_slices(images, channel=LGG_SEQUENCES.index(sequence))
    planes = []
    for p in _ordered(images):
        n = slice_number(p)
        if n not in masks:
            raise InputError(f"slice {n} has no mask ({p.stem}_mask{p.suffix} is missing)", p)
        planes.append(read_mask(masks[n], volume.data.shape[1:]))
    mask = np.stack(planes).astype(np.uint8)
    volume.meta.update(
        format="lgg",
        source=root.name,
        sequence=sequence,
        modality="MR",
        tumour_slices=int((mask.reshape(len(mask), -1).max(axis=1) > 0).sum()),
    )
    volume.path = root
    return volume, mask


def _ordered(paths: Iterable[str | Path]) -> list[Path]:
    """Paths sorted by slice number, refusing duplicates and gaps in the numbering."""
    items = sorted(((slice_number(p), Path(p)) for p in paths), key=lambda t: t[0])
    if not items:
        raise ConfigError("no slice files given")
    for (a, pa), (b, pb) in zip(items, items[1:], strict=False):
        if a == b:
            raise InputError(f"slice number {a} appears twice (also {pa.name})", pb)
        if b != a + 1:
            raise InputError(f"gap in slice numbers: {a} is followed by {b} (slices missing)", pb)
    return [p for _, p in items]

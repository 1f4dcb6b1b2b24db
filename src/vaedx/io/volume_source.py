"""Which inputs are volumes, and one reader for all of them.

A path given to ``vaedx detect --input`` (or uploaded to the service) is a volume when it is a 3-D NIfTI,
a .zip of DICOM files, a folder whose DICOM files form one series of several slices (the rule of
:mod:`vaedx.io.series_folder`, which ``vaedx data index`` follows too), or a folder of numbered slice
images of one case (``<case>_<n>.png``, as the LGG set ships). Anything else is a 2-D image or a folder of
them, read as before. The rule is decided from headers and names only, so sniffing a folder
never decodes pixels.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import nibabel as nib

from vaedx.io._files import read_guarded
from vaedx.io.dicom_series import read_dicom_series
from vaedx.io.formats import detect_format
from vaedx.io.series_folder import is_dicom_series
from vaedx.io.slice_stack import _NUMBERED, _SUFFIXES, stack_slices
from vaedx.io.volume import Volume, read_nifti_volume

VolumeKind = Literal["nifti", "dicom-series", "slice-stack"]


def volume_kind(path: str | Path) -> VolumeKind | None:
    """What kind of volume ``path`` is, or None when it is a 2-D image (or a folder of unrelated images)."""
    p = Path(path)
    if p.is_dir():
        return _folder_kind(p)
    if not p.is_file():
        return None
    fmt = _format(p)
    if fmt == "nifti":
        try:
            shape = nib.load(p).shape
        except Exception:
            return None  # the 2-D reader reports what is wrong with the file
        return "nifti" if len(shape) >= 3 and sum(int(d) > 1 for d in shape[:3]) == 3 else None
    if fmt is None and zipfile.is_zipfile(p):
        return "dicom-series"
    return None


def read_volume(path: str | Path, *, channel: int | None = None, kind: VolumeKind | None = None) -> Volume:
    """The volume at ``path`` (see :func:`volume_kind`); ``channel`` picks one channel of slice images.

    ``kind``: what :func:`volume_kind` already said of ``path``, so a folder is not walked again.
    """
    p = Path(path)
    kind = kind or volume_kind(p)
    if kind == "nifti":
        return read_guarded("NIfTI", p, read_nifti_volume)
    if kind == "dicom-series":
        return read_guarded("DICOM series", p, read_dicom_series)
    if kind == "slice-stack":
        return read_guarded("slice", p, lambda q: stack_slices(_slice_files(q), channel=channel))
    from vaedx.errors import InputError

    raise InputError("not a volume (a 3-D NIfTI, a DICOM series folder or zip, or numbered slices)", p)


def volume_id(path: str | Path) -> str:
    """A volume's name in outputs: its file or folder name without extensions (never the full path)."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".zip"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _format(p: Path) -> str | None:
    try:
        return detect_format(p)
    except Exception:
        return None


def _slice_files(folder: Path) -> list[Path]:
    return [
        f
        for f in sorted(folder.iterdir())
        if f.is_file() and f.suffix.lower() in _SUFFIXES and _NUMBERED.match(f.stem) and not _is_mask(f)
    ]


def _is_mask(f: Path) -> bool:
    m = _NUMBERED.match(f.stem)
    return bool(m and m.group("mask"))


def _folder_kind(folder: Path) -> VolumeKind | None:
    files = [f for f in sorted(folder.rglob("*")) if f.is_file() and not f.name.startswith(".")]
    slices = _slice_files(folder)
    if len(slices) >= 2:
        stems = {_NUMBERED.match(f.stem).group("stem") for f in slices}  # type: ignore[union-attr]
        images = [f for f in files if f.suffix.lower() in _SUFFIXES and not _is_mask(f)]
        if len(stems) == 1 and len(images) == len(slices):
            return "slice-stack"
    if any(f.name.lower().endswith((".nii", ".nii.gz")) for f in files):
        return None  # a folder holding NIfTI volumes is a collection of volumes, not one series
    return "dicom-series" if is_dicom_series(folder, files) else None


__all__ = ["VolumeKind", "read_volume", "volume_id", "volume_kind"]

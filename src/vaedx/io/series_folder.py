"""Whether a folder is one DICOM series: the one rule ``vaedx data index`` and ``vaedx detect --input`` share.

A folder is one series when the DICOM images in it and below it (searched recursively) are at least two
and all carry one SeriesInstanceUID. Why by UID: a folder of one radiograph per patient is a pile of
unrelated images, a folder of one CT series is a volume, and the UID (read from headers only, never
stored) tells them apart. Why recursively: :func:`vaedx.io.read_dicom_series` reads a folder's whole tree,
so the rule judges exactly the files the reader will stack; a rule that looked at a folder's own files
only could pass a folder whose sub-folders hold a second series, which the reader then refuses.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from vaedx.io.slice_stack import _SUFFIXES

# Endings that are never DICOM, so a folder of slices or volumes is decided without opening its files.
_NOT_DICOM = (*_SUFFIXES, ".jpg", ".jpeg", ".nii", ".gz", ".npz", ".csv", ".txt", ".json")


def is_dicom_series(folder: Path, files: Iterable[Path] | None = None) -> bool:
    """True when the DICOM images under ``folder`` are at least two of one series (see the module).

    ``files``: every file under ``folder`` when the caller has already walked it. Files that are not
    DICOM images (DICOMDIR, reports, README files, thumbnails) do not count, as the reader skips them.
    """
    if files is None:
        files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    uid, count = None, 0
    for f in files:
        found = series_uid(f)
        if found is None:
            continue
        if uid is not None and found != uid:
            return False  # a second series: the reader would refuse the folder
        uid, count = found, count + 1
    return count >= 2


def series_uid(f: Path) -> str | None:
    """SeriesInstanceUID of a DICOM image file (header only), None for anything else."""
    if f.suffix.lower() in _NOT_DICOM:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError):
        return None
    if "Rows" not in ds or "SeriesInstanceUID" not in ds:
        return None
    return str(ds.SeriesInstanceUID)


__all__ = ["is_dicom_series", "series_uid"]

"""One entry point for any single-image file, so callers walking a folder need no per-format code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import read_guarded
from vaedx.io.dicom import read_dicom
from vaedx.io.formats import detect_format
from vaedx.io.image import Image
from vaedx.io.nifti import read_nifti
from vaedx.io.raster import read_raster


def _options(reader: Callable[..., Any]) -> set[str]:
    params = inspect.signature(reader).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


_READERS: dict[str, Callable[..., Any]] = {"raster": read_raster, "dicom": read_dicom, "nifti": read_nifti}
_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "dicom": "DICOM", "nifti": "NIfTI"}
_KNOWN = set().union(*(_options(r) for r in _READERS.values()))


def read_any(path: str | Path, **opts: Any) -> list[Image]:
    """Read ``path`` with the reader its content calls for.

    Options are passed only to the readers that take them, so one call such as
    ``read_any(p, window="lung", rgb="grey")`` works over a folder mixing DICOM and PNG; an option no
    reader knows is a ConfigError rather than silently ignored.
    """
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        known = ", ".join(sorted(_KNOWN))
        raise ConfigError(f"unknown reader option(s) {', '.join(unknown)}; known: {known}")
    fmt = detect_format(path)
    if fmt == "npz":
        raise InputError("npz archives hold whole data sets: use read_npz or the dataset index", path)
    reader = _READERS["raster" if fmt in ("png", "jpeg", "tiff") else fmt]
    kwargs = {k: v for k, v in opts.items() if k in _options(reader)}
    result = read_guarded(_NAMES.get(fmt, fmt), path, reader, **kwargs)
    return result if isinstance(result, list) else [result]

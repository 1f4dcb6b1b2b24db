"""DICOM reader: rescale to physical values (HU for CT), optional VOI windowing, one Image per frame.

Metadata is copied by whitelist only, so names, IDs, dates, institutions and UIDs can never leak into
meta, logs or reports, whatever the file contains.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import describe, existing_file
from vaedx.io.image import Image, base_meta

# (centre, width) in HU; the usual radiology presets.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dicom(path: str | Path, *, window: str | tuple[float, float] | None = None) -> list[Image]:
    """Read every frame of a DICOM file as (C, H, W) float32.

    ``window``: None keeps rescaled values (HU for CT); a :data:`CT_WINDOWS` name or ``(centre, width)``
    maps to [0, 1] with the DICOM linear VOI function; ``"auto"`` uses the file's own window. MONOCHROME1
    is inverted so that higher always means brighter.
    """
    wanted = _parse_window(window)
    p = existing_file(path)
    ds = _load(p)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InputError("DICOM has no pixel data", p)
    try:
        raw = np.asarray(ds.pixel_array)
    except Exception as e:
        raise decode_failure(ds, e, p) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frames = raw[None] if n_frames == 1 else raw
    if photometric == "PALETTE COLOR":
        frames = apply_color_lut(frames, ds)
    if frames.ndim == 4:  # colour: (F, H, W, 3); pydicom has already turned YBR into RGB
        if wanted is not None:
            raise InputError(f"windowing needs a greyscale DICOM; this one is {photometric}", p)
        stack, used = np.moveaxis(frames, -1, 1).astype(np.float32), [None] * len(frames)
        rescale = [(1.0, 0.0)] * len(frames)
    else:
        values, rescale = _modality(frames, ds)
        stack, used = _present(values, ds, wanted, photometric == "MONOCHROME1", p)
    images = []
    for i, arr in enumerate(stack):
        arr = np.ascontiguousarray(arr if arr.ndim == 3 else arr[None], dtype=np.float32)
        images.append(Image(arr, _meta(p, ds, arr, i, len(stack), photometric, rescale[i], used[i], window)))
    return images


def decode_failure(ds: Dataset, error: Exception, where: str | Path) -> InputError:
    """One line for pixel data pydicom cannot decode: the transfer syntax, pydicom's reason, and for a
    compressed syntax whose decoder plugin is absent, the extra that installs it."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    what = syntax.name if syntax is not None else "unknown transfer syntax"
    reason = describe(error)
    compressed = syntax is not None and syntax.is_compressed
    no_plugin = "missing dependencies" in reason or "no pixel data handler" in reason.lower()
    hint = (
        "; compressed data needs the dicom extra: pip install 'vaedx[dicom]'"
        if compressed and (no_plugin or importlib.util.find_spec("pylibjpeg") is None)
        else ""
    )
    return InputError(f"cannot decode DICOM pixel data ({what}: {reason}){hint}", where)


def _parse_window(window: Any) -> str | tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, str):
        key = window.strip().lower()
        if key == "auto":
            return "auto"
        if key in CT_WINDOWS:
            return CT_WINDOWS[key]
        names = ", ".join(CT_WINDOWS)
        raise ConfigError(f"unknown window {window!r}: use one of {names}, 'auto' or (centre, width)")
    try:
        centre, width = (float(v) for v in window)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"window must be a preset name, 'auto' or (centre, width), got {window!r}") from e
    if not width >= 1:
        raise ConfigError(f"window width must be at least 1, got {width}")
    return centre, width


def _load(p: Path) -> Dataset:
    """Parse the file; files without the preamble are read with force=True but must look like DICOM."""
    try:
        return pydicom.dcmread(p)
    except InvalidDicomError:
        pass
    except Exception as e:
        raise InputError(f"cannot read DICOM ({describe(e)})", p) from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # garbage input makes pydicom warn on every 'tag'
            ds = pydicom.dcmread(p, force=True)
            recognisable = any(k in ds for k in ("SOPClassUID", "Modality", "Rows", *_PIXEL_KEYWORDS))
    except Exception as e:
        raise InputError(f"not a DICOM file ({describe(e)})", p) from e
    if not recognisable:
        raise InputError("not a DICOM file: no 'DICM' marker and no recognisable DICOM elements", p)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # pydicom needs the syntax to decode pixels; a bare stream is in the encoding it was parsed with.
        implicit, little = ds.original_encoding
        ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
    return ds


def _lookup(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """An attribute from the per-frame, then the shared functional groups (enhanced multi-frame), then top
    level: enhanced CT/MR keep rescale, spacing and window there instead of in the main dataset."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return ds.get(keyword)


def _modality(frames: np.ndarray, ds: Dataset) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Stored values -> physical values (Modality LUT, or per-frame RescaleSlope/Intercept)."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(frames, ds).astype(np.float64), [(1.0, 0.0)] * len(frames)
    out = np.empty(frames.shape, dtype=np.float64)
    rescale = []
    for i, frame in enumerate(frames):
        slope = _lookup(ds, i, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _lookup(ds, i, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = 1.0 if slope is None else float(slope)
        intercept = 0.0 if intercept is None else float(intercept)
        out[i] = frame * slope + intercept
        rescale.append((slope, intercept))
    return out, rescale


def _present(
    values: np.ndarray, ds: Dataset, wanted: str | tuple[float, float] | None, invert: bool, p: Path
) -> tuple[np.ndarray, list[tuple[float, float, str] | None]]:
    """Apply the window (if any) frame by frame, then MONOCHROME1 inversion."""
    if wanted is None:
        if invert:  # max + min - x keeps the value range, so later normalisation is unaffected
            values = values.max() + values.min() - values
        return values.astype(np.float32), [None] * len(values)
    out = np.empty(values.shape, dtype=np.float32)
    used: list[tuple[float, float, str] | None] = []
    for i, frame in enumerate(values):
        if wanted == "auto" and _lut_only(ds, i):
            y, entry = _voi_lut_table(frame, ds, p)
            out[i] = 1.0 - y if invert else y
            used.append(entry)
            continue
        centre, width, function = _file_window(ds, i, p) if wanted == "auto" else (*wanted, "LINEAR")
        y = _voi(frame, centre, width, function)
        out[i] = 1.0 - y if invert else y
        used.append((centre, width, function))
    return out, used


def _lut_only(ds: Dataset, frame: int) -> bool:
    """The file's own VOI is a lookup table (VOI LUT Sequence, usual in CR/DX) rather than a window."""
    has_window = _lookup(ds, frame, "FrameVOILUTSequence", "WindowCenter") is not None
    return not has_window and bool(ds.get("VOILUTSequence"))


def _voi_lut_table(frame: np.ndarray, ds: Dataset, p: Path) -> tuple[np.ndarray, tuple[float, float, str]]:
    """The first VOI LUT of the file applied as pydicom does, scaled to [0, 1] by the table's bit depth.

    The LUT maps modality values to display values of ``LUTDescriptor[2]`` bits, so dividing by
    2**bits - 1 gives the same [0, 1] range as a window. Recorded as (first input value, table length, 'LUT').
    """
    from pydicom.pixels import apply_voi_lut

    item = ds.VOILUTSequence[0]
    try:
        length, first, bits = (int(v) for v in item.LUTDescriptor)
        y = apply_voi_lut(np.asarray(frame), ds, index=0, prefer_lut=True)
    except Exception as e:
        raise InputError(f"VOI LUT Sequence cannot be applied ({describe(e)})", p) from e
    top = float(2 ** min(max(bits, 1), 16) - 1)
    scaled = np.clip(np.asarray(y, dtype=np.float64) / top, 0.0, 1.0)
    return scaled, (float(first), float(length or 65536), "LUT")


def _file_window(ds: Dataset, frame: int, p: Path) -> tuple[float, float, str]:
    centre = _lookup(ds, frame, "FrameVOILUTSequence", "WindowCenter")
    width = _lookup(ds, frame, "FrameVOILUTSequence", "WindowWidth")
    if centre is None or width is None:
        raise InputError("DICOM has no WindowCenter/WindowWidth for window='auto'; give a preset instead", p)
    function = str(_lookup(ds, frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").upper()
    return _first(centre), _first(width), function


def _first(value: Any) -> float:
    """Multi-valued WindowCenter/Width list alternative windows; the first is the file's default."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _voi(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """VOI LUT functions of DICOM PS3.3 C.11.2.1.2, with output range [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    if w < 1:  # the LINEAR form divides by w - 1
        return (x > c - 0.5).astype(np.float64)
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


def _meta(
    p: Path,
    ds: Dataset,
    arr: np.ndarray,
    i: int,
    n: int,
    photometric: str,
    rescale: tuple[float, float],
    used: tuple[float, float, str] | None,
    window: Any,
) -> dict[str, Any]:
    spacing = _lookup(ds, i, "PixelMeasuresSequence", "PixelSpacing") or ds.get("ImagerPixelSpacing")
    thickness = _lookup(ds, i, "PixelMeasuresSequence", "SliceThickness")
    bits = ds.get("BitsStored")
    meta = base_meta(
        p,
        "dicom",
        arr,
        bit_depth=int(bits) if bits is not None else None,
        photometric=photometric,
        modality=str(ds.Modality) if ds.get("Modality") else None,
        spacing=(float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else None,
    )
    meta.update(
        frame_index=i,
        n_frames=n,
        slice_thickness=float(thickness) if thickness not in (None, "") else None,
        bits_allocated=int(ds.BitsAllocated) if ds.get("BitsAllocated") is not None else None,
        rescale_slope=rescale[0],
        rescale_intercept=rescale[1],
        window=(used[0], used[1]) if used else None,
        window_function=used[2] if used else None,
        window_preset=window.strip().lower() if isinstance(window, str) and used else None,
    )
    return meta

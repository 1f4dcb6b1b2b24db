"""A DICOM series (a folder or a .zip of slice files, or multi-frame files) as one :class:`Volume`.

Slices are put in order by where they are in the patient (ImagePositionPatient projected on the slice
normal), not by file name or InstanceNumber, which scanners and anonymisers renumber freely. A series that
cannot form a regular grid (a missing slice, mixed sizes or orientations) is refused with one line naming
the offending file: resampling it silently would put anomalies in the wrong place.

Compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000) decode through pydicom's pixel-data plugins:
install the ``dicom`` extra (``pip install vaedx[dicom]``). Metadata is whitelisted as in
:mod:`vaedx.io.dicom`: geometry, modality and series description only, never names, IDs, dates or UIDs.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import describe
from vaedx.io.dicom import _PIXEL_KEYWORDS, _lookup, decode_failure
from vaedx.io.volume import Volume, orientation_code

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_ORIENTATION_TOL = 1e-3  # direction cosines: about 0.06 degrees
_GAP_TOL = 0.1  # a step may differ from the usual one by 10 % (rounding in IPP) before it counts as a gap


@dataclass
class _Slice:
    """One 2-D frame of the series: where it came from, and its geometry."""

    ds: Dataset
    name: str
    frame: int | None  # frame index in a multi-frame file, None for a single-frame file
    rows: int
    cols: int
    row_cos: np.ndarray | None  # direction of increasing column index (IOP[:3]), LPS
    col_cos: np.ndarray | None  # direction of increasing row index (IOP[3:]), LPS
    position: np.ndarray | None  # IPP of the first voxel, LPS mm
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    instance: tuple[int, int]  # (InstanceNumber, frame): the order of last resort


def read_dicom_series(path: str | Path, *, series_uid: str | None = None, voi: bool = False) -> Volume:
    """Read one DICOM series from a folder (searched recursively) or a .zip of files as a Volume.

    Values are rescaled to physical units with the Modality LUT (HU for CT). ``voi=True`` also applies
    the file's VOI LUT / window, for display only: the values then no longer mean HU. Several series in
    the input are refused with one line listing them unless ``series_uid`` picks one. Files that are not
    DICOM images (DICOMDIR, reports, README files) are skipped.
    """
    p = Path(path)
    first, ordered, step, by_position = _ordered_series(p, series_uid)
    decoded: dict[int, np.ndarray] = {}
    data = np.stack([_values(s, voi, decoded) for s in ordered]).astype(np.float32)
    affine, spacing = _affine(ordered, step)
    meta = _meta(p, first.ds, ordered, spacing, by_position, voi, data)
    meta["orientation"] = orientation_code(affine)
    return Volume(
        data=np.ascontiguousarray(data),
        affine=affine,
        spacing=spacing,
        path=p,
        orientation=meta["orientation"],
        meta=meta,
    )


def series_sources(path: str | Path, *, series_uid: str | None = None) -> list[tuple[Dataset, int | None]]:
    """``(dataset, frame)`` behind each slice ``k`` of ``read_dicom_series(path).data``, in that order.

    ``frame`` is the 0-based frame index in a multi-frame file, None for a single-frame file. Writers of
    derived DICOM objects (segmentations) need the source instances slice by slice, in exactly the order
    the volume was built, or a mask would be attached to the wrong slice. Pixels are not decoded.
    """
    _, ordered, _, _ = _ordered_series(Path(path), series_uid)
    return [(s.ds, s.frame) for s in ordered]


def _ordered_series(
    p: Path, series_uid: str | None
) -> tuple[_Slice, list[_Slice], np.ndarray | None, bool]:
    """The one series under ``p``, checked: its first slice in file order (whose header describes the
    series), its slices in slice order, the step between them and whether positions ordered them. The
    reader and the SEG writer share it, so a mask goes to the slice it was computed on."""
    if not p.exists():
        raise InputError("file or folder not found", p)
    slices = [s for ds, name in _datasets(p) for s in _frames(ds, name)]
    if not slices:
        raise InputError("no DICOM images found", p)
    slices = _one_series(slices, series_uid, p)
    _check_consistent(slices)
    return (slices[0], *_order(slices))


def _datasets(p: Path) -> Iterator[tuple[Dataset, str]]:
    """Every DICOM dataset under ``p`` with the name to show in messages; other files are skipped."""
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            ds = _parse(lambda f=f: pydicom.dcmread(f), str(f))
            if ds is not None:
                yield ds, str(f)
        return
    if not zipfile.is_zipfile(p):
        raise InputError("a DICOM series must be a folder or a .zip of DICOM files", p)
    try:
        with zipfile.ZipFile(p) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                raw = archive.read(info)
                ds = _parse(lambda raw=raw: pydicom.dcmread(io.BytesIO(raw)), f"{p}:{info.filename}")
                if ds is not None:
                    yield ds, f"{p}:{info.filename}"
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"cannot read zip archive ({describe(e)})", p) from e


def _parse(read: Any, name: str) -> Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd values in unrelated tags should not flood the log
            ds = read()
    except (InvalidDicomError, EOFError):
        return None  # not DICOM (README, thumbnails...)
    except Exception as e:
        raise InputError(f"cannot read DICOM ({describe(e)})", name) from e
    media_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if media_class == _DICOMDIR_CLASS or "Rows" not in ds:
        return None  # an index or a non-image object (report, plan): not part of any volume
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InputError("DICOM image has no pixel data", name)
    return ds


def _frames(ds: Dataset, name: str) -> list[_Slice]:
    """The frames of one file with their geometry: per-frame functional groups (enhanced multi-frame),
    a GridFrameOffsetVector (RT dose, NM), or the single frame's own attributes."""
    n = max(_int(ds, "NumberOfFrames", 1, name), 1)
    rows, cols = _int(ds, "Rows", None, name), _int(ds, "Columns", None, name)
    instance = _int(ds, "InstanceNumber", 0, name)
    offsets = ds.get("GridFrameOffsetVector")
    out = []
    for f in range(n):
        iop = _lookup(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")
        ipp = _lookup(ds, f, "PlanePositionSequence", "ImagePositionPatient")
        spacing = _lookup(ds, f, "PixelMeasuresSequence", "PixelSpacing")
        row_cos = col_cos = position = None
        if iop is not None and len(iop) == 6:
            row_cos, col_cos = np.array(iop[:3], float), np.array(iop[3:], float)
        if ipp is not None and len(ipp) == 3:
            position = np.array(ipp, float)
            if offsets is not None and n > 1 and len(offsets) == n and row_cos is not None:
                # relative offsets start at 0; absolute ones at the first frame's z: subtracting suits both
                position = position + float(offsets[f] - offsets[0]) * np.cross(row_cos, col_cos)
        out.append(
            _Slice(
                ds=ds,
                name=name,
                frame=f if n > 1 else None,
                rows=rows,
                cols=cols,
                row_cos=row_cos,
                col_cos=col_cos,
                position=position,
                pixel_spacing=_pair(spacing),
                instance=(instance, f),
            )
        )
    return out


def _int(ds: Dataset, keyword: str, default: int | None, name: str) -> int:
    value = ds.get(keyword)
    if value in (None, "") and default is not None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise InputError(f"{keyword} is missing or not a number ({value!r})", name) from e


def _pair(value: Any) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if value and len(value) == 2 else None


def _one_series(slices: list[_Slice], series_uid: str | None, p: Path) -> list[_Slice]:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(str(s.ds.get("SeriesInstanceUID", "")), []).append(s)
    if series_uid is not None:
        if series_uid not in groups:
            raise ConfigError(f"series {series_uid} is not in {p}; it holds {_listing(groups)}")
        return groups[series_uid]
    if len(groups) > 1:
        raise InputError(f"{len(groups)} series found, choose one with series_uid: {_listing(groups)}", p)
    return next(iter(groups.values()))


def _listing(groups: dict[str, list[_Slice]]) -> str:
    parts = []
    for uid, items in groups.items():
        ds = items[0].ds
        what = " ".join(str(v) for v in (ds.get("Modality"), ds.get("SeriesDescription")) if v)
        parts.append(f"{uid or '(no SeriesInstanceUID)'} ({what + ', ' if what else ''}{len(items)} images)")
    return "; ".join(parts)


def _check_consistent(slices: list[_Slice]) -> None:
    """Same size, orientation and pixel spacing everywhere, else the slices are not one grid."""
    ref = slices[0]
    for s in slices[1:]:
        if (s.rows, s.cols) != (ref.rows, ref.cols):
            raise InputError(
                f"slice size {s.rows}x{s.cols} differs from {ref.rows}x{ref.cols} in {_short(ref)}", s.name
            )
        if not _same_orientation(s, ref):
            raise InputError(
                f"slice orientation (ImageOrientationPatient) differs from {_short(ref)}", s.name
            )
        if not _same_spacing(s.pixel_spacing, ref.pixel_spacing):
            raise InputError(f"pixel spacing {s.pixel_spacing} differs from {ref.pixel_spacing}", s.name)


def _same_orientation(a: _Slice, b: _Slice) -> bool:
    if a.row_cos is None or b.row_cos is None or a.col_cos is None or b.col_cos is None:
        return a.row_cos is None and b.row_cos is None
    return bool(
        np.allclose(a.row_cos, b.row_cos, atol=_ORIENTATION_TOL)
        and np.allclose(a.col_cos, b.col_cos, atol=_ORIENTATION_TOL)
    )


def _same_spacing(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(a, b, rtol=1e-3))


def _order(slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray | None, bool]:
    """Slices sorted along the normal, the step vector between neighbours (LPS mm), and whether the
    order came from positions (True) or fell back to InstanceNumber (False)."""
    ref = slices[0]
    if ref.row_cos is None or any(s.position is None for s in slices):
        return sorted(slices, key=lambda s: (s.instance, s.name)), None, False
    normal = np.cross(ref.row_cos, ref.col_cos)
    ordered = sorted(slices, key=lambda s: (float(np.dot(s.position, normal)), s.instance))
    if len(ordered) == 1:
        return ordered, None, True
    depth = np.array([float(np.dot(s.position, normal)) for s in ordered])
    steps = np.diff(depth)
    for i, d in enumerate(steps):
        if d < 1e-3:
            raise InputError(
                f"slice at the same position ({depth[i]:.3f} mm along the normal) as {_short(ordered[i])}: "
                "echoes, phases or time points of one series are not one volume",
                ordered[i + 1].name,
            )
    usual = float(np.median(steps))
    for i, d in enumerate(steps):
        if abs(d - usual) > _GAP_TOL * usual + 1e-3:
            raise InputError(
                f"gap in slice spacing: {d:.3f} mm from the previous slice where the series steps "
                f"{usual:.3f} mm (missing or extra slices?)",
                ordered[i + 1].name,
            )
    step = (ordered[-1].position - ordered[0].position) / (len(ordered) - 1)
    return ordered, step, True


def _values(s: _Slice, voi: bool, decoded: dict[int, np.ndarray]) -> np.ndarray:
    """Physical values of one frame: Modality LUT or rescale (per frame for enhanced multi-frame)."""
    if id(s.ds) not in decoded:  # a multi-frame file is decoded once for all its frames
        decoded[id(s.ds)] = _pixels(s.ds, s.name)
    frames = decoded[id(s.ds)]
    raw = frames if s.frame is None else frames[s.frame]
    if raw.ndim != 2:
        photometric = s.ds.get("PhotometricInterpretation", "?")
        raise InputError(f"a volume needs greyscale slices; this one is {photometric}", s.name)
    values = apply_modality_lut(raw, _rescale_view(s.ds, s.frame))
    dose = s.ds.get("DoseGridScaling")
    if dose is not None:
        values = values * float(dose)  # RT dose grids store Gy / DoseGridScaling
    if voi:
        values = apply_voi_lut(np.asarray(values), s.ds)
    return np.asarray(values, dtype=np.float32)


def _pixels(ds: Dataset, name: str) -> np.ndarray:
    """Decoded pixel data of a file, or one line naming the file and its transfer syntax."""
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as e:
        raise decode_failure(ds, e, name) from e
    return arr


def _rescale_view(ds: Dataset, frame: int | None) -> Dataset:
    """The dataset itself, or for an enhanced multi-frame file a small one holding this frame's rescale
    (kept in the functional groups there), so ``apply_modality_lut`` sees it where it looks."""
    if frame is None or ds.get("ModalityLUTSequence") or "PerFrameFunctionalGroupsSequence" not in ds:
        return ds
    view = Dataset()
    slope = _lookup(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _lookup(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is not None and intercept is not None:
        view.RescaleSlope, view.RescaleIntercept = slope, intercept
    return view


def _affine(ordered: list[_Slice], step: np.ndarray | None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Voxel (i, j, k) -> RAS mm from IOP, IPP and PixelSpacing (DICOM is LPS; flip x and y)."""
    ref = ordered[0]
    dr, dc = ref.pixel_spacing or (1.0, 1.0)
    if ref.row_cos is None:
        row_cos, col_cos = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    else:
        row_cos, col_cos = ref.row_cos, ref.col_cos
    if step is None:
        between = ref.ds.get("SpacingBetweenSlices") or ref.ds.get("SliceThickness") or 1.0
        step = np.cross(row_cos, col_cos) * float(between)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc
    lps[:3, 1] = col_cos * dr
    lps[:3, 2] = step
    lps[:3, 3] = ref.position if ref.position is not None else 0.0
    dz = float(np.linalg.norm(step))
    return _LPS_TO_RAS @ lps, (dz, float(dr), float(dc))


def _meta(
    p: Path,
    ds: Dataset,
    ordered: list[_Slice],
    spacing: tuple[float, float, float],
    by_position: bool,
    voi: bool,
    data: np.ndarray,
) -> dict[str, Any]:
    """Whitelisted, non-identifying facts only (see the module docstring)."""
    thickness = ds.get("SliceThickness")
    bits = ds.get("BitsStored")
    description = ds.get("SeriesDescription")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return {
        "format": "dicom-series",
        "source": p.name,
        "modality": str(ds.Modality) if ds.get("Modality") else None,
        "series_description": str(description) if description else None,
        "shape": tuple(int(d) for d in data.shape),
        "spacing": spacing,
        "spacing_assumed": not by_position and len(ordered) > 1,
        "slice_order": "position" if by_position else "instance_number",
        "n_slices": len(ordered),
        "n_files": len({s.name for s in ordered}),
        "slice_thickness": float(thickness) if thickness not in (None, "") else None,
        "bit_depth": int(bits) if bits is not None else None,
        "photometric": str(ds.get("PhotometricInterpretation", "")).strip() or None,
        "voi_applied": voi,
        "transfer_syntax": syntax.name if syntax is not None else None,
    }


def _short(s: _Slice) -> str:
    return Path(s.name.split(":")[-1]).name

"""A binary anomaly mask as a DICOM Segmentation (SEG) object that references its source series.

Why SEG: a PACS or viewer (OHIF, 3D Slicer, Horos) shows a SEG as an overlay on the very images it was
computed on, because every frame names its source instance; a NIfTI mask next to a DICOM series has to be
lined up by hand. The object is built with highdicom (``pip install 'vaedx[dicom]'``).

Patient identifiers: the SEG standard requires a SEG to carry the Patient, Study and Frame of Reference
modules of its source images, so highdicom copies the source's patient name, ID, birth date, study UIDs and
dates into the SEG file. This file is therefore as identifying as the source series and must be handled like
it; it is the only vaedx output that holds such values, and nothing of them goes into logs, JSON or file
names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from vaedx.atomic import atomic_write
from vaedx.errors import ConfigError, InputError
from vaedx.io._files import describe
from vaedx.io.dicom_series import series_sources
from vaedx.version import __version__

INSTALL_HINT = "DICOM SEG output needs highdicom: pip install 'vaedx[dicom]'"
_SERIES_NUMBER_OFFSET = 1000  # a derived series is numbered apart from the scanner's own series numbers


def write_dicom_seg(
    mask: np.ndarray,
    series: str | Path,
    out_path: str | Path,
    *,
    label: str = "anomaly",
    algorithm_name: str = "vaedx",
    algorithm_version: str = __version__,
    series_uid: str | None = None,
) -> Path:
    """Write ``mask`` as a BINARY DICOM SEG with one segment referencing the images of ``series``.

    ``mask`` (bool, or integers 0/1) is laid out like ``read_dicom_series(series, series_uid=...).data``:
    (z, y, x) in the reader's slice order, which is what ``Volume.to_original`` gives back for a DICOM
    series volume once its NIfTI (x, y, z) axes are transposed to (z, y, x). Frame ``k`` of the mask is tied
    to the instance (or enhanced multi-frame frame) that slice ``k`` was read from, so the overlay lands on
    the right image whatever the file names or InstanceNumbers say.

    The segment is an AUTOMATIC "Lesion" (SNOMED CT 52988006) in the category "Morphologically abnormal
    structure" (49755003), labelled ``label``, with the algorithm identified as ``algorithm_name`` /
    ``algorithm_version`` (family: artificial intelligence). Only slices with mask voxels become frames; an
    empty mask keeps every frame (all empty), since a SEG must hold at least one frame. The Patient and
    Study modules of the source are copied into the SEG, as the standard requires (see the module
    docstring): the file identifies the patient just like the source images. Written atomically.
    """
    hd, codes = _highdicom()
    sources = series_sources(series, series_uid=series_uid)
    frames = _check_mask(mask, sources)
    images, pixels = _source_layout(sources, frames, Path(series))
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=_label(label),
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=algorithm_version
        ),
    )
    number = images[0].get("SeriesNumber")
    try:
        seg = hd.seg.Segmentation(
            source_images=images,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=hd.UID(),
            series_number=_SERIES_NUMBER_OFFSET + (int(number) if number not in (None, "") else 0),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=algorithm_name,
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
            device_serial_number="0",
            content_description=f"{algorithm_name} {label}"[:64],
            omit_empty_frames=bool(pixels.any()),  # nothing found: keep all frames, no highdicom warning
        )
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise InputError(f"cannot build a DICOM SEG on this series ({describe(e)})", series) from e
    return atomic_write(Path(out_path), lambda tmp: seg.save_as(tmp))


def _highdicom() -> tuple[Any, Any]:
    """highdicom and pydicom's code dictionary, or one line saying which extra to install."""
    try:
        import highdicom
        from pydicom.sr.codedict import codes
    except ImportError as e:
        raise ConfigError(INSTALL_HINT) from e
    return highdicom, codes


def _check_mask(mask: np.ndarray, sources: list[tuple[Dataset, int | None]]) -> np.ndarray:
    """``mask`` as uint8 0/1 after checking it has one (rows, columns) plane per slice of the series."""
    arr = np.asarray(mask)
    first = sources[0][0]
    expected = (len(sources), int(first.Rows), int(first.Columns))
    if arr.shape != expected:
        raise ConfigError(f"mask of shape {arr.shape} does not match the DICOM series' (z, y, x) {expected}")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"a DICOM SEG mask must be bool or integer 0/1, got {arr.dtype}")
    if arr.dtype != np.bool_ and not np.isin(arr, (0, 1)).all():
        raise ConfigError(f"a DICOM SEG mask must hold only 0 and 1, got values up to {int(arr.max())}")
    return arr.astype(np.uint8)


def _source_layout(
    sources: list[tuple[Dataset, int | None]], frames: np.ndarray, series: Path
) -> tuple[list[Dataset], np.ndarray]:
    """Source images and the mask frames in the order highdicom pairs them: one frame per single-frame
    image in slice order, or, for one enhanced multi-frame file, the file's own frame order."""
    if all(frame is None for _, frame in sources):
        return [ds for ds, _ in sources], frames
    files = {id(ds): ds for ds, _ in sources}
    if len(files) > 1:
        raise InputError(
            f"a DICOM SEG references single-frame images or one multi-frame file; this series spans "
            f"{len(files)} multi-frame files",
            series,
        )
    ds = sources[0][0]
    if "PerFrameFunctionalGroupsSequence" not in ds or "SharedFunctionalGroupsSequence" not in ds:
        kind = getattr(ds.get("SOPClassUID"), "name", "this image type")
        raise InputError(
            f"a DICOM SEG on a multi-frame source needs an enhanced image with functional groups, not {kind}",
            series,
        )
    ordered = np.zeros_like(frames)
    for k, (_, frame) in enumerate(sources):
        ordered[frame] = frames[k]
    return [ds], ordered


def _label(label: str) -> str:
    text = " ".join(str(label).split())
    if not text or len(text) > 64:
        raise ConfigError(f"segment label must be 1 to 64 characters, got {label!r}")
    return text

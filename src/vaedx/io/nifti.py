"""NIfTI volumes as 2-D slices, each plane in the display orientation models see.

Slices come from the volume reader (:func:`vaedx.io.volume.read_nifti_volume`) reoriented to LPS and cut
with :func:`vaedx.io.volume.model_plane`, so a slice read here is exactly the plane a volume-aware step
gives the model for the same index: an axial slice has row 0 anterior and column 0 at the patient's right,
as 2-D DICOM and PNG slices look. Reorienting first also means that slice index, axis and spacing mean the
same anatomy whatever the scanner's voxel order.

The ``axis`` option keeps the meaning it always had, an axis of the RAS array: 2 (z) gives axial slices,
1 (y) coronal, 0 (x) sagittal. Slice indices count along the LPS array: axial indices run inferior to
superior as before, coronal ones anterior to posterior and sagittal ones right to left.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import existing_file
from vaedx.io.image import Image, base_meta
from vaedx.io.volume import model_plane, read_nifti_volume

# ``axis`` (of the RAS array, x y z) -> axis of the (z, y, x) LPS data that model_plane cuts across
_PLANE_OF_AXIS = {2: 0, 1: 1, 0: 2}
PLANE_NAMES = ("axial", "coronal", "sagittal")  # by model_plane axis


def read_nifti(
    path: str | Path,
    *,
    axis: int = 2,
    min_foreground: float = 0.0,
    foreground_threshold: float = 0.0,
    volume_index: int | None = None,
) -> list[Image]:
    """Slice a 3-D (or 2-D) NIfTI into display-oriented planes: axial for ``axis`` 2, coronal 1, sagittal 0.

    A slice is kept when at least ``min_foreground`` of its voxels lie above ``foreground_threshold``
    (a fraction of the volume's min..max range); the defaults keep every slice, and a volume without
    foreground may give an empty list. A 2-D image (one dimension of length 1) gives its single plane
    whatever ``axis`` says, because slicing it along another axis would give 1-pixel-wide strips.
    ``volume_index`` picks one volume of a 4-D file. ``meta["slice_index"]`` indexes the LPS volume.
    """
    if axis not in _PLANE_OF_AXIS:
        raise ConfigError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}")
    for name, value in (("min_foreground", min_foreground), ("foreground_threshold", foreground_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
    p = existing_file(path)
    lps, spacing, bits = _lps_volume(p, volume_index)
    singleton = [i for i in range(3) if lps.shape[i] == 1]
    plane = singleton[0] if singleton else _PLANE_OF_AXIS[axis]
    n = lps.shape[plane]
    lo, hi = float(lps.min()), float(lps.max())
    above = lps > lo + foreground_threshold * (hi - lo)
    fraction = np.moveaxis(above, plane, 0).reshape(n, -1).mean(axis=1)
    rows, cols = (0, 2) if plane == 1 else (0, 1) if plane == 2 else (1, 2)

    images = []
    for k in range(n):
        if fraction[k] < min_foreground:
            continue
        arr = np.ascontiguousarray(model_plane(lps, plane, k)[None], dtype=np.float32)
        meta = base_meta(
            p, "nifti", arr, bit_depth=bits, photometric=None, spacing=(spacing[rows], spacing[cols])
        )
        meta.update(slice_index=k, axis=2 - plane, plane=PLANE_NAMES[plane], n_slices_total=n)
        meta.update(slice_thickness=spacing[plane], orientation="LPS")
        images.append(Image(arr, meta))
    return images


def read_nifti_plane(path: str | Path) -> np.ndarray:
    """The single plane of a 2-D NIfTI (for masks), oriented exactly as :func:`read_nifti` returns it."""
    p = existing_file(path)
    lps, _, _ = _lps_volume(p, None)
    singleton = [i for i in range(3) if lps.shape[i] == 1]
    if not singleton:
        raise InputError(f"expected a 2-D NIfTI, got a volume of shape {lps.shape[::-1]}", p)

    return np.ascontiguousarray(model_plane(lps, singleton[0], 0))


def _lps_volume(p: Path, volume_index: int | None) -> tuple[np.ndarray, tuple[float, float, float], int]:
    """(z, y, x) float32 voxels in LPS order, their spacing in mm (z, y, x), and the stored bits."""

    vol = read_nifti_volume(p, volume_index=volume_index)
    shape = vol.meta["original_shape"]
    if sum(d > 1 for d in shape[:3]) < 2:
        raise InputError(f"NIfTI of shape {shape} is not an image: need 2-D or 3-D data", p)
    lps = vol.reoriented("LPS")
    return lps.data, lps.spacing, int(vol.meta["bit_depth"])

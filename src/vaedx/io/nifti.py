"""NIfTI volumes as 2-D slices in canonical RAS orientation.

Reorienting first means slice index, axis and spacing mean the same anatomy whatever the scanner's voxel
order, so a model never sees left-right flipped slices from one site and not from another.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import describe, existing_file
from vaedx.io.image import Image, base_meta

_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


def read_nifti(
    path: str | Path, *, axis: int = 2, min_foreground: float = 0.0, foreground_threshold: float = 0.0
) -> list[Image]:
    """Slice a 3-D (or 2-D) NIfTI along ``axis`` of the canonical RAS array.

    A slice is kept when at least ``min_foreground`` of its voxels lie above ``foreground_threshold``
    (a fraction of the volume's min..max range); the defaults keep every slice, and a volume without
    foreground may give an empty list. A 2-D image (one canonical dimension of length 1) gives its single
    plane whatever ``axis`` says, because slicing it along another axis would give 1-pixel-wide strips.
    """
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis!r}")
    for name, value in (("min_foreground", min_foreground), ("foreground_threshold", foreground_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
    p = existing_file(path)
    vol, zooms, bits = _canonical_volume(p)
    singleton = [i for i in range(3) if vol.shape[i] == 1]
    plane_axis = singleton[0] if singleton else axis
    n = vol.shape[plane_axis]
    lo, hi = float(vol.min()), float(vol.max())
    above = vol > lo + foreground_threshold * (hi - lo)
    fraction = np.moveaxis(above, plane_axis, 0).reshape(n, -1).mean(axis=1)
    rows, cols = (i for i in range(3) if i != plane_axis)
    images = []
    for k in range(n):
        if fraction[k] < min_foreground:
            continue
        arr = np.ascontiguousarray(np.take(vol, k, axis=plane_axis)[None], dtype=np.float32)
        spacing = (zooms[rows], zooms[cols])
        meta = base_meta(p, "nifti", arr, bit_depth=bits, photometric=None, spacing=spacing)
        meta.update(slice_index=k, axis=plane_axis, n_slices_total=n, slice_thickness=zooms[plane_axis])
        meta["orientation"] = "RAS"
        images.append(Image(arr, meta))
    return images


def read_nifti_plane(path: str | Path) -> np.ndarray:
    """The single plane of a 2-D NIfTI (for masks), oriented exactly as :func:`read_nifti` returns it."""
    p = existing_file(path)
    vol, _, _ = _canonical_volume(p)
    singleton = [i for i in range(3) if vol.shape[i] == 1]
    if not singleton:
        raise InputError(f"expected a 2-D NIfTI, got a volume of shape {vol.shape}", p)
    return np.take(vol, 0, axis=singleton[0])


def _canonical_volume(p: Path) -> tuple[np.ndarray, tuple[float, float, float], int]:
    """(X, Y, Z) float32 voxels in RAS order with slope/intercept applied, voxel size in mm, stored bits."""
    try:
        img = nib.load(p)
    except Exception as e:
        raise InputError(f"cannot read NIfTI header ({describe(e)})", p) from e
    shape = tuple(int(d) for d in img.shape)
    if len(shape) > 3 and any(d > 1 for d in shape[3:]):
        raise InputError(f"4-D NIfTI of shape {shape} is not supported: give a 3-D volume or a 2-D image", p)
    if len(shape) < 2 or sum(d > 1 for d in shape[:3]) < 2:
        raise InputError(f"NIfTI of shape {shape} is not an image: need 2-D or 3-D data", p)
    try:
        data = img.get_fdata(dtype=np.float32)  # reads everything, so truncation is caught here
    except Exception as e:
        raise InputError(f"NIfTI voxels unreadable: truncated or corrupt ({describe(e)})", p) from e
    data = data.reshape(shape[:3] + (1,) * (3 - len(shape[:3])))
    canon = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    vol = np.asarray(canon.dataobj, dtype=np.float32)
    finite = np.isfinite(vol)
    if not finite.all():
        if not finite.any():
            raise InputError("NIfTI holds no finite voxel values", p)
        vol = np.where(finite, vol, vol[finite].min())  # NaN background would poison every later statistic
    scale = _UNIT_TO_MM.get(img.header.get_xyzt_units()[0], 1.0)
    x, y, z = (float(v) * scale for v in nib.affines.voxel_sizes(canon.affine))
    return vol, (x, y, z), int(img.header["bitpix"])

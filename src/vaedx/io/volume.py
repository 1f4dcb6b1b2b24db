"""3-D volumes with their geometry, and the NIfTI volume reader.

A brain MRI is one object in space, not a pile of unrelated slices: keeping the voxels together with the
affine and the spacing lets later stages measure in millimetres, compare neighbouring slices, and write
maps back where the scanner put them.

Axis convention, the same for every volume reader: ``data`` is indexed ``data[k, j, i]``, i.e. (z, y, x)
with slices first, and ``affine`` maps the voxel index ``(i, j, k, 1)`` (NIfTI order, x first) to RAS+
millimetres. ``spacing`` is given in the order of ``data``'s axes: (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from vaedx.errors import ConfigError, InputError
from vaedx.io._files import describe, existing_file

# NIfTI xyzt_units of space, in millimetres
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


@dataclass
class Volume:
    """A decoded 3-D volume: float32 ``data`` (z, y, x) and the geometry to place it in the patient.

    ``original_affine`` is the affine of the voxel order the file stored (before any reorientation), so
    :meth:`to_original` can put a result computed on ``data`` back into the input's own voxel space.
    ``meta`` holds only non-identifying facts (geometry, modality, series description) as plain Python
    values, so it can be written to JSON as it is.
    """

    data: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    path: Path | None = None
    orientation: str | None = None
    original_affine: np.ndarray | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Volume.data must be (z, y, x), got shape {self.data.shape}")
        if self.data.dtype != np.float32:
            self.data = self.data.astype(np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got shape {self.affine.shape}")
        if self.original_affine is None:
            self.original_affine = self.affine.copy()

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.data.shape
        return int(z), int(y), int(x)

    def canonical(self) -> Volume:
        """The same volume reoriented to RAS (closest canonical), keeping ``original_affine`` so that
        :meth:`to_original` still writes back into the input's voxel order."""
        canon = nib.as_closest_canonical(self.to_nifti())
        meta = {**self.meta, "orientation": "RAS", "shape": tuple(int(d) for d in canon.shape[::-1])}
        meta.setdefault("original_orientation", self.orientation)
        x, y, z = (float(v) for v in nib.affines.voxel_sizes(canon.affine))
        return Volume(
            data=np.ascontiguousarray(np.asarray(canon.dataobj, dtype=np.float32).transpose(2, 1, 0)),
            affine=canon.affine,
            spacing=(z, y, x),
            path=self.path,
            orientation=orientation_code(canon.affine),
            original_affine=self.original_affine,
            meta={**meta, "spacing": (z, y, x)},
        )

    def reoriented(self, codes: str = "LPS") -> Volume:
        """The same volume with its voxel axes i, j, k pointing to ``codes`` ('LPS'), keeping the way back.

        Why LPS for models: its axial planes ``data[k]`` are in radiological display orientation (row 0 =
        anterior, column 0 = the patient's right), which is how 2-D DICOM and PNG slices look; a model trained
        on such slices then sees a volume's slices the same way up. A volume of unknown orientation (a slice
        stack) is returned as it is: there is nothing to reorient it by.
        """
        if self.orientation is None:
            return self
        target = axcodes2ornt(tuple(codes.upper()))
        xyz = self.data.transpose(2, 1, 0)
        turn = ornt_transform(io_orientation(self.affine), target)
        moved = apply_orientation(xyz, turn)
        affine = self.affine @ inv_ornt_aff(turn, xyz.shape)
        x, y, z = (float(v) for v in nib.affines.voxel_sizes(affine))
        code = orientation_code(affine)
        meta = {**self.meta, "orientation": code, "shape": tuple(int(d) for d in moved.shape[::-1])}
        meta.setdefault("original_orientation", self.orientation)
        return Volume(
            data=np.ascontiguousarray(moved.transpose(2, 1, 0), dtype=np.float32),
            affine=affine,
            spacing=(z, y, x),
            path=self.path,
            orientation=code,
            original_affine=self.original_affine,
            meta={**meta, "spacing": (z, y, x)},
        )

    def to_nifti(self, array: np.ndarray | None = None) -> nib.Nifti1Image:
        """``array`` (default: ``data``), laid out like ``data``, as a NIfTI image in this volume's space."""
        arr = self._check_layout(self.data if array is None else array)
        return nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), self.affine)

    def to_original(self, array: np.ndarray) -> nib.Nifti1Image:
        """``array`` (z, y, x, laid out like ``data``) as a NIfTI image in the input file's voxel order.

        Undoes the reorientation done on reading, so a map or mask lines up voxel for voxel with the
        original file in any viewer, and its affine equals the original one.
        """
        xyz = self._check_layout(array).transpose(2, 1, 0)
        assert self.original_affine is not None  # set in __post_init__
        back = ornt_transform(io_orientation(self.affine), io_orientation(self.original_affine))
        return nib.Nifti1Image(np.ascontiguousarray(apply_orientation(xyz, back)), self.original_affine)

    def _check_layout(self, array: np.ndarray) -> np.ndarray:
        arr = np.asarray(array)
        if arr.shape != self.data.shape:
            raise ConfigError(f"array of shape {arr.shape} does not match the volume's {self.data.shape}")
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)  # NIfTI has no boolean type
        return arr

    def __repr__(self) -> str:
        return f"Volume(shape={self.shape}, spacing={self.spacing}, orientation={self.orientation!r})"


def orientation_code(affine: np.ndarray) -> str:
    """Three-letter code (e.g. 'RAS', 'LPS') of the world direction each voxel axis i, j, k points to."""
    return "".join(str(c) for c in nib.aff2axcodes(affine))


def model_plane(data: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Plane ``k`` across ``axis`` of an LPS-ordered (z, y, x) array, the way a radiologist looks at it.

    axis 0 (axial): row 0 anterior, column 0 the patient's right; axis 1 (coronal) and axis 2 (sagittal):
    row 0 superior, columns right-to-left / anterior-to-posterior. Every reader that turns a volume into
    2-D model inputs uses this, so training slices and the slices of a volume scored later agree.
    """
    if axis == 0:
        return data[k]
    if axis == 1:
        return data[::-1, k, :]
    if axis == 2:
        return data[::-1, :, k]
    raise ConfigError(f"axis must be 0 (axial), 1 (coronal) or 2 (sagittal), got {axis!r}")


def read_nifti_volume(path: str | Path, *, volume_index: int | None = None) -> Volume:
    """Read a 3-D NIfTI (or one volume of a 4-D one) reoriented to RAS with ``as_closest_canonical``.

    Reorienting means the same axis is the same anatomy whatever the scanner's voxel order. A 4-D file
    needs ``volume_index`` (which time point or sequence) unless it holds a single volume; choosing for
    the user would silently analyse the wrong one. A 2-D file is read as a volume of one slice.
    """
    p = existing_file(path)
    try:
        img = nib.load(p)
    except Exception as e:
        raise InputError(f"cannot read NIfTI header ({describe(e)})", p) from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"not a NIfTI-1/2 image ({type(img).__name__})", p)
    shape = tuple(int(d) for d in img.shape)
    index = _pick_volume(shape, volume_index, p)
    data = _voxels(img, shape, index, p)
    canon = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    xyz = np.asarray(canon.dataobj, dtype=np.float32)
    scale = _UNIT_TO_MM.get(img.header.get_xyzt_units()[0], 1.0)
    affine = canon.affine.copy()
    affine[:3, :] *= scale
    x, y, z = (float(v) for v in nib.affines.voxel_sizes(affine))
    meta = {
        "format": "nifti",
        "source": p.name,
        "modality": None,
        "shape": tuple(int(d) for d in xyz.shape[::-1]),
        "spacing": (z, y, x),
        "spacing_assumed": False,
        "orientation": orientation_code(affine),
        "original_orientation": orientation_code(img.affine),
        "original_shape": shape,
        "volume_index": index,
        "n_volumes": int(np.prod(shape[3:])) if len(shape) > 3 else 1,
        "bit_depth": int(img.header["bitpix"]),
    }
    return Volume(
        data=np.ascontiguousarray(xyz.transpose(2, 1, 0)),
        affine=affine,
        spacing=(z, y, x),
        path=p,
        orientation=meta["orientation"],
        original_affine=np.asarray(img.affine, dtype=np.float64),
        meta=meta,
    )


def _pick_volume(shape: tuple[int, ...], volume_index: int | None, p: Path) -> int | None:
    if len(shape) < 2:
        raise InputError(f"NIfTI of shape {shape} is not an image: need 2-D, 3-D or 4-D data", p)
    if len(shape) > 4 and any(d > 1 for d in shape[4:]):
        raise InputError(f"NIfTI of shape {shape} has more than 4 dimensions; give a 3-D or 4-D file", p)
    n = shape[3] if len(shape) > 3 else 1
    if volume_index is None:
        if n > 1:
            raise InputError(f"4-D NIfTI of shape {shape} holds {n} volumes: choose one with volume_index", p)
        return None
    if not 0 <= volume_index < n:
        raise ConfigError(f"volume_index {volume_index} is out of range: {p.name} holds {n} volume(s)")
    return int(volume_index)


def _voxels(img: nib.Nifti1Image, shape: tuple[int, ...], index: int | None, p: Path) -> np.ndarray:
    """(X, Y, Z) float32 voxels with slope/intercept applied; non-finite voxels set to the minimum."""
    try:
        if len(shape) > 3:
            data = np.asarray(img.dataobj[:, :, :, index or 0], dtype=np.float32)  # one volume only
        else:
            data = img.get_fdata(dtype=np.float32)  # reads everything, so truncation is caught here
    except Exception as e:
        raise InputError(f"NIfTI voxels unreadable: truncated or corrupt ({describe(e)})", p) from e
    data = data.reshape(shape[:3] + (1,) * (3 - len(shape[:3])))
    finite = np.isfinite(data)
    if not finite.all():
        if not finite.any():
            raise InputError("NIfTI holds no finite voxel values", p)
        data = np.where(finite, data, data[finite].min())  # NaN background would poison every statistic
    return data

"""Readers for medical image files: PNG/JPEG/TIFF, DICOM, NIfTI and MedMNIST npz.

Every reader returns float32 (C, H, W) :class:`Image` objects with non-identifying metadata, and turns any
problem with the file into one :class:`vaedx.errors.InputError` line that names it.
"""

from vaedx.io.dicom import CT_WINDOWS, read_dicom
from vaedx.io.dispatch import read_any
from vaedx.io.formats import detect_format
from vaedx.io.image import Image
from vaedx.io.nifti import read_nifti
from vaedx.io.npz import NpzData, read_npz
from vaedx.io.raster import read_mask, read_raster

__all__ = [
    "CT_WINDOWS",
    "Image",
    "NpzData",
    "detect_format",
    "read_any",
    "read_dicom",
    "read_mask",
    "read_nifti",
    "read_npz",
    "read_raster",
]

"""Readers for medical image files: PNG/JPEG/TIFF, DICOM, NIfTI and MedMNIST npz.

Every 2-D reader returns float32 (C, H, W) :class:`Image` objects and every volume reader a float32
(z, y, x) :class:`Volume` with its affine, all with non-identifying metadata; any problem with the file
becomes one :class:`vaedx.errors.InputError` line that names it.
"""

from vaedx.io.dicom import CT_WINDOWS, read_dicom
from vaedx.io.dicom_series import read_dicom_series
from vaedx.io.dispatch import read_any
from vaedx.io.formats import detect_format
from vaedx.io.image import Image
from vaedx.io.nifti import read_nifti
from vaedx.io.npz import NpzData, read_npz
from vaedx.io.raster import read_mask, read_raster
from vaedx.io.series_folder import is_dicom_series
from vaedx.io.slice_stack import read_lgg_patient, stack_slices
from vaedx.io.volume import Volume, read_nifti_volume

__all__ = [
    "CT_WINDOWS",
    "Image",
    "NpzData",
    "Volume",
    "detect_format",
    "is_dicom_series",
    "read_any",
    "read_dicom",
    "read_dicom_series",
    "read_lgg_patient",
    "read_mask",
    "read_nifti",
    "read_nifti_volume",
    "read_npz",
    "read_raster",
    "stack_slices",
]

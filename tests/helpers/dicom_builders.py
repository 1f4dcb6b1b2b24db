"""DICOM files for tests, carrying planted patient identifiers: shared by tests/io and tests/serve.

Why one module: both suites check that no identifier leaks (into Image.meta, responses, logs or files), so
they must plant the same identifiers the same way. pytest's ``pythonpath`` puts ``tests/helpers`` on sys.path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# Identifying values planted in every DICOM; none of them may appear in any output.
PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-12345",
    "PatientBirthDate": "19700101",
    "StudyDate": "20240102",
    "InstitutionName": "Saint Elsewhere Hospital",
    "AccessionNumber": "ACC-777",
    "ReferringPhysicianName": "House^Greg",
}
PHI_STRINGS = ("Doe", "Jane", "PID-12345", "19700101", "20240102", "Elsewhere", "ACC-777", "House")


def write_ct_dicom(
    path: Path,
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    **extra: Any,
) -> Path:
    """CT-like DICOM with PHI, written the pydicom-3 way (file meta, explicit VR little endian, preamble)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in PHI.items():
        setattr(ds, key, value)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PixelSpacing = [0.5, 0.75]
    ds.SliceThickness = 2.5
    if pixels is not None:
        bits = 8 if pixels.dtype == np.uint8 else 16
        ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path

"""Builders for small synthetic files in every supported format, written into each test's tmp_path.

Exposed through the ``build`` fixture (not imported) so the tests work under any pytest import mode.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# Identifying values planted in every DICOM; none of them may reach Image.meta.
PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-12345",
    "PatientBirthDate": "19700101",
    "StudyDate": "20240102",
    "InstitutionName": "Saint Elsewhere Hospital",
    "AccessionNumber": "ACC-777",
    "ReferringPhysicianName": "House^Greg",
}


class Builder:
    """Writes test files under one directory; every method returns the path it wrote."""

    phi_strings = ("Doe", "Jane", "PID-12345", "19700101", "20240102", "Elsewhere", "ACC-777", "House")

    def __init__(self, root: Path):
        self.root = root

    def dicom(
        self,
        name: str,
        pixels: np.ndarray | None,
        *,
        photometric: str = "MONOCHROME2",
        slope: float | None = None,
        intercept: float | None = None,
        **extra: Any,
    ) -> Path:
        """CT-like DICOM written the pydicom-3 way (file meta, explicit VR little endian, preamble)."""
        path = self.root / name
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

    def bare_dicom(self, name: str) -> Path:
        """Implicit-VR stream without preamble, 'DICM' or file meta (what some old scanners export)."""
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.Modality = "MR"
        ds.set_pixel_data(np.array([[1, 2], [3, 4]], np.uint16), "MONOCHROME2", 12)
        ds.file_meta = FileMetaDataset()
        path = self.root / name
        pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
        return path

    def nifti(self, name: str, data: np.ndarray, affine: np.ndarray | None = None, **kw: Any) -> Path:
        img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
        if "slope" in kw:
            img.header.set_slope_inter(kw["slope"], kw["inter"])
        nib.save(img, self.root / name)
        return self.root / name

    def pil(self, name: str, arr: np.ndarray, **kw: Any) -> Path:
        PILImage.fromarray(arr).save(self.root / name, **kw)
        return self.root / name

    def png_raw(self, name: str, pixels: np.ndarray, bit_depth: int, colour_type: int) -> Path:
        """Hand-made PNG for layouts Pillow cannot write (16-bit RGB)."""
        h, w = pixels.shape[:2]
        dtype = ">u2" if bit_depth == 16 else "u1"
        data = b"".join(b"\x00" + pixels[r].astype(dtype).tobytes() for r in range(h))

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
        body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
        (self.root / name).write_bytes(b"\x89PNG\r\n\x1a\n" + body)
        return self.root / name

    def raw(self, name: str, content: bytes) -> Path:
        (self.root / name).write_bytes(content)
        return self.root / name


@pytest.fixture
def build(tmp_path: Path) -> Builder:
    return Builder(tmp_path)

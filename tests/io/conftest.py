"""Builders for small synthetic files in every supported format, written into each test's tmp_path.

Exposed through the ``build`` fixture (not imported by the tests). The DICOM writer lives in
``tests/helpers/dicom_builders.py``, shared with the service tests.
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
from pydicom.dataset import Dataset, FileMetaDataset

from dicom_builders import PHI_STRINGS, write_ct_dicom


class Builder:
    """Writes test files under one directory; every method returns the path it wrote."""

    phi_strings = PHI_STRINGS

    def __init__(self, root: Path):
        self.root = root

    def dicom(self, name: str, pixels: np.ndarray | None, **kw: Any) -> Path:
        """CT-like DICOM carrying PHI (see tests/helpers/dicom_builders.py)."""
        return write_ct_dicom(self.root / name, pixels, **kw)

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

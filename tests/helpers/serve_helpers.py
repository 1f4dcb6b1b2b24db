"""Builders for the service tests: a store of blobs and upload files in every format.

A helper module, not conftest, so ``from serve_helpers import ...`` cannot pick up another folder's
conftest when several test folders are run together.
"""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image as PILImage

from dicom_builders import write_ct_dicom
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter

SIZE = 16
MAX_UPLOAD = 200_000


def make_store(
    out: Path, n: int = 32, size: int = SIZE, preprocess: PreprocessConfig | None = None
) -> Path:
    """Gaussian blobs; labels alternate; every fourth pair is validation."""
    rng = np.random.default_rng(0)
    writer = StoreWriter(out, n, (1, size, size), with_masks=False)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (size / 2)) * (0.6 + 0.4 * (i % 2))
        split = "val" if (i // 2) % 4 == 3 else "train"
        writer.add(
            img[None].astype(np.float32), label=i % 2, split=split, path=f"img{i}.png", patient_id=f"p{i}"
        )
    writer.finish(["normal", "pneumonia"], preprocess or PreprocessConfig(size=(size, size)))
    return out


def png_bytes(h: int = 40, w: int = 30, mode: str = "L", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, 3)
    buf = io.BytesIO()
    PILImage.fromarray((rng.random(shape) * 255).astype(np.uint8), mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(tmp: Path) -> bytes:
    """A CT DICOM carrying a name, ID, birth date and more (dicom_builders.py), in HU after rescale."""
    yy, xx = np.mgrid[:24, :24]
    pixels = (1000 + 400 * np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 20)).astype(np.uint16)
    path = write_ct_dicom(tmp / "Doe^Jane_PID-12345.dcm", pixels, slope=1, intercept=-1024)
    return path.read_bytes()


def nifti_bytes(tmp: Path, gz: bool = True) -> tuple[bytes, np.ndarray]:
    """A 20x20x5 volume with a blob that moves from slice to slice (so slices are distinguishable)."""
    yy, xx = np.mgrid[:20, :20]
    blobs = [np.exp(-((yy - 10) ** 2 + (xx - 4 - 3 * k) ** 2) / 10) for k in range(5)]
    vol = (np.stack(blobs, axis=-1) * 100).astype(np.float32)
    path = tmp / ("vol.nii.gz" if gz else "vol.nii")
    nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    return path.read_bytes(), vol


CT5N = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892001" / "CT5N"
ANATOMICAL = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
CT5N_PHI = ("Doe^Peter", "Doe", "98890234")  # the bundled series' patient name and ID


def lgg_nifti(case: Path, out: Path) -> Path:
    """A real LGG FLAIR patient as a NIfTI with 0.9 x 0.9 x 3 mm voxels (slice k of the stack = axis 2).

    PNG rows run anterior to posterior and columns right to left; the file stores them as its first and second
    axes (voxel order PLS), so the service must turn the axes round to show the PNG planes again.
    """
    from vaedx.io.slice_stack import read_lgg_patient

    vol, _ = read_lgg_patient(case)
    affine = np.array([[0, -0.9, 0, 115.0], [-0.9, 0, 0, 100.0], [0, 0, 3.0, -30.0], [0, 0, 0, 1]])
    data = np.ascontiguousarray(vol.data.transpose(1, 2, 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), out)
    return out


def zip_folder(folder: Path, out: Path, compression: int = 8) -> Path:
    """Every file of ``folder`` (recursively) in a zip, as a user would send a DICOM series."""
    import zipfile

    with zipfile.ZipFile(out, "w", compression) as z:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            z.write(f, f"series/{f.relative_to(folder)}")
    return out

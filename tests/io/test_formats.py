"""Format detection, read_any dispatch, and one InputError naming the file for every kind of bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from vaedx.errors import ConfigError, InputError
from vaedx.io import detect_format, read_any, read_dicom, read_nifti, read_npz, read_raster

NOISE = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)


def test_detects_every_format_by_content(build):
    grey = np.zeros((2, 2), np.uint8)
    tifffile.imwrite(build.root / "t.tiff", grey)
    np.savez(build.root / "d.npz", train_images=np.zeros((1, 2, 2)), train_labels=np.zeros(1))
    nib.save(nib.Nifti2Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), build.root / "n2.nii")
    full = build.dicom("c.dcm", np.zeros((2, 2), np.uint16))
    cases = {
        build.pil("a.png", grey): "png",
        build.pil("a.jpg", grey): "jpeg",
        build.root / "t.tiff": "tiff",
        full: "dicom",
        build.raw("IM0001", full.read_bytes()): "dicom",  # scanners often write no extension at all
        build.raw("nopre.dcm", full.read_bytes()[132:]): "dicom",
        build.bare_dicom("bare_stream"): "dicom",
        build.nifti("v.nii", np.zeros((2, 2, 2), np.float32)): "nifti",
        build.nifti("v.nii.gz", np.zeros((2, 2, 2), np.float32)): "nifti",
        build.root / "n2.nii": "nifti",
        build.root / "d.npz": "npz",
        build.raw("png_named.dcm", (build.root / "a.png").read_bytes()): "png",  # content beats the name
    }
    assert {p.name: detect_format(p) for p in cases} == {p.name: f for p, f in cases.items()}


def test_read_any_dispatches_and_routes_options(build):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 100
    [png] = read_any(build.pil("rgb.png", rgb), rgb="grey", window="lung")  # window only goes to DICOM
    assert png.array.shape == (1, 2, 2) and png.array[0, 0, 0] == pytest.approx(58.7)
    stored = np.array([[424, 1024]], np.int16)  # -600 and 0 HU
    [ct] = read_any(build.dicom("c.dcm", stored, slope=1, intercept=-1024), rgb="grey", window="lung")
    assert ct.meta["window"] == (-600.0, 1500.0) and 0.5 < ct.array[0, 0, 0] < 0.51
    slices = read_any(build.nifti("v.nii.gz", np.ones((2, 3, 4), np.float32)), axis=0)
    assert len(slices) == 2
    for meta in (png.meta, ct.meta, slices[0].meta):  # meta goes into JSON sidecars as it is
        assert json.loads(json.dumps(meta))["size"] == list(meta["size"])
    with pytest.raises(ConfigError, match="windw"):
        read_any(build.root / "rgb.png", windw="lung")


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def bad_inputs(build):
    """name -> (reader, path, expected message fragment)."""
    png, jpeg = png_bytes(NOISE), png_bytes(NOISE, "JPEG")
    nii = build.nifti("v.nii.gz", NOISE[:16, :16, None] * np.ones(8)).read_bytes()
    np.savez(build.root / "keys.npz", images=np.zeros((1, 2, 2)), labels=np.zeros(1))
    npz = (build.root / "keys.npz").read_bytes()
    return {
        "missing": (read_any, build.root / "nope.png", "file not found"),
        "empty": (read_any, build.raw("empty.png", b""), "file is empty"),
        "truncated-png": (read_raster, build.raw("cut.png", png[: len(png) // 2]), "cannot decode PNG"),
        "truncated-jpeg": (read_raster, build.raw("cut.jpg", jpeg[: len(jpeg) // 2]), "cannot decode JPEG"),
        "random-png": (read_any, build.raw("rnd.png", NOISE.tobytes()), "unsupported file type"),
        "text": (read_any, build.raw("notes.txt", b"just text\n"), "unsupported file type '.txt'"),
        "no-pixels": (read_any, build.dicom("nopix.dcm", None), "DICOM has no pixel data"),
        "4d-nifti": (read_any, build.nifti("t.nii", np.zeros((2, 2, 2, 3), np.float32)), "4-D NIfTI"),
        "truncated-nii-gz": (read_nifti, build.raw("cut.nii.gz", nii[: len(nii) // 2]), "truncated"),
        "npz-keys": (read_npz, build.root / "keys.npz", "found: images, labels"),
        "npz-via-read_any": (read_any, build.root / "keys.npz", "use read_npz"),
        "truncated-npz": (read_npz, build.raw("cut.npz", npz[:200]), "cannot read npz"),
        "dicom-reader-on-png": (read_dicom, build.raw("img.dcm", png), "not a DICOM file"),
        "directory": (read_any, build.root, "not a regular file"),
    }


CASES = [
    "missing", "empty", "truncated-png", "truncated-jpeg", "random-png", "text", "no-pixels", "4d-nifti",
    "truncated-nii-gz", "npz-keys", "npz-via-read_any", "truncated-npz", "dicom-reader-on-png", "directory",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_naming_the_file(build, case):
    reader, path, fragment = bad_inputs(build)[case]
    with pytest.raises(InputError) as e:
        reader(path)
    message = str(e.value)
    assert fragment in message and message.startswith(str(path)) and "\n" not in message
    assert e.value.path == str(path)


def test_bad_input_cases_are_all_listed(build):
    assert sorted(bad_inputs(build)) == sorted(CASES)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm"])
def test_dual_personality_dicom_is_read_as_dicom(name):
    """pydicom's classic CT_small/MR_small keep a TIFF header in their 128-byte preamble (the standard allows
    it); the DICM marker behind it decides, so they decode as DICOM with pydicom's own pixel values."""
    import pydicom

    from vaedx.io import read_any

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    assert path.read_bytes()[:4] in (b"II*\0", b"MM\0*")  # the TIFF header is really there
    assert detect_format(path) == "dicom"
    (img,) = read_any(path)
    ds = pydicom.dcmread(path)
    assert img.array.shape[-2:] == ds.pixel_array.shape

"""DICOM: rescale to HU, windowing, MONOCHROME1, frames, colour, missing pixels, and no PHI in meta."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vaedx.errors import ConfigError, InputError
from vaedx.io import CT_WINDOWS, detect_format, read_any, read_dicom


def linear_voi(x: float, c: float, w: float) -> float:
    """DICOM PS3.3 C.11.2.1.2.1, output range [0, 1], written out independently of the reader."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 1.0
    return (x - (c - 0.5)) / (w - 1) + 0.5


def hu_file(build, hu: list[float], name: str = "ct.dcm", **kw):
    """One row of stored int16 values that become ``hu`` after slope 1 / intercept -1024."""
    stored = (np.array([hu]) + 1024).astype(np.int16)
    return build.dicom(name, stored, slope=1, intercept=-1024, **kw)


def test_rescale_gives_hounsfield_units_and_clean_meta(build):
    path = build.dicom("ct.dcm", np.array([[1000, 0], [1024, 2000]], np.uint16), slope=1, intercept=-1024)
    [img] = read_dicom(path)
    np.testing.assert_array_equal(img.array[0], [[-24, -1024], [0, 976]])
    m = img.meta
    assert m["format"] == "dicom" and m["modality"] == "CT" and m["spacing"] == (0.5, 0.75)
    assert m["slice_thickness"] == 2.5 and m["bit_depth"] == 16 and m["photometric"] == "MONOCHROME2"
    assert (m["rescale_slope"], m["rescale_intercept"], m["window"]) == (1.0, -1024.0, None)
    assert m["frame_index"] == 0 and m["n_frames"] == 1 and m["source"] == "ct.dcm"


def test_slope_is_applied(build):
    [img] = read_dicom(build.dicom("s.dcm", np.array([[10, 20]], np.uint16), slope=2.5, intercept=-5))
    np.testing.assert_allclose(img.array[0], [[20, 45]])


@pytest.mark.parametrize("preset", sorted(CT_WINDOWS))
def test_window_presets_at_known_pixels(build, preset):
    c, w = CT_WINDOWS[preset]
    hu = [c - w, c - w / 2, c, c + w / 4, c + w / 2, c + w]
    [img] = read_dicom(hu_file(build, hu), window=preset)
    got = img.array[0, 0]
    assert got[0] == 0.0 and got[1] == 0.0 and got[4] == 1.0 and got[5] == 1.0
    assert got[2] == pytest.approx(0.5 + 0.5 / (w - 1), abs=1e-6)
    np.testing.assert_allclose(got, [linear_voi(x, c, w) for x in hu], atol=1e-6)
    assert img.meta["window"] == (c, w) and img.meta["window_preset"] == preset


def test_explicit_and_auto_window(build):
    hu = [-100.0, 0.0, 50.0, 100.0]
    path = hu_file(build, hu, WindowCenter=[50, 300], WindowWidth=[100, 1500])  # multi-valued: first counts
    [explicit] = read_dicom(path, window=(0, 200))
    np.testing.assert_allclose(explicit.array[0, 0], [linear_voi(x, 0, 200) for x in hu], atol=1e-6)
    [auto] = read_dicom(path, window="auto")
    np.testing.assert_allclose(auto.array[0, 0], [linear_voi(x, 50, 100) for x in hu], atol=1e-6)
    assert auto.meta["window"] == (50.0, 100.0)


def test_auto_window_without_one_in_file(build):
    with pytest.raises(InputError, match="no WindowCenter"):
        read_dicom(hu_file(build, [0.0]), window="auto")


@pytest.mark.parametrize("window", ["liver", (40, 0), "nonsense", (1, 2, 3)])
def test_bad_window_option(build, window):
    with pytest.raises(ConfigError):
        read_dicom(hu_file(build, [0.0]), window=window)


def test_monochrome1_inverted_with_and_without_window(build):
    stored = np.array([[0, 100, 400]], np.uint16)
    path = build.dicom("m1.dcm", stored, photometric="MONOCHROME1")
    [plain] = read_dicom(path)
    np.testing.assert_array_equal(plain.array[0], [[400, 300, 0]])  # max + min - x
    [windowed] = read_dicom(path, window=(200, 400))
    expected = [1 - linear_voi(x, 200, 400) for x in stored[0]]
    np.testing.assert_allclose(windowed.array[0, 0], expected, atol=1e-6)
    assert windowed.array[0, 0, 0] == 1.0  # the lowest stored value is the brightest


def test_multiframe_gives_one_image_per_frame(build):
    frames = np.stack([np.full((3, 2), v, np.uint16) for v in (10, 20, 30)])
    images = read_dicom(build.dicom("mf.dcm", frames))
    assert [i.meta["frame_index"] for i in images] == [0, 1, 2]
    assert all(i.array.shape == (1, 3, 2) and i.meta["n_frames"] == 3 for i in images)
    assert [float(i.array.max()) for i in images] == [10, 20, 30]


def test_enhanced_multiframe_per_frame_rescale_and_shared_spacing(build):
    def group(**attrs):
        item = Dataset()
        for k, v in attrs.items():
            setattr(item, k, v)
        return item

    transforms = [Sequence([group(RescaleSlope=s, RescaleIntercept=-1)]) for s in (1, 3)]
    per_frame = Sequence([group(PixelValueTransformationSequence=t) for t in transforms])
    shared = Sequence([group(PixelMeasuresSequence=Sequence([group(PixelSpacing=[0.2, 0.4])]))])
    frames = np.full((2, 2, 2), 10, np.uint16)
    groups = {"PerFrameFunctionalGroupsSequence": per_frame, "SharedFunctionalGroupsSequence": shared}
    images = read_dicom(build.dicom("enh.dcm", frames, **groups))
    assert [float(i.array.max()) for i in images] == [9, 29]
    assert images[1].meta["rescale_slope"] == 3.0
    assert images[0].meta["spacing"] == (0.2, 0.4)  # functional group wins over top-level PixelSpacing


def test_rgb_dicom_has_three_channels(build):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 7
    path = build.dicom("rgb.dcm", rgb, photometric="RGB")
    [img] = read_dicom(path)
    assert img.array.shape == (3, 2, 3) and img.meta["channels"] == 3
    np.testing.assert_array_equal(img.array[0], 200)
    np.testing.assert_array_equal(img.array[2], 7)
    with pytest.raises(InputError, match="greyscale"):
        read_dicom(path, window="lung")


def test_no_pixel_data(build):
    with pytest.raises(InputError, match="DICOM has no pixel data") as e:
        read_dicom(build.dicom("nopix.dcm", None))
    assert "nopix.dcm" in str(e.value)


def test_no_identifying_data_in_meta(build):
    path = hu_file(build, [0.0, 10.0], WindowCenter=40, WindowWidth=80)
    uids = [v for v in path.read_bytes().split(b"\0") if v.startswith(b"1.2.826.0.1.3680043")]
    assert uids, "fixture should carry UIDs"
    for window in (None, "auto", "lung"):
        [img] = read_dicom(path, window=window)
        text = repr(img.meta) + json.dumps(img.meta) + repr(img)
        for secret in build.phi_strings:
            assert secret not in text
        for uid in uids:
            assert uid.decode() not in text


def test_without_preamble(build):
    full = hu_file(build, [-24.0], name="full.dcm")
    stripped = build.raw("stripped.dcm", full.read_bytes()[132:])  # no preamble, no 'DICM'
    assert detect_format(stripped) == "dicom"
    np.testing.assert_array_equal(read_dicom(stripped)[0].array, [[[-24]]])
    bare = build.bare_dicom("bare_stream")  # implicit VR, no file meta, no extension
    assert detect_format(bare) == "dicom"
    np.testing.assert_array_equal(read_any(bare)[0].array[0], [[1, 2], [3, 4]])


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 20, bytes(range(256)) * 8])
def test_non_dicom_with_dcm_name_is_rejected(build, content):
    with pytest.raises(InputError, match="not a DICOM file") as e:
        read_dicom(build.raw("fake.dcm", content))
    assert "fake.dcm" in str(e.value)


def test_auto_window_uses_a_voi_lut_sequence(tmp_path):
    """CR/DX files often carry their display mapping as a VOI LUT Sequence instead of a window: a real
    bundled MR file given such a table (and no window) is displayed through it as pydicom applies it."""
    import pydicom
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    from pydicom.sequence import Sequence as PydicomSequence

    src = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    ds = pydicom.dcmread(src)
    for kw in ("WindowCenter", "WindowWidth"):
        if kw in ds:
            delattr(ds, kw)
    values = apply_modality_lut(ds.pixel_array, ds)
    lo, n = int(values.min()), int(values.max() - values.min()) + 1
    item = PydicomDataset()
    item.add_new(0x00283002, "US", [n, lo, 12])  # LUTDescriptor: entries, first input value, bits
    item.add_new(0x00283006, "US", [int(round(4095 * np.sqrt(k / (n - 1)))) for k in range(n)])  # gamma-like
    ds.VOILUTSequence = PydicomSequence([item])
    path = tmp_path / "cr_like.dcm"
    ds.save_as(path)
    (img,) = read_dicom(path, window="auto")
    expected = apply_voi_lut(values, pydicom.dcmread(path), index=0, prefer_lut=True) / 4095.0
    assert np.allclose(img.array[0], expected, atol=1e-6)
    assert img.array.min() >= 0.0 and img.array.max() <= 1.0
    assert img.meta["window_function"] == "LUT"

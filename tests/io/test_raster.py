"""PNG / JPEG / TIFF decoding and masks."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_mask, read_raster

GREY8 = np.array([[0, 17, 255], [128, 3, 99]], dtype=np.uint8)


def test_png_8bit_grey_keeps_stored_values(build):
    img = read_raster(build.pil("a.png", GREY8))
    assert img.array.dtype == np.float32 and img.array.shape == (1, 2, 3)
    np.testing.assert_array_equal(img.array[0], GREY8)
    assert img.meta["format"] == "png" and img.meta["bit_depth"] == 8 and img.meta["channels"] == 1
    assert img.meta["size"] == (2, 3) and img.meta["source"] == "a.png" and img.meta["spacing"] is None


def test_png_16bit_grey_keeps_full_range(build):
    stored = np.array([[0, 300], [40000, 65535]], dtype=np.uint16)
    img = read_raster(build.pil("x.png", stored))
    np.testing.assert_array_equal(img.array[0], stored)
    assert img.meta["bit_depth"] == 16


def test_png_16bit_colour_is_refused_rather_than_truncated(build):
    rgb16 = np.full((2, 2, 3), 40000, dtype=np.uint16)
    with pytest.raises(InputError, match="16-bit colour PNG"):
        read_raster(build.png_raw("c16.png", rgb16, bit_depth=16, colour_type=2))


def test_png_rgb_keep_and_grey_luma(build):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (200, 0, 0)
    rgb[1, 1] = (10, 20, 30)
    path = build.pil("rgb.png", rgb)
    keep = read_raster(path)
    assert keep.array.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.moveaxis(keep.array, 0, -1), rgb)
    grey = read_raster(path, rgb="grey")
    assert grey.array.shape == (1, 2, 2) and grey.meta["channels"] == 1 and grey.meta["source_channels"] == 3
    assert grey.array[0, 0, 0] == pytest.approx(0.299 * 200)
    assert grey.array[0, 1, 1] == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def test_png_rgba_drops_alpha(build):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 50, 7
    img = read_raster(build.pil("a.png", rgba))
    assert img.array.shape == (3, 2, 2)
    np.testing.assert_array_equal(img.array[0], 50)


def test_jpeg_grey_and_rgb(build):
    flat = np.full((16, 16), 128, dtype=np.uint8)
    grey = read_raster(build.pil("g.jpg", flat, quality=95))
    assert grey.meta["format"] == "jpeg" and grey.array.shape == (1, 16, 16)
    assert np.abs(grey.array - 128).max() <= 2  # lossy, but a flat image survives almost exactly
    colour = np.zeros((16, 16, 3), dtype=np.uint8)
    colour[..., 2] = 200
    rgb = read_raster(build.pil("c.jpeg", colour, quality=95))
    assert rgb.array.shape == (3, 16, 16)
    assert rgb.array[2].mean() > 150 and rgb.array[0].mean() < 50


@pytest.mark.parametrize("dtype,value", [(np.uint8, 201), (np.uint16, 51234)])
def test_tiff_8_and_16_bit(build, dtype, value):
    arr = np.zeros((3, 4), dtype=dtype)
    arr[1, 2] = value
    tifffile.imwrite(build.root / "t.tif", arr)
    img = read_raster(build.root / "t.tif")
    np.testing.assert_array_equal(img.array[0], arr)
    assert img.meta["format"] == "tiff" and img.meta["bit_depth"] == np.dtype(dtype).itemsize * 8


def test_tiff_16bit_rgb_planar_separate(build):
    rgb = np.stack([np.full((2, 3), v, np.uint16) for v in (1000, 2000, 60000)])  # (3, H, W)
    tifffile.imwrite(build.root / "s.tif", rgb, photometric="rgb", planarconfig="separate")
    img = read_raster(build.root / "s.tif")
    np.testing.assert_array_equal(img.array, rgb)


def test_tiff_multipage_first_page_unless_asked(build):
    path = build.root / "m.tif"
    with tifffile.TiffWriter(path) as tw:
        for v in (5, 6):
            tw.write(np.full((2, 2), v, np.uint8))
    assert read_raster(path).array.max() == 5
    second = read_raster(path, page=1)
    assert second.array.max() == 6 and second.meta["page"] == 1 and second.meta["n_pages"] == 2
    with pytest.raises(InputError, match="page 2 does not exist"):
        read_raster(path, page=2)


def test_tiff_miniswhite_is_inverted_so_higher_is_brighter(build):
    tifffile.imwrite(build.root / "w.tif", np.array([[0, 255]], np.uint8), photometric="miniswhite")
    np.testing.assert_array_equal(read_raster(build.root / "w.tif").array[0], [[255, 0]])


def test_bad_rgb_option(build):
    with pytest.raises(ConfigError):
        read_raster(build.pil("a.png", GREY8), rgb="gray")  # type: ignore[arg-type]


def test_read_raster_refuses_other_formats(build):
    path = build.nifti("v.nii", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(InputError, match="not a PNG, JPEG or TIFF"):
        read_raster(path)


def test_mask_png_binarised_and_shape_checked(build):
    m = np.zeros((4, 5), dtype=np.uint8)
    m[1:3, 2:4] = 255
    path = build.pil("m.png", m)
    mask = read_mask(path, shape=(4, 5))
    assert mask.dtype == np.uint8 and mask.shape == (4, 5)
    np.testing.assert_array_equal(mask, m // 255)
    with pytest.raises(InputError, match=r"mask size \(4,5\) differs from image size \(5,4\)") as e:
        read_mask(path, shape=(5, 4))
    assert "m.png" in str(e.value)


def test_mask_palette_uses_index_and_tiff_and_nifti(build):
    from PIL import Image as PILImage

    pal = PILImage.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 drawn white, index 1 black
    pal.save(build.root / "p.png")
    np.testing.assert_array_equal(read_mask(build.root / "p.png"), [[0, 1], [1, 0]])
    tifffile.imwrite(build.root / "m.tif", np.array([[0, 1, 1]], np.uint8))
    np.testing.assert_array_equal(read_mask(build.root / "m.tif"), [[0, 1, 1]])
    tifffile.imwrite(build.root / "b.tif", np.array([[False, True]]))  # tifffile tags bool as MINISWHITE
    np.testing.assert_array_equal(read_mask(build.root / "b.tif"), [[0, 1]])
    plane = np.zeros((3, 4), np.float32)
    plane[2, 1] = 1
    # a NIfTI mask comes in display orientation, like the NIfTI images it outlines (read_nifti)
    expected = plane.astype(np.uint8).T[::-1, ::-1]
    np.testing.assert_array_equal(read_mask(build.nifti("m.nii.gz", plane)), expected)


def test_mask_refuses_jpeg_and_3d_nifti(build):
    with pytest.raises(InputError, match="JPEG is lossy"):
        read_mask(build.pil("m.jpg", GREY8))
    with pytest.raises(InputError, match="2-D NIfTI"):
        read_mask(build.nifti("v.nii", np.zeros((3, 3, 3), np.float32)))

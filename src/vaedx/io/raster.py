"""PNG / JPEG (Pillow) and TIFF (tifffile) readers, plus binary masks.

Values stay the stored integers as float32: rescaling to [0, 1] belongs to preprocessing, which must know
the real bit depth (a 16-bit X-ray squeezed into 8 bits would lose most of its contrast).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import PIL.Image
import tifffile

from vaedx.errors import ConfigError, InputError, VaedxError
from vaedx.io._files import describe, existing_file, read_head
from vaedx.io.formats import detect_format
from vaedx.io.image import Image, base_meta

_LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
Values = Literal["display", "labels"]


def read_raster(path: str | Path, *, rgb: Literal["keep", "grey"] = "keep", page: int = 0) -> Image:
    """Read a PNG, JPEG or TIFF into (C, H, W) float32; alpha is dropped.

    ``rgb="grey"`` folds RGB into one channel with ITU-R 601 luma weights. ``page`` picks the page of a
    multi-page TIFF (the first by default); it is ignored for PNG and JPEG.
    """
    if rgb not in ("keep", "grey"):
        raise ConfigError(f"rgb must be 'keep' or 'grey', got {rgb!r}")
    p = existing_file(path)
    fmt = detect_format(p)
    hwc, info = _decode(p, fmt, page=page, values="display")
    arr = np.moveaxis(hwc, -1, 0).astype(np.float32)
    if rgb == "grey" and arr.shape[0] != 1:
        if arr.shape[0] != 3:
            raise InputError(f"rgb='grey' needs a grey or RGB image; this one has {arr.shape[0]} channels", p)
        arr = np.tensordot(_LUMA_601, arr, axes=1)[None]
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    meta = base_meta(p, fmt, arr, bit_depth=info.pop("bit_depth"), photometric=info.pop("photometric"))
    meta.update(info, source_channels=int(hwc.shape[2]), grey_from_rgb=rgb == "grey" and hwc.shape[2] == 3)
    return Image(arr, meta)


def read_mask(path: str | Path, shape: Sequence[int] | None = None, *, threshold: float = 0.0) -> np.ndarray:
    """Read a segmentation mask as uint8 0/1 (H, W): any channel above ``threshold`` counts as inside.

    PNG, TIFF or a 2-D NIfTI only: JPEG is refused because its lossy noise turns background into mask.
    Stored values count, not their display: palette images are judged by index, not colour. Give
    ``shape`` (the image's H, W) to fail early on a mask that belongs to another image.
    """
    p = existing_file(path)
    fmt = detect_format(p)
    if fmt == "nifti":
        from vaedx.io.nifti import read_nifti_plane  # local: nifti is only needed for NIfTI masks

        plane = read_nifti_plane(p)
    elif fmt in ("png", "tiff"):
        plane = _decode(p, fmt, page=0, values="labels")[0].max(axis=2)
    else:
        why = " (JPEG is lossy)" if fmt == "jpeg" else ""
        raise InputError(f"masks must be PNG, TIFF or 2-D NIfTI, not {fmt}{why}", p)
    mask = (plane > threshold).astype(np.uint8)
    if shape is not None and tuple(int(s) for s in shape) != mask.shape:
        h, w = mask.shape
        raise InputError(f"mask size ({h},{w}) differs from image size ({int(shape[0])},{int(shape[1])})", p)
    return mask


def _decode(p: Path, fmt: str, *, page: int, values: Values) -> tuple[np.ndarray, dict[str, Any]]:
    """(H, W, C) array without alpha, and facts for meta.

    ``values="display"`` maps palettes to colours and inverts MINISWHITE so higher means brighter;
    ``"labels"`` keeps the stored integers, which is what a mask means.
    """
    if fmt == "tiff":
        return _decode_tiff(p, page, values)
    if fmt in _PIL_FORMAT:
        return _decode_pil(p, fmt, values)
    raise InputError(f"not a PNG, JPEG or TIFF file (content is {fmt}); use read_any", p)


def _decode_pil(p: Path, fmt: str, values: Values) -> tuple[np.ndarray, dict[str, Any]]:
    if fmt == "png":
        _refuse_16bit_colour_png(p)
    try:
        with PIL.Image.open(p, formats=[_PIL_FORMAT[fmt]]) as im:
            im.load()  # decoding is lazy: truncation only shows up here
            mode = im.mode
            arr = _pil_array(im, values)
    except VaedxError:
        raise
    except Exception as e:
        raise InputError(f"cannot decode {fmt.upper()} ({describe(e)})", p) from e
    bits = 1 if arr.dtype == bool else arr.dtype.itemsize * 8
    return arr, {"bit_depth": bits, "photometric": mode}


def _pil_array(im: PIL.Image.Image, values: Values) -> np.ndarray:
    mode = im.mode
    if mode in ("P", "PA"):
        if values == "labels":
            return np.asarray(im.convert("P") if mode == "PA" else im)[..., None]
        return np.asarray(im.convert("RGBA"))[..., :3]
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(im)[..., None]  # "1" gives bool, i.e. the stored 0/1
    if mode in ("LA", "La"):
        return np.asarray(im)[..., :1]
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return np.asarray(im)[..., :3]
    return np.asarray(im.convert("RGB"))  # CMYK / YCbCr JPEGs and other colour spaces


def _refuse_16bit_colour_png(p: Path) -> None:
    """Pillow silently keeps only the high byte of 16-bit RGB(A)/grey+alpha PNGs; better to say so."""
    head = read_head(p, 26)
    if len(head) == 26 and head[12:16] == b"IHDR":
        depth, colour = struct.unpack(">BB", head[24:26])
        if depth == 16 and colour in (2, 4, 6):
            raise InputError("16-bit colour PNG would lose its low byte in Pillow; convert it to TIFF", p)


def _decode_tiff(p: Path, page: int, values: Values) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with tifffile.TiffFile(p) as tif:
            n_pages = len(tif.pages)
            if not 0 <= page < n_pages:
                raise InputError(f"TIFF has {n_pages} page(s); page {page} does not exist", p)
            pg = tif.pages[page]
            arr = pg.asarray()
            axes, photometric, compression = pg.axes, pg.photometric, pg.compression
            n_extra, colormap, bits = len(pg.extrasamples), pg.colormap, int(pg.bitspersample)
    except VaedxError:
        raise
    except Exception as e:
        raise InputError(f"cannot decode TIFF ({describe(e)})", p) from e
    if arr.ndim == 2:
        arr = arr[..., None]
    elif arr.ndim == 3 and axes.startswith("S"):  # planar configuration "separate"
        arr = np.moveaxis(arr, 0, -1)
    elif not (arr.ndim == 3 and axes.endswith("S")):
        raise InputError(f"unsupported TIFF page layout (axes {axes}, shape {arr.shape})", p)
    P = tifffile.PHOTOMETRIC
    name = P(photometric).name
    if photometric in (P.MINISWHITE, P.MINISBLACK):
        arr = arr[..., : arr.shape[2] - n_extra]
        if photometric == P.MINISWHITE and values == "display" and bits > 1:
            # Higher = brighter, as for every other format. Bilevel pages are left alone: they are masks
            # in practice, and tifffile writes boolean arrays as MINISWHITE without inverting them.
            arr = _invert(arr, bits)
    elif photometric == P.RGB or (photometric == P.YCBCR and compression == tifffile.COMPRESSION.JPEG):
        arr = arr[..., :3]  # tifffile returns JPEG-compressed YCbCr already as RGB
    elif photometric == P.PALETTE and colormap is not None:
        if values == "display":
            arr, bits = np.moveaxis(colormap[:, arr[..., 0]], 0, -1), 16
    else:
        raise InputError(f"unsupported TIFF photometric interpretation {name}", p)
    return arr, {"bit_depth": bits, "photometric": name, "page": page, "n_pages": n_pages}


def _invert(arr: np.ndarray, bits: int) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.integer):
        return ((1 << bits) - 1 - arr.astype(np.int64)).astype(arr.dtype)
    return arr.max() + arr.min() - arr

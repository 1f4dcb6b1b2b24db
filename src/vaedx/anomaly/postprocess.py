"""Post-processing of anomaly maps: foreground masks, smoothing, small-blob removal, image scores.

Reconstruction error is high at the body outline and in background noise, which is not pathology; masking
to the foreground and smoothing remove most of it. All operations are per image (no filtering or
connectivity across the batch axis) and work on a whole (N, H, W) batch in one scipy call.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.measures import as_binary, check_finite


def _maps(maps: ArrayLike, name: str = "maps") -> np.ndarray:
    m = np.asarray(maps)
    if m.ndim not in (3, 4) or not np.issubdtype(m.dtype, np.number):
        raise InputError(f"{name} must be numeric (N, H, W) or (N, C, H, W), got shape {m.shape}")
    check_finite(m, name)
    return m if np.issubdtype(m.dtype, np.floating) else m.astype(np.float32)


def _spatial(ndim: int, value: float, identity: float) -> tuple[float, ...]:
    """Per-axis filter size/sigma acting only on the last two axes (``identity`` elsewhere)."""
    return (identity,) * (ndim - 2) + (value, value)


def _plane_structure(ndim: int, connectivity: int) -> np.ndarray:
    """2-D structuring element embedded so nothing connects across batch/channel axes."""
    s = np.zeros((3,) * ndim, dtype=bool)
    s[(1,) * (ndim - 2)] = ndimage.generate_binary_structure(2, connectivity)
    return s


def foreground_mask(
    images: ArrayLike, threshold: float = 0.02, erosion_iters: int = 0, relative: bool = True
) -> np.ndarray:
    """(N, H, W) bool body/brain mask: any channel > threshold, holes filled, then eroded.

    With ``relative`` the threshold is a fraction of each image's own intensity range (as in
    ``PreprocessConfig.foreground_threshold``), so it works before or after normalisation; a constant image
    has no foreground. Hole filling keeps dark structures inside the body (ventricles, lungs). Erosion
    treats outside the image as background and trims the rim where reconstruction error concentrates.
    """
    x = _maps(images, "images")
    if erosion_iters < 0:
        raise ConfigError(f"erosion_iters must be >= 0, got {erosion_iters}")
    if relative:
        axes = tuple(range(1, x.ndim))
        lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
        x = np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1), 0)
        fg = x > threshold
    else:
        fg = x > threshold
    if fg.ndim == 4:
        fg = fg.any(axis=1)
    st = _plane_structure(3, 1)
    fg = ndimage.binary_fill_holes(fg, structure=st)
    if erosion_iters:
        fg = ndimage.binary_erosion(fg, structure=st, iterations=erosion_iters, border_value=0)
    return fg


def apply_mask(maps: ArrayLike, fg: ArrayLike, fill: float = 0.0) -> np.ndarray:
    """Copy of ``maps`` with pixels outside the (N, H, W) foreground set to ``fill`` (channels broadcast)."""
    m = _maps(maps)
    f = as_binary(fg, "fg")
    if f.shape != (m.shape[0], *m.shape[-2:]):
        raise InputError(f"fg has shape {f.shape} but maps have {m.shape}")
    if m.ndim == 4:
        f = f[:, None]
    return np.where(f, m, np.asarray(fill, dtype=m.dtype))


def median_filter(maps: ArrayLike, size: int = 3) -> np.ndarray:
    """Per-image median filter (size × size): removes isolated hot pixels but keeps lesion edges."""
    if size < 1:
        raise ConfigError(f"size must be >= 1, got {size}")
    m = _maps(maps)
    return ndimage.median_filter(m, size=_spatial(m.ndim, size, 1), mode="reflect")


def gaussian_filter(maps: ArrayLike, sigma: float = 1.0) -> np.ndarray:
    """Per-image Gaussian smoothing; pooling neighbouring errors favours blobs over pixel noise."""
    if sigma < 0:
        raise ConfigError(f"sigma must be >= 0, got {sigma}")
    m = _maps(maps)
    return ndimage.gaussian_filter(m, sigma=_spatial(m.ndim, sigma, 0), mode="reflect")


def remove_small_components(binary: ArrayLike, min_size: int, connectivity: int = 2) -> np.ndarray:
    """Drop connected components with fewer than ``min_size`` pixels, per image of (H, W) or (N, H, W).

    ``connectivity`` 1 links edge neighbours only (4-connected), 2 also diagonals (8-connected).
    """
    if connectivity not in (1, 2):
        raise ConfigError(f"connectivity must be 1 or 2, got {connectivity}")
    if min_size < 0:
        raise ConfigError(f"min_size must be >= 0, got {min_size}")
    b = as_binary(binary, "binary")
    if b.ndim not in (2, 3):
        raise InputError(f"binary must be (H, W) or (N, H, W), got shape {b.shape}")
    labels, _ = ndimage.label(b, structure=_plane_structure(b.ndim, connectivity))
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def image_score(
    maps: ArrayLike,
    method: Literal["mean", "max", "topk"] = "mean",
    topk_percent: float = 1.0,
    valid: ArrayLike | None = None,
) -> np.ndarray:
    """(N,) score per anomaly map, using only ``valid`` pixels (default: all).

    ``topk``: mean of the highest ceil(topk_percent/100 · n_valid) pixels (at least one) of each image, a
    compromise between the noisy max and the diluted mean for small lesions. An image with no valid pixel
    raises InputError naming it, since any score for it would be made up.
    """
    m = _maps(maps)
    flat = m.reshape(len(m), -1).astype(np.float64)
    if valid is None:
        v = np.ones(flat.shape, dtype=bool)
    else:
        vv = as_binary(valid, "valid")
        if vv.shape != m.shape and vv.shape != (m.shape[0], *m.shape[-2:]):
            raise InputError(f"valid has shape {vv.shape} but maps have {m.shape}")
        v = np.broadcast_to(vv[:, None] if vv.ndim < m.ndim else vv, m.shape).reshape(flat.shape)
    n_valid = v.sum(axis=1)
    empty = np.flatnonzero(n_valid == 0)
    if empty.size:
        raise InputError(f"image {int(empty[0])} has no valid pixels to score ({empty.size} such image(s))")
    if method == "mean":
        return np.where(v, flat, 0.0).sum(axis=1) / n_valid
    if method == "max":
        return np.where(v, flat, -np.inf).max(axis=1)
    if method != "topk":
        raise ConfigError(f"method must be 'mean', 'max' or 'topk', got {method!r}")
    if not 0 < topk_percent <= 100:
        raise ConfigError(f"topk_percent must be in (0, 100], got {topk_percent}")
    k = np.maximum(1, np.ceil(np.round(topk_percent / 100 * n_valid, 9))).astype(np.int64)
    desc = -np.sort(np.where(v, -flat, np.inf), axis=1)  # valid values first, highest first
    return np.cumsum(desc, axis=1)[np.arange(len(flat)), k - 1] / k

"""PNG rendering for the service: grey images, a colour heatmap layer, an overlay and a contour layer.

Why separate layers: the web page blends heatmap and image with an opacity slider, while API clients that
just want a picture get the pre-composited ``overlay_png``. PNGs are built with Pillow from arrays only, so
no metadata (and hence nothing identifying) can leak into them.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib import colormaps
from PIL import Image as PILImage
from scipy import ndimage

_CMAP = colormaps["inferno"]
_CMAP(0.0)  # builds the lookup table now, once: a lazy first build from two worker threads at once would race
CONTOUR_RGBA = (0, 255, 255, 255)  # cyan: visible on both grey anatomy and the inferno heatmap


def to_png_bytes(rgb_or_grey: np.ndarray) -> bytes:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> PNG file bytes."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb_or_grey)).save(buf, format="PNG")
    return buf.getvalue()


def to_png_b64(rgb_or_grey: np.ndarray) -> str:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> base64 PNG text (no data: prefix)."""
    return base64.b64encode(to_png_bytes(rgb_or_grey)).decode("ascii")


def display_range(x: np.ndarray) -> tuple[float, float]:
    """Min and max of the image: input and reconstruction share it, so their grey levels compare."""
    return float(x.min()), float(x.max())


def display_image(x: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """(C, H, W) model-space image -> uint8 grey (H, W) or RGB (H, W, 3), scaled to ``value_range``."""
    img = x[:3].transpose(1, 2, 0) if x.shape[0] == 3 else x[0]
    lo, hi = value_range if value_range is not None else display_range(img)
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def heatmap_rgba(anomaly: np.ndarray, vmax: float) -> np.ndarray:
    """(H, W) map -> RGBA uint8 with colour and alpha both rising with the anomaly (0 is transparent).

    Alpha is linear in the anomaly: a square-root ramp (tried first) tinted the whole image purple on real
    chest X-rays, hiding where the hot spots are.
    """
    t = np.clip(anomaly / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(anomaly)
    rgba = (_CMAP(t) * 255).astype(np.uint8)
    rgba[..., 3] = (t * 255).astype(np.uint8)
    return rgba


def overlay(base: np.ndarray, layer: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """Alpha-composite an RGBA layer over a grey/RGB uint8 base -> RGB uint8."""
    rgb = np.repeat(base[..., None], 3, -1) if base.ndim == 2 else base
    a = layer[..., 3:4].astype(np.float32) / 255 * opacity
    return (rgb * (1 - a) + layer[..., :3] * a).round().astype(np.uint8)


def contour_layer(region: np.ndarray) -> np.ndarray:
    """RGBA outline (1 pixel, inside the region) of a boolean mask; transparent elsewhere."""
    edge = region & ~ndimage.binary_erosion(region, border_value=0)
    out = np.zeros((*region.shape, 4), dtype=np.uint8)
    out[edge] = CONTOUR_RGBA
    return out


def regions(region: np.ndarray, limit: int = 20) -> list[dict[str, int]]:
    """Bounding boxes of the connected regions (8-connectivity), largest first, at most ``limit``."""
    labels, n = ndimage.label(region, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        area = int((labels[sl] == i).sum())
        boxes.append({"x": sl[1].start, "y": sl[0].start, "width": sl[1].stop - sl[1].start,
                      "height": sl[0].stop - sl[0].start, "area": area})  # fmt: skip
    boxes.sort(key=lambda b: -b["area"])
    return boxes[:limit]

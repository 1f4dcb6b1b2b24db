"""A whole volume made into model inputs, and model outputs put back into the volume's own space.

Why per volume rather than per slice: a 2-D reader normalises each slice on its own, so a slice holding a
bright lesion is rescaled darker than its neighbours and the lesion loses contrast exactly where it is.
Statistics over the whole volume (inside the brain or the foreground, so that air does not dominate the
percentiles) keep one intensity scale across the patient. Skull stripping and in-plane resampling also need
the whole volume. :class:`PreparedVolume` remembers every step, so an anomaly map computed on the model's
slices can be undone step by step (padding, resizing, resampling, reorientation) into a NIfTI that lies
voxel for voxel on the file the user gave.

Models see volumes in LPS order (see :meth:`vaedx.io.volume.Volume.reoriented`): their axial planes look
like 2-D DICOM and PNG slices, so one model can be trained on slices and run on volumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from vaedx.data.preprocess import PreprocessConfig, _target_hw, normalize_intensity, resize
from vaedx.errors import ConfigError
from vaedx.io.volume import Volume

MODEL_ORIENTATION = "LPS"


def foreground(data: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels above ``threshold`` of the volume's min..max range: the head (or body) without the air."""
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros(data.shape, dtype=bool)
    return data > lo + threshold * (hi - lo)


def volume_range(
    data: np.ndarray, cfg: PreprocessConfig, inside: np.ndarray | None = None
) -> tuple[float, float] | None:
    """The (lo, hi) that ``cfg.normalize`` maps to [0, 1], measured over the voxels ``inside`` (all if None).

    For ``zscore`` it is (mean, sd); for ``none`` there is nothing to measure (None).
    """
    if cfg.normalize == "none":
        return None
    if cfg.normalize == "fixed":
        return tuple(float(v) for v in cfg.fixed_range)  # type: ignore[return-value]
    values = data[inside] if inside is not None and inside.any() else data.reshape(-1)
    if cfg.normalize == "zscore":
        return float(values.mean()), float(values.std())
    if cfg.normalize == "minmax":
        return float(values.min()), float(values.max())
    lo, hi = np.percentile(values, cfg.clip_percentiles)
    return float(lo), float(hi)


def _resample_planes(data: np.ndarray, shape: tuple[int, int], *, is_mask: bool) -> np.ndarray:
    """(Z, H, W) planes resized in-plane to ``shape``: bilinear for values, nearest for masks."""
    if tuple(data.shape[1:]) == tuple(shape):
        return data
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[:, None]
    mode = {"mode": "nearest-exact"} if is_mask else {"mode": "bilinear", "align_corners": False}
    return F.interpolate(t, size=shape, **mode)[:, 0].numpy()  # type: ignore[arg-type]


@dataclass
class PreparedVolume:
    """Model inputs made from one volume, and the way back from model outputs to the input's space.

    ``source`` is the volume in model orientation at its own resolution; ``grid`` the in-plane shape after
    resampling to ``cfg.target_spacing`` (``source``'s when not resampled). ``slices`` (Z, 1, H, W) are
    the model inputs ((Z, 2K+1, H, W) with ``cfg.context_slices`` = K: each slice with its neighbours, see
    :func:`with_context`), ``masks`` (Z, H, W) the ground truth carried through the same steps (the centre
    slice's, as are the anomaly maps put back by :meth:`to_source`), ``brain`` the
    skull-stripping mask on ``source`` (None without skull stripping).
    """

    source: Volume
    cfg: PreprocessConfig
    slices: np.ndarray = field(repr=False)
    grid: tuple[int, int]
    brain: np.ndarray | None = field(default=None, repr=False)
    masks: np.ndarray | None = field(default=None, repr=False)
    value_range: tuple[float, float] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_source(self, maps: np.ndarray, *, is_mask: bool = False) -> np.ndarray:
        """(Z, H, W) model-size maps -> (z, y, x) on ``source``: undo padding, resizing, resampling."""
        maps = np.asarray(maps, dtype=np.float32)
        z, h, w = self.source.shape
        if maps.shape[0] != z:
            raise ConfigError(f"{maps.shape[0]} map slices for a volume of {z} slices")
        if self.cfg.size is not None:
            gh, gw = self.grid
            th, tw = _target_hw(gh, gw, self.cfg)
            top, left = (self.cfg.size[0] - th) // 2, (self.cfg.size[1] - tw) // 2
            maps = _resample_planes(maps[:, top : top + th, left : left + tw], self.grid, is_mask=is_mask)
        out = _resample_planes(maps, (h, w), is_mask=is_mask)
        return (out > 0.5).astype(np.uint8) if is_mask else out

    def to_original(self, maps: np.ndarray, *, is_mask: bool = False) -> nib.Nifti1Image:
        """(Z, H, W) model-size maps as a NIfTI with the shape, affine and voxel order of the input file."""
        on_source = self.to_source(maps, is_mask=is_mask)
        return self.source.to_original(on_source.astype(np.uint8) if is_mask else on_source)


def in_model_orientation(vol: Volume) -> Volume:
    """``vol`` reoriented to LPS (a volume of unknown orientation, such as a slice stack, as it is)."""
    return vol.reoriented(MODEL_ORIENTATION)


def prepare_volume(vol: Volume, cfg: PreprocessConfig, mask: np.ndarray | None = None) -> PreparedVolume:
    """``vol`` (and its ground-truth ``mask``, laid out like ``vol.data``) as model inputs per ``cfg``.

    Steps, in order: reorient to LPS; skull stripping (``cfg.brain_extraction``); in-plane resampling to
    ``cfg.target_spacing``; intensity normalisation over the volume (``normalize_scope='volume'``, inside
    the brain or the foreground) or slice by slice (``'image'``, as the 2-D readers do); zeroing outside
    the brain / foreground; resizing and padding each slice to ``cfg.size``; stacking each slice with its
    ``cfg.context_slices`` neighbours on each side as channels. A single-channel volume
    stands for the one channel a model trained on ``channels=[c]`` takes (recorded in ``notes``).
    """
    if cfg.channels is not None and len(cfg.channels) != 1:
        raise ConfigError(
            f"the model takes channels {cfg.channels} but a volume has one channel: "
            "train on one channel (--channels N) to score volumes"
        )
    notes: dict[str, Any] = {}
    if cfg.channels is not None:
        notes["channel_mapped"] = f"the volume's single channel stands for channel {cfg.channels[0]}"
    if mask is not None and np.asarray(mask).shape != vol.data.shape:
        raise ConfigError(f"mask of shape {np.asarray(mask).shape} does not match the volume's {vol.shape}")
    source = in_model_orientation(vol)
    truth = None if mask is None else _like(vol, source, np.asarray(mask))
    brain = None
    if cfg.brain_extraction != "none":
        from vaedx.data.brain import brain_mask

        brain = brain_mask(source, cfg.brain_extraction)
    data = source.data
    grid = _grid(source, cfg)
    data = _resample_planes(data, grid, is_mask=False)
    inside = None if brain is None else _resample_planes(brain.astype(np.float32), grid, is_mask=True) > 0.5
    if truth is not None:
        truth = _resample_planes(truth.astype(np.float32), grid, is_mask=True) > 0.5
    value_range = None
    if cfg.normalize_scope == "volume":
        region = inside if inside is not None else foreground(data, cfg.foreground_threshold)
        value_range = volume_range(data, cfg, region)
        data = normalize_intensity(data, cfg, value_range)
    else:
        data = np.stack([normalize_intensity(plane, cfg) for plane in data])
    if cfg.foreground_mask:
        data = data * np.stack([foreground(plane, cfg.foreground_threshold) for plane in data])
    if inside is not None:
        data = data * inside
    slices = with_context(resize(data.astype(np.float32), cfg), cfg.context_slices)
    masks = None
    if truth is not None:
        masks = (resize(truth.astype(np.float32), cfg, is_mask=True) > 0.5).astype(np.uint8)
    return PreparedVolume(
        source=source,
        cfg=cfg,
        slices=np.ascontiguousarray(slices, dtype=np.float32),
        grid=grid,
        brain=brain,
        masks=masks,
        value_range=value_range,
        notes=notes,
    )


def with_context(planes: np.ndarray, k: int) -> np.ndarray:
    """(Z, H, W) planes -> (Z, 2k+1, H, W): slice z with slices z-k..z+k as channels, z in the middle.

    Why 2.5-D: a lesion continues across neighbouring slices while noise and many look-alikes of healthy
    tissue do not, so a model that sees the slices above and below can tell them apart; a 3-D model would
    cost far more to train. Slices beyond the ends of the volume are the nearest end slice repeated. Why
    not zeros: an empty channel is an input the model meets only at the 2k outermost slices of each
    volume, so it would learn (or fail to learn) a special case there and score it as anomalous; a repeated
    slice is real anatomy of that brain at almost the same place, as a neighbour would be, and leaves the
    intensity statistics of every channel alike. Mirroring (z+1 for z-1) would invent structure that
    looks symmetric about the end slice, which the anatomy is not.
    """
    if k == 0:
        return planes[:, None]
    z = planes.shape[0]
    index = np.clip(np.arange(z)[:, None] + np.arange(-k, k + 1)[None, :], 0, z - 1)
    return planes[index]


def _grid(source: Volume, cfg: PreprocessConfig) -> tuple[int, int]:
    """In-plane shape after resampling to ``cfg.target_spacing`` (the source's own without one)."""
    _, h, w = source.shape
    if not cfg.target_spacing:
        return h, w
    if source.meta.get("spacing_assumed"):
        raise ConfigError(
            f"{source.meta.get('source', 'this volume')} has no known spacing, so it cannot be resampled to "
            f"{cfg.target_spacing} mm; prepare it without target_spacing"
        )
    _, sy, sx = source.spacing
    ty, tx = cfg.target_spacing
    return max(1, round(h * sy / ty)), max(1, round(w * sx / tx))


def _like(vol: Volume, source: Volume, array: np.ndarray) -> np.ndarray:
    """``array``, laid out like ``vol.data``, in ``source``'s voxel order (the same turn as the data)."""
    if source is vol:
        return array
    turned = Volume(array.astype(np.float32), vol.affine, vol.spacing, orientation=vol.orientation)
    return turned.reoriented(MODEL_ORIENTATION).data

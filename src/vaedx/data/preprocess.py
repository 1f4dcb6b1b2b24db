"""Preprocessing: one pydantic model that says how raw pixels become model inputs.

The same :class:`PreprocessConfig` is saved in every tensor store and beside every model, so a later
command (detect, diagnose, serve) applies exactly the transform the model was trained with, and can refuse
data that was prepared differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vaedx.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where resizing runs, so the CLI and the data commands start fast
    import torch


class PreprocessConfig(BaseModel):
    """How to turn a decoded image (C, H, W float32) into a model input."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int] | None = Field(
        default=None, description="Output (height, width); None keeps the source size (must then be uniform)."
    )
    keep_aspect: bool = Field(default=True, description="Resize the longer side, then pad to `size`.")
    pad_value: float = 0.0
    channels: list[int] | None = Field(
        default=None, description="Channel indices to keep, e.g. [1] for FLAIR."
    )
    grey: bool = Field(default=False, description="Average channels into one (ITU-R 601 weights for RGB).")
    normalize: Literal["percentile", "minmax", "zscore", "fixed", "none"] = "percentile"
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    fixed_range: tuple[float, float] = Field(
        default=(0.0, 255.0), description="Input range mapped to [0, 1] when normalize='fixed'."
    )
    foreground_mask: bool = Field(default=False, description="Zero out background found by thresholding.")
    foreground_threshold: float = Field(default=0.02, description="Fraction of the normalised range.")
    normalize_scope: Literal["image", "volume"] = Field(
        default="image",
        description="'volume': intensity percentiles over a whole volume (inside the brain or foreground), "
        "so one slice's lesion does not rescale that slice; 2-D images are their own volume.",
    )
    brain_extraction: str = Field(
        default="none", description="Skull stripping of volumes before normalisation (vaedx.data.brain)."
    )
    target_spacing: tuple[float, float] | None = Field(
        default=None,
        description="In-plane (row, column) spacing in mm that volumes are resampled to before resizing; "
        "the spacing between slices is kept, so every slice stays one row.",
    )
    context_slices: int = Field(
        default=0,
        ge=0,
        le=8,
        description="2.5-D input: K slices above and K below each slice of a volume, stacked with it as "
        "2K+1 channels (centre in the middle); needs one channel; 0 = each slice alone.",
    )

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, v):
        if isinstance(v, int):
            return (v, v)
        return v

    @field_validator("brain_extraction")
    @classmethod
    def _brain(cls, v):
        from vaedx.data.brain import METHODS  # light: the skull stripper itself is imported when it runs

        if v not in METHODS:
            raise ValueError(f"unknown brain extraction {v!r}: use one of {', '.join(METHODS)}")
        return v

    @field_validator("target_spacing")
    @classmethod
    def _spacing(cls, v):
        if v is not None and not all(float(s) > 0 for s in v):
            raise ValueError("target_spacing must be positive millimetres")
        return v

    @field_validator("context_slices")
    @classmethod
    def _context(cls, v, info):
        channels = info.data.get("channels")
        if v and channels is not None and len(channels) > 1 and not info.data.get("grey"):
            raise ValueError(
                f"context slices stack neighbouring slices of one channel, but channels {channels} are kept: "
                "choose one channel (e.g. 1 for the LGG FLAIR) or --grey"
            )
        return v

    @property
    def volume_steps(self) -> bool:
        """True when preparing needs the whole volume (volume statistics, skull stripping, resampling,
        neighbouring slices as channels)."""
        scoped = self.normalize_scope == "volume"
        whole = self.brain_extraction != "none" or bool(self.target_spacing) or self.context_slices > 0
        return scoped or whole

    @field_validator("clip_percentiles")
    @classmethod
    def _pct(cls, v):
        lo, hi = v
        if not 0 <= lo < hi <= 100:
            raise ValueError("clip_percentiles must satisfy 0 <= low < high <= 100")
        return v

    def fingerprint(self) -> str:
        """Stable text used to check that a model and a store were prepared the same way."""
        return self.model_dump_json()

    def describe_difference(self, other: PreprocessConfig) -> list[str]:
        a, b = self.model_dump(), other.model_dump()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b.get(k)]


def no_neighbours(cfg: PreprocessConfig) -> str:
    """Why a single 2-D image cannot be fed to a model of ``cfg.context_slices`` neighbours (2.5-D)."""
    k = cfg.context_slices
    return (
        f"the model takes each slice with its {k} neighbour(s) on each side as {2 * k + 1} channels "
        "(context_slices), and a single 2-D image has no neighbouring slices: give its volume "
        "(NIfTI file or DICOM series)"
    )


_RGB_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def channel_mapped(n_channels: int, cfg: PreprocessConfig) -> bool:
    """True when a single-channel image stands for the one channel a model was trained on.

    A model trained on the FLAIR channel of 3-channel PNGs (``channels=[1]``) must accept a FLAIR DICOM or
    NIfTI, which has one channel: that is the same modality, not a different image. Only a one-channel
    selection maps; a model of several channels cannot be fed one.
    """
    return cfg.channels is not None and len(cfg.channels) == 1 and n_channels == 1 and cfg.channels[0] != 0


def select_channels(x: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """The channels ``cfg`` keeps (see :func:`channel_mapped` for single-channel inputs), then grey."""
    if channel_mapped(x.shape[0], cfg):
        pass  # the image's one channel is the modality the model's one channel was trained on
    elif cfg.channels is not None:
        bad = [c for c in cfg.channels if c >= x.shape[0] or c < -x.shape[0]]
        if bad:
            raise ConfigError(f"channels {bad} requested but the image has {x.shape[0]} channel(s)")
        x = x[cfg.channels]
    if cfg.grey and x.shape[0] > 1:
        if x.shape[0] == 3:
            x = np.tensordot(_RGB_WEIGHTS, x, axes=1)[None]
        else:
            x = x.mean(axis=0, keepdims=True)
    return x


def normalize_intensity(
    x: np.ndarray, cfg: PreprocessConfig, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Map intensities to a common scale; percentile/minmax/fixed give [0, 1].

    ``value_range`` (lo, hi), measured elsewhere (over a whole volume), replaces the image's own statistics.
    """
    x = x.astype(np.float32, copy=False)
    if cfg.normalize == "none":
        return x
    if value_range is not None:
        lo, hi = value_range
        if cfg.normalize == "zscore":
            return (x - lo) / (hi if hi > 0 else 1.0)  # for zscore the range is (mean, sd)
    elif cfg.normalize == "fixed":
        lo, hi = cfg.fixed_range
    elif cfg.normalize == "zscore":
        sd = float(x.std())
        return (x - float(x.mean())) / (sd if sd > 0 else 1.0)
    elif cfg.normalize == "minmax":
        lo, hi = float(x.min()), float(x.max())
    else:
        lo, hi = (float(v) for v in np.percentile(x, cfg.clip_percentiles))
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _target_hw(h: int, w: int, cfg: PreprocessConfig) -> tuple[int, int]:
    th, tw = cfg.size  # type: ignore[misc]
    if not cfg.keep_aspect:
        return th, tw
    scale = min(th / h, tw / w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _pad_to(t: torch.Tensor, size: tuple[int, int], value: float) -> torch.Tensor:
    import torch.nn.functional as F

    th, tw = size
    h, w = t.shape[-2:]
    top, left = (th - h) // 2, (tw - w) // 2
    return F.pad(t, (left, tw - w - left, top, th - h - top), value=value)


def resize(x: np.ndarray, cfg: PreprocessConfig, *, is_mask: bool = False) -> np.ndarray:
    """Antialiased bilinear for images, nearest for masks; pads to keep the aspect ratio."""
    if cfg.size is None or tuple(x.shape[-2:]) == tuple(cfg.size):
        return x
    h, w = x.shape[-2:]
    import torch
    import torch.nn.functional as F

    th, tw = _target_hw(h, w, cfg)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    if (th, tw) != (h, w):
        if is_mask:
            t = F.interpolate(t, size=(th, tw), mode="nearest-exact")
        else:
            t = F.interpolate(t, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
    t = _pad_to(t, cfg.size, 0.0 if is_mask else cfg.pad_value)
    return t[0].numpy()


def foreground(x: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Boolean (H, W) foreground: any channel above the threshold of the normalised range."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape[-2:], dtype=bool)
    return ((x - lo) / (hi - lo) > cfg.foreground_threshold).any(axis=0)


def apply(
    x: np.ndarray, cfg: PreprocessConfig, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(C, H, W) image and optional (H, W) mask -> preprocessed float32 image and uint8 mask."""
    if cfg.context_slices:
        raise ConfigError(no_neighbours(cfg))
    if x.ndim == 2:
        x = x[None]
    x = select_channels(x, cfg)
    x = normalize_intensity(x, cfg)
    if cfg.foreground_mask:
        x = x * foreground(x, cfg)[None]
    x = resize(x, cfg).astype(np.float32, copy=False)
    if mask is not None:
        m = (np.asarray(mask) > 0).astype(np.float32)
        mask = (resize(m[None], cfg, is_mask=True)[0] > 0.5).astype(np.uint8)
    return x, mask

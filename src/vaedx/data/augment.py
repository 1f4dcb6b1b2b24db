"""Random geometric augmentation of image batches on the training device.

Why here and in torch: the diagnosis networks (supervised CNN, fine-tuned VAE encoder, M2) see each
labelled image hundreds of times when labels are scarce, and on PneumoniaMNIST the official test split
comes from other patients than train/val; small random rotations, zooms and shifts are what close most
of that gap (measured in benchmarks/diagnosis.py). Doing it on whole (N, C, H, W) batches with one
``affine_grid``/``grid_sample`` keeps it fast on CPU and on CUDA and needs no per-image PIL round trip.

No flips by default: in chest X-rays and brain MRI left and right are anatomically different (heart
side, lesion laterality), so a mirrored image is not a plausible patient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field


class AugmentConfig(BaseModel):
    """Ranges of the random affine transform; every draw is uniform in [-range, +range]."""

    model_config = ConfigDict(extra="forbid")

    rotate_deg: float = Field(default=10.0, ge=0, le=180, description="Maximum rotation in degrees.")
    scale: float = Field(default=0.1, ge=0, lt=1, description="Maximum relative zoom in or out.")
    translate: float = Field(default=0.05, ge=0, le=1, description="Maximum shift, fraction of the size.")
    hflip: bool = Field(default=False, description="Mirror half of the images left-right.")

    @property
    def is_identity(self) -> bool:
        return self.rotate_deg == 0 and self.scale == 0 and self.translate == 0 and not self.hflip


def random_affine(
    x: torch.Tensor, cfg: AugmentConfig | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A randomly rotated, zoomed and shifted copy of each image of ``x`` (N, C, H, W); ``x`` itself when
    ``cfg`` is None (no augmentation), so trainers can call it unconditionally.

    Border pixels are repeated outside the image (``padding_mode="border"``) so a shift does not paint a
    black band that a classifier could learn as a cue. The random numbers are drawn on the generator's
    device (CPU when none is given) and moved, so runs repeat with a seeded CPU generator on any device.
    """
    if cfg is None or cfg.is_identity or x.shape[0] == 0:
        return x
    n = x.shape[0]

    def uniform(span: float) -> torch.Tensor:
        return ((torch.rand(n, generator=generator) * 2 - 1) * span).to(x.device, torch.float32)

    angle, zoom = uniform(math.radians(cfg.rotate_deg)), 1 + uniform(cfg.scale)
    tx, ty = uniform(2 * cfg.translate), uniform(2 * cfg.translate)  # grid coordinates span [-1, 1]
    sx = zoom
    if cfg.hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        sx = torch.where(flip, -zoom, zoom)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([sx * cos, -zoom * sin, tx], 1), torch.stack([sx * sin, zoom * cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def as_augment(value: AugmentConfig | dict | bool | None) -> AugmentConfig | None:
    """True -> the defaults, False/None -> no augmentation, a dict -> validated options."""
    if value is None or value is False:
        return None
    if value is True:
        return AugmentConfig()
    cfg = value if isinstance(value, AugmentConfig) else AugmentConfig.model_validate(value)
    return None if cfg.is_identity else cfg

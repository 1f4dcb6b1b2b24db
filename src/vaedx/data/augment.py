"""Random geometric augmentation of image batches on the training device.

Why here and in torch: the diagnosis networks (supervised CNN, fine-tuned VAE encoder, M2) see each
labelled image hundreds of times when labels are scarce, and on PneumoniaMNIST the official test split
comes from other patients than train/val; small random rotations, zooms and shifts are what close most
of that gap (measured in benchmarks/diagnosis.py). Doing it on whole (N, C, H, W) batches with one
``affine_grid``/``grid_sample`` keeps it fast on CPU and on CUDA and needs no per-image PIL round trip.

No flips by default: in chest X-rays and brain MRI left and right are anatomically different (heart
side, lesion laterality), so a mirrored image is not a plausible patient.

Your own transforms (MONAI, torchio, any callable) plug in through :func:`apply_transform`: the training
engine (``vaedx.train(..., transform=...)``) and :class:`vaedx.data.torch_dataset.StoreDataset` call them
image by image on CPU tensors, a dictionary transform with ``{"image": ..., "mask": ...}``, a torchio
transform with a ``tio.Subject`` (see :func:`is_torchio_transform`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from vaedx.errors import ConfigError, VaedxError


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
    return warp(x, theta)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) resampled through the (N, 2, 3) affine maps ``theta`` (output grid to input,
    coordinates in [-1, 1]), bilinear, border pixels repeated outside the image."""
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


# ------------------------------------------------------------------------------------ your own transforms
Transform = Callable[[Any], Any]


def dict_transform(fn: Transform) -> Transform:
    """Mark a plain callable as taking ``{"image": ..., "mask": ...}`` rather than an image tensor."""
    fn.vaedx_dict = True  # type: ignore[attr-defined]
    return fn


def is_dict_transform(transform: Transform) -> bool:
    """True for MONAI dictionary transforms (a ``MapTransform``, or a ``Compose`` holding one) and for
    callables marked with :func:`dict_transform`.

    Why look rather than ask: MONAI users pass ``RandFlipd(keys=["image", "mask"])`` and expect it to see a
    dict, ``RandFlip()`` and expect it to see an image; MONAI is inspected only when already imported.
    """
    marked = getattr(transform, "vaedx_dict", None)
    if marked is not None:
        return bool(marked)
    monai = sys.modules.get("monai.transforms")
    if monai is None:
        return False
    parts = [transform, *getattr(transform, "transforms", ())]
    return any(isinstance(t, monai.MapTransform) for t in parts)


def is_torchio_transform(transform: Transform) -> bool:
    """True for a torchio transform (``tio.RandomFlip``, ``tio.Compose``...), inspected only when torchio is
    already imported. Why it matters: torchio takes 4-D (C, X, Y, Z) images only, so a 2-D image gets a
    depth axis of 1 and goes in as a ``tio.Subject`` whose mask (a ``LabelMap``) follows spatial transforms
    and is left alone by intensity ones."""
    tio = sys.modules.get("torchio")
    return tio is not None and isinstance(transform, tio.transforms.Transform)


def _torchio_apply(transform: Transform, item: dict[str, Any]) -> dict[str, Any]:
    tio = sys.modules["torchio"]  # imported by whoever built the transform; vaedx does not depend on it
    parts = {"image": tio.ScalarImage(tensor=torch.as_tensor(item["image"])[..., None])}
    if "mask" in item:
        parts["mask"] = tio.LabelMap(tensor=torch.as_tensor(item["mask"])[..., None])
    out = transform(tio.Subject(**parts))
    return {k: out[k].data[..., 0] for k in parts}


def seed_transform(transform: Transform | None, seed: int) -> None:
    """Re-seed a MONAI random transform (``set_random_state``), so a run repeats and resumes exactly;
    transforms drawing from torch's global RNG (torchio, plain torch code) follow the loop's own seeding."""
    setter = getattr(transform, "set_random_state", None)
    if callable(setter):
        setter(seed=seed % 2**32)


def _name(transform: Transform) -> str:
    return getattr(transform, "__name__", None) or type(transform).__name__


def _as_image(value: Any, shape: tuple[int, ...], transform: Transform) -> torch.Tensor:
    if hasattr(value, "as_tensor"):  # MONAI MetaTensor: drop the metadata, keep a plain tensor
        value = value.as_tensor()
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    if tuple(t.shape) != shape:
        raise ConfigError(
            f"transform {_name(transform)} turned an image of shape {shape} into {tuple(t.shape)}; "
            "the model takes one fixed shape, so use transforms that keep it (or resize in data prepare)"
        )
    return t.to(torch.float32)


def apply_one(transform: Transform, item: dict[str, Any], dict_input: bool | None = None) -> dict[str, Any]:
    """``item`` ({"image": (C, H, W)[, "mask": (1, H, W)], ...}) with the transform applied: the whole dict
    for a dictionary transform, the image alone otherwise. A transform's own exception becomes one line."""
    as_dict = is_dict_transform(transform) if dict_input is None else dict_input
    shape = tuple(item["image"].shape)
    try:
        if is_torchio_transform(transform):
            as_dict, out = True, _torchio_apply(transform, item)
        else:
            out = transform(dict(item)) if as_dict else transform(item["image"])
    except VaedxError:
        raise
    except Exception as e:  # noqa: BLE001 - third-party transforms raise anything
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"transform {_name(transform)} failed: {type(e).__name__}: {first}") from None
    if not as_dict:
        return {**item, "image": _as_image(out, shape, transform)}
    if not isinstance(out, dict) or "image" not in out:
        got = type(out).__name__
        raise ConfigError(f"dictionary transform {_name(transform)} returned {got}, not a dict with 'image'")
    result = {**item, **out, "image": _as_image(out["image"], shape, transform)}
    if "mask" in item and "mask" in out:
        result["mask"] = _as_image(out["mask"], tuple(item["mask"].shape), transform)
    return result


def apply_transform(
    transform: Transform | None, images: torch.Tensor, masks: torch.Tensor | None = None
) -> torch.Tensor:
    """A batch (N, C, H, W) with ``transform`` applied image by image (as MONAI and torchio expect: one
    channel-first image, or a dict with "image" and, when the store has masks, "mask")."""
    if transform is None or images.shape[0] == 0:
        return images
    as_dict = is_dict_transform(transform)
    out = []
    for i in range(images.shape[0]):
        item: dict[str, Any] = {"image": images[i]}
        if masks is not None:
            item["mask"] = masks[i]
        out.append(apply_one(transform, item, as_dict)["image"])
    return torch.stack(out).to(images.device)

"""Context-encoding patches for the ceVAE recipe of Zimmerer et al. (2019).

Zimmerer, Kohl, Petersen, Isensee, Maier-Hein: "Context-encoding Variational Autoencoder for Unsupervised
Anomaly Detection", MIDL 2019 (arXiv:1812.05941). Beside the usual ELBO on the image, the same VAE gets a
copy with a few rectangles blanked out and must give back the *clean* image (a context encoder, Pathak et
al. 2016). Why it helps: a plain VAE can pass anything through, a lesion included, if its decoder is good
enough; inpainting forces it to predict healthy tissue from the surroundings, so the reconstruction of a
lesion looks more like the healthy brain around it and the residual there grows.

The rectangles are placed inside the foreground (``vaedx.training.noise.foreground``, the head) and only
foreground pixels are masked: blanking background teaches nothing. Per image a target fraction of the
foreground is drawn uniformly in [min_cover, max_cover] and spread over up to ``patches`` rectangles
(aspect ratio between 1:2 and 2:1, centred on a random foreground pixel); each rectangle is no larger than
the coverage still missing, so the masked fraction never exceeds the target. Parts that fall outside the
head or on an earlier rectangle do not count, so smaller rectangles are added (at most ``8 * patches`` in
all) until 95 % of the target, and at least ``min_cover``, is masked. The paper's code (MIC-DKFZ/mood)
drew 0-3 squares of up to half the image side anywhere and filled each with one random value; here the
coverage is what the options set, and the filling is per-pixel uniform noise in the image's range or zeros.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from vaedx.models.base import ModelOutput
from vaedx.training.noise import foreground

Fill = Literal["noise", "zero"]
MAX_ASPECT = 2.0  # rectangles are between 1:2 and 2:1
TRIES_PER_PATCH = 8
CLOSE_ENOUGH = 0.95  # of the drawn coverage, before no more rectangles are added


def _uniform(generator: torch.Generator | None, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _one_mask(
    fg: torch.Tensor, patches: int, min_cover: float, max_cover: float, generator: torch.Generator | None
) -> torch.Tensor:
    """(H, W) bool mask inside the bool foreground ``fg`` (CPU), covering min..max_cover of it."""
    h_img, w_img = fg.shape
    mask = torch.zeros_like(fg)
    area = int(fg.sum())
    if area == 0:
        return mask
    target = _uniform(generator, min_cover, max_cover) * area
    wanted = int(torch.randint(1, patches + 1, (), generator=generator))
    ys, xs = torch.nonzero(fg, as_tuple=True)
    enough = max(min_cover * area, CLOSE_ENOUGH * target)
    covered, placed = 0, 0
    for _ in range(TRIES_PER_PATCH * patches):
        remaining = target - covered
        if placed >= wanted and covered >= enough:
            break
        share = remaining / max(wanted - placed, 1)
        aspect = math.exp(_uniform(generator, -math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
        h = min(h_img, math.floor(math.sqrt(share * aspect)))
        w = min(w_img, math.floor(share / max(h, 1)))
        if h < 1 or w < 1:  # less than a pixel of coverage left to place
            break
        k = int(torch.randint(len(ys), (), generator=generator))
        y0 = min(max(int(ys[k]) - h // 2, 0), h_img - h)
        x0 = min(max(int(xs[k]) - w // 2, 0), w_img - w)
        mask[y0 : y0 + h, x0 : x0 + w] = True
        mask &= fg
        covered, placed = int(mask.sum()), placed + 1
    return mask


def context_mask(
    x: torch.Tensor,
    patches: int = 3,
    min_cover: float = 0.1,
    max_cover: float = 0.3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(N, 1, H, W) bool on ``x``'s device: rectangles inside each image's foreground.

    The random numbers come from ``generator`` (CPU), so a seeded generator gives the same masks on CPU and
    CUDA. An image without foreground (e.g. blank) gets an empty mask.
    """
    fg = foreground(x).bool().cpu()
    masks = [_one_mask(f[0], patches, min_cover, max_cover, generator) for f in fg]
    return torch.stack(masks)[:, None].to(x.device)


def mask_patches(
    x: torch.Tensor,
    patches: int = 3,
    min_cover: float = 0.1,
    max_cover: float = 0.3,
    fill: Fill = "noise",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A copy of ``x`` (N, C, H, W) with context-encoding rectangles filled in every channel.

    ``noise``: each masked pixel uniform between that image's minimum and maximum; ``zero``: 0.
    """
    mask = context_mask(x, patches, min_cover, max_cover, generator)
    if fill == "zero":
        value = torch.zeros((), dtype=x.dtype, device=x.device)
    else:
        u = torch.rand(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
        lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
        value = lo + (hi - lo) * u
    return torch.where(mask, value, x)


# fields of ModelOutput that are not per image (a learned scale shared by the whole batch)
_SHARED_FIELDS = frozenset({"recon_logscale"})


def split_output(out: ModelOutput, n: int) -> tuple[ModelOutput, ModelOutput]:
    """The outputs for the first ``n`` images and for the rest of one forward pass over both batches.

    Why one forward pass for the image and its masked copy: under DistributedDataParallel one backward
    must follow one forward, and one batch of 2N is also faster than two of N.
    """
    head: dict[str, object] = {}
    tail: dict[str, object] = {}
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        if isinstance(v, torch.Tensor) and f.name not in _SHARED_FIELDS:
            head[f.name], tail[f.name] = v[:n], v[n:]
        else:
            head[f.name] = tail[f.name] = v
    return dataclasses.replace(out, **head), dataclasses.replace(out, **tail)

"""Coarse-noise corruption of training inputs: the denoising recipe of Kascenas et al. (MIDL 2022).

Kascenas, O'Neil, Pugeault: "Denoising autoencoders for unsupervised anomaly detection in brain MRI",
MIDL 2022. The network sees a healthy image plus smooth, blob-like noise and is trained to give back the
clean image. Why coarse rather than white noise: white noise is removed by any smoothing, so the network
learns little more than blurring; low-frequency noise looks like the intensity blobs that lesions are, so
the network has to learn what healthy tissue looks like in order to remove it, which is what makes a
tumour stand out in the residual afterwards.

As in the paper (and its code): N(0, std^2) is sampled on an r x r grid per image and channel, upsampled
bilinearly with aligned corners to the image size, and rolled by a random offset so the grid lines do not
fall on the same pixels every time (here one offset per image; the roll wraps, so the noise has a seam
where the two ends meet, as in the paper). ``std`` is the std of the grid values; between grid points the
interpolation averages them, so the per-pixel std is lower, about 0.67 std on average.

The noise is added only inside the foreground (head/brain). The paper's test is "channel sum > 0.01";
after vaedx's percentile normalisation the background of an LGG FLAIR slice sits at about 0.03, so that
test covers 92 % of the 971 LGG slices at 64 px. Here the foreground is where the channel mean is above
10 % of the image's own range, closed with a 5 x 5 window (fills small dark holes such as sulci): on the
same slices it covers 45 %, the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOREGROUND_FRACTION = 0.1  # of each image's intensity range
CLOSING = 5  # side of the square window that closes small holes in the foreground


def coarse_noise(
    shape: torch.Size | tuple[int, ...],
    resolution: int,
    std: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """An (N, C, H, W) float32 field: N(0, std^2) on a resolution x resolution grid, upsampled, rolled.

    The random numbers come from ``generator`` on its own device (CPU when None) and the small grid is
    moved to ``device``, so a seeded CPU generator gives the same noise on CPU and CUDA; the upsampling and
    the roll run on ``device``.
    """
    n, c, h, w = shape
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    grid = torch.randn(n, c, resolution, resolution, generator=generator, device=gen_dev) * std
    dy = torch.randint(h, (n,), generator=generator, device=gen_dev).to(device)
    dx = torch.randint(w, (n,), generator=generator, device=gen_dev).to(device)
    field = F.interpolate(grid.to(device), size=(h, w), mode="bilinear", align_corners=True)
    rows = (torch.arange(h, device=device)[None] - dy[:, None]) % h  # torch.roll, one shift per image
    cols = (torch.arange(w, device=device)[None] - dx[:, None]) % w
    field = field.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return field.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def foreground(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float 0/1 mask: channel mean above FOREGROUND_FRACTION of each image's range, closed.

    A constant (e.g. blank) image has no foreground, so it is left uncorrupted.
    """
    m = x.float().mean(1, keepdim=True)
    lo, hi = m.amin((2, 3), keepdim=True), m.amax((2, 3), keepdim=True)
    fg = ((m - lo) > FOREGROUND_FRACTION * (hi - lo)) & (hi > lo)
    pad = CLOSING // 2
    dilated = F.max_pool2d(fg.float(), CLOSING, stride=1, padding=pad)
    return -F.max_pool2d(-dilated, CLOSING, stride=1, padding=pad)


def add_coarse_noise(
    x: torch.Tensor, resolution: int, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` (N, C, H, W) plus coarse noise inside each image's foreground; ``x`` is not changed.

    The training input of the denoising recipe; the loss still compares the reconstruction with ``x``.
    """
    noise = coarse_noise(x.shape, resolution, std, generator, x.device)
    return x + (noise * foreground(x)).to(x.dtype)

"""Context-encoding patches: coverage, staying inside the head of real LGG slices, filling, seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.models import ConvVAE, ModelConfig
from vaedx.training.context import context_mask, mask_patches, split_output
from vaedx.training.noise import foreground

SIZE = 64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def lgg_slices(lgg_dir: Path) -> torch.Tensor:
    """Every slice of one real FLAIR volume that has a head in it, prepared as `vaedx data prepare` does."""
    vol, _ = read_lgg_patient(sorted(p for p in lgg_dir.iterdir() if p.name.startswith("TCGA"))[0])
    cfg = PreprocessConfig(size=(SIZE, SIZE))
    x = torch.from_numpy(np.stack([apply(vol.data[z], cfg)[0] for z in range(len(vol.data))]))
    return x[foreground(x).flatten(1).sum(1) >= 50]  # the first and last slices are nearly empty


@pytest.mark.parametrize(("lo", "hi", "patches"), [(0.1, 0.3, 3), (0.2, 0.2, 1), (0.05, 0.5, 5)])
def test_masks_cover_the_asked_fraction_of_the_head_and_stay_inside_it(lgg_slices, lo, hi, patches):
    mask = context_mask(lgg_slices, patches, lo, hi, _gen())
    fg = foreground(lgg_slices).bool()
    assert mask.shape == fg.shape and mask.dtype == torch.bool
    assert not (mask & ~fg).any()  # nothing outside the head is masked
    cover = (mask.flatten(1).sum(1) / fg.flatten(1).sum(1)).numpy()
    assert len(cover) > 20
    # the bound can be missed only by less than one pixel's worth on the smallest heads
    assert cover.min() >= lo * 0.9 and cover.max() <= hi + 1e-6, (cover.min(), cover.max())
    assert cover.mean() >= 0.8 * (lo + hi) / 2  # rectangles clipped by the head are made up for
    if hi > lo:
        assert cover.std() > 0.02  # the target is drawn per image, not fixed


def test_seeded_masks_repeat_and_seeds_differ(lgg_slices):
    x = lgg_slices[:8]
    assert torch.equal(context_mask(x, generator=_gen(3)), context_mask(x, generator=_gen(3)))
    assert not torch.equal(context_mask(x, generator=_gen(3)), context_mask(x, generator=_gen(4)))
    a, b = mask_patches(x, generator=_gen(3)), mask_patches(x, generator=_gen(3))
    assert torch.equal(a, b)


def test_zero_fill_blanks_the_mask_in_every_channel_and_nothing_else(lgg_slices):
    x = torch.cat([lgg_slices[:6], 0.5 * lgg_slices[:6]], 1)  # two channels
    mask = context_mask(x, generator=_gen(1))
    y = mask_patches(x, fill="zero", generator=_gen(1))
    assert x.shape == y.shape
    assert torch.equal(y[~mask.expand_as(x)], x[~mask.expand_as(x)])
    assert (y[mask.expand_as(x)] == 0).all()
    assert mask.any()


def test_noise_fill_is_uniform_in_each_images_range(lgg_slices):
    x = lgg_slices[:6]
    mask = context_mask(x, generator=_gen(2))[:, 0]
    y = mask_patches(x, fill="noise", generator=_gen(2))
    for xi, yi, mi in zip(x, y, mask, strict=True):
        inside = yi[0][mi]
        assert inside.min() >= xi.min() and inside.max() <= xi.max()
        assert inside.std() > 0.2 * (xi.max() - xi.min())  # uniform noise, not one value per patch
        assert torch.equal(yi[0][~mi], xi[0][~mi])


def test_a_blank_image_is_left_unchanged():
    x = torch.full((2, 1, 16, 16), 0.3)
    assert not context_mask(x, generator=_gen()).any()
    assert torch.equal(mask_patches(x, generator=_gen()), x)


def test_one_forward_pass_of_both_batches_splits_into_the_two_outputs():
    torch.manual_seed(0)
    m = ConvVAE(ModelConfig(in_channels=1, image_size=16, widths=[8, 16], latent_dim=4)).eval()
    a, b = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    head, tail = split_output(m(torch.cat([a, b])), 3)
    for part, x in ((head, a), (tail, b)):
        alone = m(x)
        assert torch.allclose(part.x_hat, alone.x_hat, atol=1e-6)
        assert torch.allclose(part.mu, alone.mu, atol=1e-6)
        assert part.logvar is not None and part.logvar.shape == (3, 4)

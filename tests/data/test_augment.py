"""Random affine augmentation: identity when switched off, exact mirror/shift geometry, seeded repeats."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from vaedx.data.augment import AugmentConfig, as_augment, random_affine


def _impulses(n: int = 6, size: int = 20) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[:, 0, 10, 4] = 1.0  # off-centre, so a mirror moves it
    return x


def test_no_augmentation_returns_the_input_unchanged():
    x = torch.rand(3, 2, 9, 11)
    off = AugmentConfig(rotate_deg=0, scale=0, translate=0)
    assert random_affine(x, off) is x
    assert as_augment(False) is None and as_augment(None) is None and as_augment(off.model_dump()) is None
    assert as_augment(True) == AugmentConfig()


def test_hflip_only_mirrors_exactly_about_half_the_images():
    x = _impulses(64)
    g = torch.Generator().manual_seed(0)
    y = random_affine(x, AugmentConfig(rotate_deg=0, scale=0, translate=0, hflip=True), g)
    mirrored = torch.tensor([torch.allclose(a, b.flip(-1), atol=1e-6) for a, b in zip(y, x, strict=True)])
    same = torch.tensor([torch.allclose(a, b, atol=1e-6) for a, b in zip(y, x, strict=True)])
    assert bool((mirrored | same).all())  # every image is either untouched or an exact mirror
    assert 16 < int(mirrored.sum()) < 48


def test_translation_moves_content_by_at_most_the_range_and_keeps_shape():
    x = _impulses(32)
    g = torch.Generator().manual_seed(1)
    y = random_affine(x, AugmentConfig(rotate_deg=0, scale=0, translate=0.1), g)
    assert y.shape == x.shape and y.dtype == x.dtype
    h, w = x.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")  # fmt: skip
    mass = y.sum((1, 2, 3))
    cy = (y[:, 0] * yy).sum((1, 2)) / mass
    cx = (y[:, 0] * xx).sum((1, 2)) / mass
    assert float((cy - 10).abs().max()) <= 0.1 * h + 1e-4 and float((cx - 4).abs().max()) <= 0.1 * w + 1e-4
    assert float((cy - 10).abs().max()) > 0.3  # it did move
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-4)  # bilinear shifts keep the total


def test_seeded_generator_repeats_and_differs_between_seeds():
    x = torch.rand(4, 1, 16, 16)
    cfg = AugmentConfig(rotate_deg=20, scale=0.2, translate=0.1)
    a = random_affine(x, cfg, torch.Generator().manual_seed(5))
    b = random_affine(x, cfg, torch.Generator().manual_seed(5))
    c = random_affine(x, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValidationError, match="rotate"):
        as_augment({"rotate": 5})
    with pytest.raises(ValidationError, match="scale"):
        AugmentConfig(scale=1.5)


def test_a_torchio_transform_flips_image_and_mask_together_and_noise_leaves_the_mask():
    """torchio wants (C, X, Y, Z): 2-D images go in with a depth axis of 1 and come back (C, H, W); the mask
    is a LabelMap, so a flip moves it with the image and intensity noise does not touch it."""
    import torchio as tio

    from vaedx.data.augment import apply_one

    image = torch.arange(16.0).reshape(1, 4, 4)
    mask = (image > 10).float()
    flipped = apply_one(tio.RandomFlip(axes=(1,), flip_probability=1.0), {"image": image, "mask": mask})
    assert torch.equal(flipped["image"], image.flip(-1)) and torch.equal(flipped["mask"], mask.flip(-1))
    noisy = apply_one(tio.RandomNoise(std=(0.5, 0.5)), {"image": image, "mask": mask})
    assert noisy["image"].shape == (1, 4, 4) and not torch.equal(noisy["image"], image)
    assert torch.equal(noisy["mask"], mask)
    alone = apply_one(tio.RandomFlip(axes=(0,), flip_probability=1.0), {"image": image})
    assert torch.equal(alone["image"], image.flip(-2)) and set(alone) == {"image"}

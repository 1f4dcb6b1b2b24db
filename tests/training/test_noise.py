"""Coarse-noise corruption: statistics, low frequency, and staying inside the head of real LGG slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.training.noise import add_coarse_noise, coarse_noise, foreground

SIZE = 64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _neighbour_correlation(field: torch.Tensor) -> float:
    a, b = field[..., :, :-1].flatten(), field[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def _interpolated_std(resolution: int, size: int, std: float) -> float:
    """RMS per-pixel std that bilinear upsampling of i.i.d. N(0, std^2) grid values gives."""
    weights = F.interpolate(torch.eye(resolution)[None], size=size, mode="linear", align_corners=True)[0]
    per_axis = (weights**2).sum(0)  # variance factor of each pixel along one axis
    return std * float(per_axis.mean())  # mean over pixels of v(y) v(x), square-rooted


@pytest.fixture(scope="module")
def lgg_slices(lgg_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    """Tumour slices of one real FLAIR volume, normalised and resized the way `vaedx data prepare` does."""
    vol, mask = read_lgg_patient(sorted(p for p in lgg_dir.iterdir() if p.name.startswith("TCGA"))[0])
    cfg = PreprocessConfig(size=(SIZE, SIZE))
    images, masks = [], []
    for z in np.flatnonzero(mask.reshape(len(mask), -1).any(1)):
        img, m = apply(vol.data[z], cfg, mask[z])
        images.append(img)
        masks.append(m)
    return torch.from_numpy(np.stack(images)), np.stack(masks).astype(bool)


def test_grid_values_have_the_asked_std_and_zero_mean() -> None:
    # with one grid point per pixel the upsampling is the identity: the field is the grid itself
    white = coarse_noise((32, 2, SIZE, SIZE), SIZE, 0.2, _gen())
    assert abs(float(white.mean())) < 0.003
    assert float(white.std()) == pytest.approx(0.2, rel=0.01)


def test_coarse_field_statistics_follow_from_the_grid() -> None:
    field = coarse_noise((256, 1, SIZE, SIZE), 16, 0.2, _gen())
    assert field.shape == (256, 1, SIZE, SIZE) and field.dtype == torch.float32
    assert abs(float(field.mean())) < 0.01
    expected = _interpolated_std(16, SIZE, 0.2)
    assert expected == pytest.approx(0.2 * 2 / 3, rel=0.05)  # the docstring's "about 0.67 std"
    assert float(field.pow(2).mean().sqrt()) == pytest.approx(expected, rel=0.03)
    doubled = coarse_noise((256, 1, SIZE, SIZE), 16, 0.4, _gen())
    assert torch.allclose(doubled, 2 * field)  # std scales the field and nothing else


def test_coarse_noise_is_low_frequency_unlike_white_noise() -> None:
    coarse = coarse_noise((64, 1, SIZE, SIZE), 16, 0.2, _gen())
    white = coarse_noise((64, 1, SIZE, SIZE), SIZE, 0.2, _gen())
    assert _neighbour_correlation(coarse) > 0.9
    assert abs(_neighbour_correlation(white)) < 0.05



def test_the_grid_is_not_aligned_the_same_way_each_time() -> None:
    """Unrolled, the variance would peak on grid points (4x the cell centres') at fixed pixels."""
    var = coarse_noise((512, 1, SIZE, SIZE), 16, 0.2, _gen()).var(dim=(0, 1))  # per pixel, over images
    assert float(var.std() / var.mean()) < 0.15  # 512 images: about 0.07 from sampling alone


def test_seeded_noise_repeats() -> None:
    shape = (4, 1, SIZE, SIZE)
    assert torch.equal(coarse_noise(shape, 16, 0.2, _gen(3)), coarse_noise(shape, 16, 0.2, _gen(3)))
    assert not torch.equal(coarse_noise(shape, 16, 0.2, _gen(3)), coarse_noise(shape, 16, 0.2, _gen(4)))


def test_noise_is_added_inside_the_head_only(lgg_slices: tuple[torch.Tensor, np.ndarray]) -> None:
    x, tumour = lgg_slices
    before = x.clone()
    y = add_coarse_noise(x, 16, 0.2, _gen())
    assert torch.equal(x, before)  # the clean image is kept for the loss
    noise = (y - x)[:, 0].numpy()
    fg = foreground(x)[:, 0].numpy().astype(bool)
    assert set(np.unique(foreground(x).numpy())) <= {0.0, 1.0}
    assert np.all(noise[~fg] == 0)
    assert np.mean(noise[fg] != 0) > 0.99
    assert 0.2 < fg.mean() < 0.8  # the head, not the whole frame
    assert not fg[:, :4, :4].any() and not fg[:, -4:, -4:].any()  # the corners are air
    assert fg[tumour].mean() > 0.99  # the lesion is inside the brain, so it is corrupted too
    # the normalised background is not exactly 0: a fixed 0.01 test (the paper's) would cover most of it
    assert float((x > 0.01).float().mean()) > fg.mean() + 0.2


def test_a_blank_image_is_left_unchanged() -> None:
    x = torch.zeros(2, 1, 16, 16)
    assert torch.equal(add_coarse_noise(x, 4, 0.2, _gen()), x)


@pytest.mark.cuda
def test_the_same_noise_on_cuda(lgg_slices: tuple[torch.Tensor, np.ndarray]) -> None:
    x = lgg_slices[0]
    cpu = add_coarse_noise(x, 16, 0.2, _gen())
    cuda = add_coarse_noise(x.cuda(), 16, 0.2, _gen())
    assert cuda.device.type == "cuda"
    assert torch.allclose(cuda.cpu(), cpu, atol=1e-6)

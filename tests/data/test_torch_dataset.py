"""StoreDataset and the transform hook on real LGG slices with masks (laid out as MVTec-AD, prepared):
MONAI dictionary transforms move image and mask together, array transforms the image; misuse is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.transforms import Compose, RandFlip, RandFlipd, Resize
from torch.utils.data import DataLoader

from byo_data import lay_out_mvtec
from vaedx.cli import main
from vaedx.data.augment import apply_transform, is_dict_transform
from vaedx.data.torch_dataset import StoreDataset
from vaedx.errors import ConfigError

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def store(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lgg")
    lay_out_mvtec(lgg_dir, root / "brain")
    args = [
        "data",
        "prepare",
        str(root / "brain"),
        "--out",
        str(root / "s"),
        "--size",
        "32",
        "--channels",
        "1",
    ]
    assert main(args) == 0
    return root / "s"


def test_items_and_a_dataloader(store: Path) -> None:
    ds = StoreDataset(store, split="test")
    assert len(ds) == 9
    item = ds[0]
    assert item["image"].shape == (1, 32, 32) and item["mask"].shape == (1, 32, 32)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["label"].dtype == torch.int64


def test_dict_transform_flips_image_and_mask_together(store: Path) -> None:
    flip = RandFlipd(keys=["image", "mask"], prob=1.0, spatial_axis=1)
    assert is_dict_transform(flip) and is_dict_transform(Compose([flip]))
    plain, flipped = StoreDataset(store, split="test"), StoreDataset(store, split="test", transform=flip)
    tumour = [i for i in range(len(plain)) if plain[i]["mask"].sum() > 0]
    assert tumour
    for i in tumour:
        torch.testing.assert_close(flipped[i]["image"], plain[i]["image"].flip(-1))
        torch.testing.assert_close(flipped[i]["mask"], plain[i]["mask"].flip(-1))
        assert type(flipped[i]["image"]) is torch.Tensor  # MONAI's MetaTensor is unwrapped


def test_array_transform_on_a_batch(store: Path) -> None:
    ds = StoreDataset(store)
    x = torch.stack([ds[i]["image"] for i in range(4)])
    out = apply_transform(RandFlip(prob=1.0, spatial_axis=0), x)
    torch.testing.assert_close(out, x.flip(-2))


def test_shape_changes_and_failing_transforms_are_one_line(store: Path) -> None:
    ds = StoreDataset(store, transform=Resize((16, 16)))
    with pytest.raises(ConfigError, match=r"turned an image of shape \(1, 32, 32\) into \(1, 16, 16\)"):
        ds[0]
    x = torch.zeros(2, 1, 32, 32)
    with pytest.raises(ConfigError, match="transform RandFlipd failed: KeyError"):
        apply_transform(RandFlipd(keys=["image", "mask"], prob=1.0), x)  # no masks given

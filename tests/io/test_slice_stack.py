"""LGG patient folders as volumes, on the real LGG slices (``data_dir`` fails, not skips, under CI)."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_lgg_patient, read_mask, read_raster, stack_slices
from vaedx.io.slice_stack import slice_number

CASE = "TCGA_CS_4941_19960909"


@pytest.fixture(scope="module")
def case_dir(lgg_dir: Path) -> Path:
    return lgg_dir / CASE


@pytest.fixture(scope="module")
def manifest(lgg_dir: Path) -> list[dict[str, str]]:
    with (lgg_dir / "manifest.csv").open(newline="") as f:
        return [row for row in csv.DictReader(f) if row["case_folder"] == CASE]


def _one_line(e: pytest.ExceptionInfo, name: str) -> str:
    text = str(e.value)
    assert "\n" not in text and name in text, text
    return text


def test_patient_is_one_flair_volume_with_its_mask(case_dir: Path, manifest: list[dict[str, str]]) -> None:
    vol, mask = read_lgg_patient(case_dir)
    n = len(manifest)
    assert vol.shape == (n, 256, 256) and mask.shape == vol.shape and mask.dtype == np.uint8
    assert vol.meta["spacing_assumed"] is True and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.orientation is None and vol.meta["sequence"] == "flair" and vol.meta["modality"] == "MR"
    assert vol.meta["tumour_slices"] == sum(int(r["tumour"]) for r in manifest)
    for row in manifest:  # z = slice number - 1, FLAIR is channel 1, masks line up slice by slice
        k = int(row["slice"]) - 1
        assert mask[k].sum() == int(row["mask_pixels"])
        image = read_raster(case_dir.parent / row["image"])
        assert np.array_equal(vol.data[k], image.array[1])


def test_sequence_picks_the_channel(case_dir: Path) -> None:
    pre, _ = read_lgg_patient(case_dir, sequence="pre-contrast")
    flair, _ = read_lgg_patient(case_dir)
    assert pre.shape == flair.shape and not np.array_equal(pre.data, flair.data)
    with pytest.raises(ConfigError, match="unknown LGG sequence"):
        read_lgg_patient(case_dir, sequence="t2")  # type: ignore[arg-type]


def test_stack_slices_orders_by_number_not_by_name(case_dir: Path) -> None:
    images = [p for p in case_dir.glob("*.png") if not p.stem.endswith("_mask")]
    random.Random(0).shuffle(images)
    vol = stack_slices(images, channel=1)
    assert vol.meta["first_slice_number"] == 1 and vol.meta["spacing_assumed"] is True
    tenth = read_raster(case_dir / f"{CASE}_10.png").array[1]
    assert np.array_equal(vol.data[9], tenth)  # "10" sorts before "2" as text
    masks = stack_slices([p for p in case_dir.glob("*_mask.png")])
    assert masks.shape == vol.shape
    assert np.array_equal(masks.data[9] > 0, read_mask(case_dir / f"{CASE}_10_mask.png") > 0)


def test_missing_slice_is_a_gap(case_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(case_dir, tmp_path / CASE))
    (folder / f"{CASE}_5.png").unlink()
    (folder / f"{CASE}_5_mask.png").unlink()
    with pytest.raises(InputError) as e:
        read_lgg_patient(folder)
    assert "gap in slice numbers: 4 is followed by 6" in _one_line(e, f"{CASE}_6.png")


def test_missing_mask_names_the_slice(case_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(case_dir, tmp_path / CASE))
    (folder / f"{CASE}_7_mask.png").unlink()
    with pytest.raises(InputError) as e:
        read_lgg_patient(folder)
    assert "no mask" in _one_line(e, f"{CASE}_7.png")


def test_mixed_sizes_name_the_file(case_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(case_dir, tmp_path / CASE))
    with PILImage.open(folder / f"{CASE}_3.png") as im:
        im.crop((0, 0, 200, 256)).save(folder / f"{CASE}_3.png")
    with pytest.raises(InputError) as e:
        read_lgg_patient(folder)
    assert "differs" in _one_line(e, f"{CASE}_3.png")


def test_names_without_numbers_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no slice number"):
        slice_number(tmp_path / "brain.png")
    assert slice_number("case_12_mask.png") == 12
    with pytest.raises(InputError, match="no numbered slice images"):
        read_lgg_patient(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_lgg_patient(tmp_path / "absent")

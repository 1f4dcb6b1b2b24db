"""Which inputs are volumes, on real files: nibabel's NIfTI, pydicom's CT series, LGG case folders."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import pydicom
import pytest

from vaedx.errors import InputError
from vaedx.io.volume_source import read_volume, volume_id, volume_kind

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
MR1 = TEST_FILES / "dicomdirtests" / "98892003" / "MR1"  # three one-image series: not a volume


def _case(lgg_dir: Path) -> Path:
    return next(p for p in sorted(lgg_dir.iterdir()) if p.is_dir() and p.name.startswith("TCGA"))


def test_kinds(lgg_dir: Path, tmp_path: Path) -> None:
    assert volume_kind(NIB_DATA / "anatomical.nii") == "nifti"
    assert volume_kind(CT5N) == "dicom-series"
    assert volume_kind(_case(lgg_dir)) == "slice-stack"
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in CT5N.iterdir():
            z.write(f, f"scan/{f.name}")
    assert volume_kind(archive) == "dicom-series"
    for not_volume in (TEST_FILES / "CT_small.dcm", MR1, next(_case(lgg_dir).glob("*_1.png")), lgg_dir):
        assert volume_kind(not_volume) is None, not_volume


def test_read_volume_and_names(lgg_dir: Path, tmp_path: Path) -> None:
    assert read_volume(CT5N).shape == (5, 16, 16)
    vol = read_volume(_case(lgg_dir), channel=1)
    assert vol.meta["spacing_assumed"] and vol.meta["channel"] == 1
    gz = tmp_path / "anat.nii.gz"
    shutil.copy(NIB_DATA / "anatomical.nii", tmp_path / "anat.nii")
    nib.save(nib.load(tmp_path / "anat.nii"), gz)
    assert volume_id(gz) == "anat" and volume_id(CT5N) == "CT5N" and volume_id(tmp_path / "ct.zip") == "ct"
    with pytest.raises(InputError, match="not a volume"):
        read_volume(TEST_FILES / "CT_small.dcm")

"""is_dicom_series on pydicom's real files: one series under a folder, at any depth, is one series; a
second series anywhere under it, or a single image, is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom

from vaedx.io import read_dicom_series
from vaedx.io.series_folder import is_dicom_series, series_uid

DIRTESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
CT5N = DIRTESTS / "98892001" / "CT5N"  # one axial CT series of 5 slices
MR1 = DIRTESTS / "98892003" / "MR1"  # three one-image series
CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def _copy(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)


def test_one_series_beside_files_that_are_not_images(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(CT5N, folder)
    (folder / "README").write_text("exported by the scanner\n")
    shutil.copy(DIRTESTS / "DICOMDIR", folder / "DICOMDIR")  # DICOM, but no image: does not count
    assert series_uid(folder / "README") is None and series_uid(folder / "DICOMDIR") is None
    assert is_dicom_series(folder)


def test_sub_folders_count_as_the_series_reader_reads_them(tmp_path: Path) -> None:
    files = sorted(CT5N.iterdir())
    _copy(files[:3], tmp_path / "ct")
    _copy(files[3:], tmp_path / "ct" / "more")
    assert is_dicom_series(tmp_path / "ct") and is_dicom_series(tmp_path)
    assert read_dicom_series(tmp_path / "ct").shape == read_dicom_series(CT5N).shape == (5, 16, 16)


def test_a_second_series_under_it_or_a_single_image_is_not_one_series(tmp_path: Path) -> None:
    assert not is_dicom_series(MR1)
    shutil.copytree(CT5N, tmp_path / "ct")
    _copy([CT_SMALL], tmp_path / "ct" / "scout")
    assert not is_dicom_series(tmp_path / "ct")
    _copy([CT_SMALL], tmp_path / "one")
    assert not is_dicom_series(tmp_path / "one")


def test_files_walked_by_the_caller_are_the_ones_judged(tmp_path: Path) -> None:
    shutil.copytree(CT5N, tmp_path / "ct")
    _copy([CT_SMALL], tmp_path / "ct" / "scout")
    files = sorted(f for f in (tmp_path / "ct").rglob("*") if f.is_file())
    assert not is_dicom_series(tmp_path / "ct", files)
    assert is_dicom_series(tmp_path / "ct", [f for f in files if f.parent.name != "scout"])

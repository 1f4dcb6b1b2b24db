"""DICOM series as volumes, on the real CT/MR/RT-dose files bundled with pydicom (no downloads).

Broken series are made by copying real files and editing one thing in them, so each refusal is tested on
otherwise genuine data.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless, generate_uid

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_dicom_series

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DIRTESTS = TEST_FILES / "dicomdirtests"
CT5N = DIRTESTS / "98892001" / "CT5N"  # 5 axial CT slices, 2.5 mm apart, InstanceNumber runs head to foot
CT2 = DIRTESTS / "77654033" / "CT2"  # 4 slices: one 202 mm away from three 1.25 mm apart
MR1 = DIRTESTS / "98892003" / "MR1"  # 3 one-image localizer series
MR2 = DIRTESTS / "98892003" / "MR2"  # tri-planar pilot: one series, three orientations
MR700 = DIRTESTS / "98892003" / "MR700"  # radial angio projections: every slice rotated
PHI_VALUES = ("Doe^Jane", "PID-12345", "19700101", "Saint Elsewhere")


@pytest.fixture(scope="module", autouse=True)
def _bundled_files() -> None:
    if not CT5N.is_dir():
        pytest.fail(f"pydicom's bundled test files are missing ({TEST_FILES})")


def _one_line(e: pytest.ExceptionInfo, name: str) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    assert name in text, text
    return text


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, **changes: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def _files_by_z(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))


def test_ct_series_ordered_by_position_with_hu_and_geometry() -> None:
    vol = read_dicom_series(CT5N)
    assert vol.shape == (5, 16, 16) and vol.data.dtype == np.float32
    assert vol.spacing == pytest.approx((2.5, 0.488281, 0.488281))
    assert vol.orientation == "LPS" and vol.meta["slice_order"] == "position"
    for k, f in enumerate(_files_by_z(CT5N)):  # k grows with z: position order, not InstanceNumber
        ds = pydicom.dcmread(f)
        assert np.array_equal(vol.data[k], apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        assert vol.affine @ np.array([0, 0, k, 1.0]) == pytest.approx(
            [-x, -y, z, 1.0], abs=1e-4
        )  # LPS -> RAS
    assert vol.data.min() < -500  # HU: air/lung is negative after RescaleIntercept


def test_file_names_do_not_decide_the_order(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for n, f in enumerate(_files_by_z(CT5N)):
        shutil.copy(f, renamed / f"img{9 - n:02d}.dcm")  # names now sort head to foot
    (renamed / "README.txt").write_text("not DICOM; must be skipped\n")
    a, b = read_dicom_series(CT5N), read_dicom_series(renamed)
    assert np.array_equal(a.data, b.data) and np.allclose(a.affine, b.affine)


def test_instance_number_is_the_fallback_without_positions(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "nopos")
    for f in folder.iterdir():
        _edit(f, ImagePositionPatient=None)
    vol = read_dicom_series(folder)
    assert vol.meta["slice_order"] == "instance_number" and vol.meta["spacing_assumed"] is True
    assert np.array_equal(vol.data, read_dicom_series(CT5N).data[::-1])  # InstanceNumber runs downwards
    assert vol.spacing[0] == pytest.approx(2.5)  # from SliceThickness


def test_zip_of_the_series_reads_the_same(tmp_path: Path) -> None:
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in CT5N.iterdir():
            z.write(f, f"scan/{f.name}")
    vol = read_dicom_series(archive)
    assert np.array_equal(vol.data, read_dicom_series(CT5N).data)
    assert vol.meta["source"] == "series.zip"


def test_errors_inside_a_zip_name_the_member(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "s")
    victim = _files_by_z(folder)[2]
    _edit(victim, Rows=17)
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    with pytest.raises(InputError) as e:
        read_dicom_series(archive)
    assert "size 17x16" in _one_line(e, f"series.zip:{victim.name}")


def test_several_series_are_listed_in_one_line() -> None:
    with pytest.raises(InputError) as e:
        read_dicom_series(MR1)
    text = _one_line(e, str(MR1))
    uids = sorted({str(pydicom.dcmread(f).SeriesInstanceUID) for f in MR1.iterdir()})
    assert "3 series" in text and all(uid in text for uid in uids)
    vol = read_dicom_series(MR1, series_uid=uids[0])
    assert vol.shape == (1, 16, 16) and vol.meta["modality"] == "MR"
    with pytest.raises(ConfigError, match="not in"):
        read_dicom_series(MR1, series_uid="1.2.3")


def test_real_gap_in_slice_spacing_names_the_file() -> None:
    with pytest.raises(InputError) as e:
        read_dicom_series(CT2)
    assert "gap in slice spacing" in _one_line(e, "17136")  # the first slice after the 202 mm jump


def test_dropped_slice_is_a_gap(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "gap")
    files = _files_by_z(folder)
    files[2].unlink()
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "gap" in _one_line(e, files[3].name)


def test_changed_rows_is_mixed_sizes(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "sizes")
    victim = _files_by_z(folder)[3]
    _edit(victim, Rows=17)
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "size 17x16 differs" in _one_line(e, victim.name)


def test_changed_orientation_is_refused(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "tilted")
    victim = _files_by_z(folder)[1]
    _edit(victim, ImageOrientationPatient=[1, 0, 0, 0, 0.8660254, -0.5])
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "orientation" in _one_line(e, victim.name)


@pytest.mark.parametrize("folder", [MR700, MR2])
def test_real_mixed_orientations_are_refused(folder: Path) -> None:
    uid = str(pydicom.dcmread(sorted(folder.iterdir())[1]).SeriesInstanceUID)
    kw = {"series_uid": uid} if folder == MR2 else {}
    with pytest.raises(InputError) as e:
        read_dicom_series(folder, **kw)
    assert "orientation" in _one_line(e, str(folder))


def test_missing_pixel_data_names_the_file(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "nopix")
    victim = _files_by_z(folder)[0]
    _edit(victim, PixelData=None)
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "no pixel data" in _one_line(e, victim.name)


def test_index_files_without_images_are_not_a_series() -> None:
    with pytest.raises(InputError) as e:  # DICOMDIR plus image records without pixel module
        read_dicom_series(DIRTESTS / "TINY_ALPHA")
    assert "no DICOM images" in _one_line(e, "TINY_ALPHA")


def test_not_a_folder_or_zip(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder or a .zip"):
        read_dicom_series(TEST_FILES / "CT_small.dcm")
    with pytest.raises(InputError, match="not found"):
        read_dicom_series(tmp_path / "missing")


def test_multiframe_rt_dose_uses_grid_frame_offsets(tmp_path: Path) -> None:
    folder = tmp_path / "dose"
    folder.mkdir()
    shutil.copy(TEST_FILES / "rtdose.dcm", folder)
    ds = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    vol = read_dicom_series(folder)
    assert vol.shape == (15, 10, 10) and vol.meta["n_files"] == 1
    offsets = np.asarray(ds.GridFrameOffsetVector, float)
    assert vol.spacing[0] == pytest.approx(float(np.diff(offsets).mean()))
    assert np.allclose(vol.data, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)  # Gy


def _enhanced_from(folder: Path, out: Path) -> Path:
    """One multi-frame file holding the series' slices, with geometry and rescale in functional groups
    (the enhanced CT/MR layout), frames deliberately in reverse order."""
    files = _files_by_z(folder)[::-1]
    slices = [pydicom.dcmread(f) for f in files]
    ds = copy.deepcopy(slices[0])
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope"):
        delattr(ds, keyword)
    delattr(ds, "RescaleIntercept")
    ds.NumberOfFrames = len(slices)
    ds.PixelData = b"".join(s.PixelData for s in slices)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = slices[0].ImageOrientationPatient
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = slices[0].PixelSpacing
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for s in slices:
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = s.ImagePositionPatient
        item.PixelValueTransformationSequence = Sequence([Dataset()])
        item.PixelValueTransformationSequence[0].RescaleSlope = s.RescaleSlope
        item.PixelValueTransformationSequence[0].RescaleIntercept = s.RescaleIntercept
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SOPInstanceUID = generate_uid()
    out.mkdir()
    ds.save_as(out / "enhanced.dcm")
    return out


def test_enhanced_multiframe_matches_the_single_frame_series(tmp_path: Path) -> None:
    single = read_dicom_series(CT5N)
    multi = read_dicom_series(_enhanced_from(CT5N, tmp_path / "enh"))
    assert multi.meta["n_files"] == 1 and multi.meta["n_slices"] == 5
    assert np.array_equal(multi.data, single.data)
    assert np.allclose(multi.affine, single.affine)


def test_rle_compressed_series_matches(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "rle")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f)
    vol = read_dicom_series(folder)
    assert vol.meta["transfer_syntax"] == "RLE Lossless"
    assert np.array_equal(vol.data, read_dicom_series(CT5N).data)


@pytest.mark.parametrize(
    ("name", "plugin"),
    [
        ("MR_small_RLE.dcm", None),
        ("MR_small_jp2klossless.dcm", "openjpeg"),
        ("MR_small_jpeg_ls_lossless.dcm", "libjpeg"),
    ],
)
def test_compressed_mr_matches_uncompressed(name: str, plugin: str | None, tmp_path: Path) -> None:
    if plugin is not None and importlib.util.find_spec(plugin) is None:
        pytest.skip(f"the {plugin} pixel-data plugin is not installed (pip install 'vaedx[dicom]')")
    for sub, src in (("plain", "MR_small.dcm"), ("packed", name)):
        (tmp_path / sub).mkdir()
        shutil.copy(TEST_FILES / src, tmp_path / sub)
    plain, packed = read_dicom_series(tmp_path / "plain"), read_dicom_series(tmp_path / "packed")
    assert packed.shape == (1, 64, 64)
    assert np.array_equal(plain.data, packed.data) and np.allclose(plain.affine, packed.affine)


def test_voi_only_when_asked(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "voi")
    for f in folder.iterdir():
        _edit(f, WindowCenter=40, WindowWidth=80)
    raw, shown = read_dicom_series(folder), read_dicom_series(folder, voi=True)
    assert raw.meta["voi_applied"] is False and shown.meta["voi_applied"] is True
    assert raw.data.min() < -500
    # the window 0..80 HU is stretched over the output range: everything outside it is clipped flat
    assert (shown.data[raw.data <= 0] == shown.data.min()).all()
    assert (shown.data[raw.data >= 80] == shown.data.max()).all()
    inside = (raw.data > 1) & (raw.data < 79)
    assert inside.any() and np.all(np.diff(shown.data[inside][np.argsort(raw.data[inside])]) >= 0)


def test_metadata_has_no_patient_identifiers(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "phi")
    for f in folder.iterdir():
        _edit(
            f,
            PatientName="Doe^Jane",
            PatientID="PID-12345",
            PatientBirthDate="19700101",
            InstitutionName="Saint Elsewhere",
        )
    vol = read_dicom_series(folder)
    ds = pydicom.dcmread(next(folder.iterdir()))
    text = repr(vol.meta) + repr(vol)
    for value in (*PHI_VALUES, str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.get("StudyDate"))):
        assert value not in text
    assert vol.meta["modality"] == "CT" and vol.meta["series_description"]


def test_undecodable_compressed_pixels_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    ds = pydicom.dcmread(TEST_FILES / "MR_small_RLE.dcm")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # cut the RLE stream short
    ds.save_as(folder / "cut.dcm")
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "cannot decode DICOM pixel data (RLE Lossless" in _one_line(e, "cut.dcm")


def test_two_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    folder = _copy(CT5N, tmp_path / "twice")
    source = _files_by_z(folder)[2]
    twin = folder / "twin"
    shutil.copy(source, twin)
    _edit(twin, SOPInstanceUID=generate_uid())
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "same position" in _one_line(e, str(folder))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid IS value
def test_unreadable_frame_count_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "badvr"
    folder.mkdir()
    shutil.copy(TEST_FILES / "badVR.dcm", folder)  # NumberOfFrames '1A'
    with pytest.raises(InputError) as e:
        read_dicom_series(folder)
    assert "NumberOfFrames" in _one_line(e, "badVR.dcm")


def test_canonical_dicom_volume_writes_back_in_acquisition_order() -> None:
    vol = read_dicom_series(CT5N)
    ras = vol.canonical()
    assert ras.orientation == "RAS" and ras.meta["original_orientation"] == "LPS"
    assert np.array_equal(ras.data, vol.data[:, ::-1, ::-1])  # L->R and P->A flip the in-plane axes
    back = ras.to_original(ras.data)
    assert np.array_equal(back.affine, vol.affine)
    assert np.array_equal(back.get_fdata().transpose(2, 1, 0), vol.data)

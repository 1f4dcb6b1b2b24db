"""DICOM SEG output on pydicom's bundled CT series, and compressed DICOM through the dicom extra's plugins.

Every SEG is read back with highdicom, the way a viewer would, and compared voxel for voxel with the mask
that went in, on the source instances the reader built the volume from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless, generate_uid

from vaedx.errors import ConfigError, InputError
from vaedx.io import read_dicom, read_dicom_series
from vaedx.io.dicom_seg import write_dicom_seg

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
STUDY = TEST_FILES / "dicomdirtests" / "98892001"  # a CT study: a 2-image scout series and CT5N
CT5N = STUDY / "CT5N"  # 5 axial CT slices, 2.5 mm apart, InstanceNumber runs head to foot
PLUGINS = ("pylibjpeg", "libjpeg", "openjpeg", "jpeg_ls", "gdcm", "pillow_jpls")

try:
    import highdicom as hd
except ImportError:  # the dicom extra is part of the CI install; elsewhere it is optional
    if os.environ.get("CI"):
        raise
    pytest.skip("highdicom is not installed (pip install 'vaedx[dicom]')", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _bundled_files() -> None:
    if not CT5N.is_dir():
        pytest.fail(f"pydicom's bundled test files are missing ({TEST_FILES})")


def _one_line(e: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    assert all(p in text for p in parts), text
    return text


def _lesion_mask(data: np.ndarray) -> np.ndarray:
    """Dense tissue (> 0 HU) in slices 1 and 3 only: a mask with empty slices between marked ones."""
    mask = np.zeros(data.shape, np.uint8)
    for k in (1, 3):
        mask[k] = data[k] > 0
    assert mask[1].any() and mask[3].any() and not mask[1].all()
    return mask


def _uids_by_z(folder: Path) -> list[str]:
    files = sorted(folder.iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    return [str(pydicom.dcmread(f).SOPInstanceUID) for f in files]


def _read_back(path: Path, uids: list[str]) -> tuple[hd.seg.Segmentation, np.ndarray]:
    seg = hd.seg.segread(path)
    assert {ref[2] for ref in seg.get_source_image_uids()} == set(uids)  # else missing frames read as empty
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[1], assert_missing_frames_are_empty=True
    )
    return seg, pixels[..., 0]


def test_seg_on_ct_series_reads_back_voxel_for_voxel(tmp_path: Path) -> None:
    vol = read_dicom_series(CT5N)
    mask = _lesion_mask(vol.data)
    target = tmp_path / "out" / "anomaly.seg.dcm"
    out = write_dicom_seg(mask, CT5N, target, algorithm_version="9.9")
    assert out == target and [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left
    uids = _uids_by_z(CT5N)  # slice k of the volume is the k-th file along z, not by InstanceNumber
    seg, back = _read_back(out, uids)
    assert np.array_equal(back, mask)
    assert seg.SegmentationType == "BINARY" and seg.NumberOfFrames == 2  # only the two marked slices
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "anomaly" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # SNOMED CT Lesion
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "vaedx" and algorithm.AlgorithmVersion == "9.9"
    source = pydicom.dcmread(next(CT5N.iterdir()))
    # the standard puts the source's patient and study into the SEG: it is as identifying as the source
    assert seg.PatientID == source.PatientID and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID


def test_series_picked_from_a_study_folder_and_from_a_zip(tmp_path: Path) -> None:
    uid = str(pydicom.dcmread(next(CT5N.iterdir())).SeriesInstanceUID)
    mask = _lesion_mask(read_dicom_series(STUDY, series_uid=uid).data)
    with pytest.raises(InputError, match="2 series found"):
        write_dicom_seg(mask, STUDY, tmp_path / "x.dcm")
    out = write_dicom_seg(mask, STUDY, tmp_path / "study.dcm", series_uid=uid)
    _, back = _read_back(out, _uids_by_z(CT5N))
    assert np.array_equal(back, mask)
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for n, f in enumerate(sorted(CT5N.iterdir())):
            z.write(f, f"scan/img{9 - n}.dcm")  # member names sort against the slice order
    _, back = _read_back(write_dicom_seg(mask, archive, tmp_path / "zip.dcm"), _uids_by_z(CT5N))
    assert np.array_equal(back, mask)


def test_seg_on_an_enhanced_multiframe_ct(tmp_path: Path) -> None:
    legacy = [pydicom.dcmread(f) for f in sorted(CT5N.iterdir())]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    (tmp_path / "enh").mkdir()
    enhanced.save_as(tmp_path / "enh" / "ct.dcm")
    vol = read_dicom_series(tmp_path / "enh")
    assert np.array_equal(vol.data, read_dicom_series(CT5N).data)  # frames put back in z order
    mask = _lesion_mask(vol.data)
    seg = hd.seg.segread(write_dicom_seg(mask, tmp_path / "enh", tmp_path / "seg.dcm"))
    # frame f of the file holds the slice at the f-th frame position; map the mask slices onto them
    z = [
        float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        for item in enhanced.PerFrameFunctionalGroupsSequence
    ]
    frame_of_slice = list(np.argsort(z) + 1)
    back = seg.get_pixels_by_source_frame(
        enhanced.SOPInstanceUID,
        source_frame_numbers=frame_of_slice,
        segment_numbers=[1],
        assert_missing_frames_are_empty=True,
    )[..., 0]
    assert frame_of_slice != sorted(frame_of_slice)  # the file's frame order is not the slice order
    assert np.array_equal(back, mask) and seg.NumberOfFrames == 2


def test_multiframe_without_functional_groups_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dose").mkdir()
    shutil.copy(TEST_FILES / "rtdose.dcm", tmp_path / "dose")
    mask = np.zeros(read_dicom_series(tmp_path / "dose").shape, np.uint8)
    with pytest.raises(InputError) as e:
        write_dicom_seg(mask, tmp_path / "dose", tmp_path / "seg.dcm")
    _one_line(e, "enhanced image with functional groups", "RT Dose Storage", "dose")
    assert not (tmp_path / "seg.dcm").exists()


def test_empty_mask_keeps_every_frame_without_warning(tmp_path: Path) -> None:
    mask = np.zeros(read_dicom_series(CT5N).shape, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = write_dicom_seg(mask, CT5N, tmp_path / "empty.dcm", label="no finding")
    seg, back = _read_back(out, _uids_by_z(CT5N))
    assert seg.NumberOfFrames == 5 and not back.any()
    assert seg.SegmentSequence[0].SegmentLabel == "no finding"


def test_mask_that_does_not_fit_the_series_is_one_line(tmp_path: Path) -> None:
    shape = read_dicom_series(CT5N).shape
    with pytest.raises(ConfigError) as e:
        write_dicom_seg(np.zeros(shape[::-1], np.uint8), CT5N, tmp_path / "seg.dcm")  # NIfTI (x, y, z) order
    _one_line(e, "(16, 16, 5)", "(5, 16, 16)")
    with pytest.raises(ConfigError) as e:
        write_dicom_seg(np.full(shape, 255, np.uint8), CT5N, tmp_path / "seg.dcm")
    _one_line(e, "only 0 and 1")
    with pytest.raises(ConfigError) as e:
        write_dicom_seg(np.zeros(shape, np.float32), CT5N, tmp_path / "seg.dcm")
    _one_line(e, "float32")
    with pytest.raises(ConfigError, match="segment label"):
        write_dicom_seg(np.zeros(shape, bool), CT5N, tmp_path / "seg.dcm", label=" ")
    assert not list(tmp_path.iterdir())


def test_missing_highdicom_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom now raises ImportError
    with pytest.raises(ConfigError) as e:
        write_dicom_seg(np.zeros((5, 16, 16), bool), CT5N, tmp_path / "seg.dcm")
    _one_line(e, "highdicom", "pip install 'vaedx[dicom]'")


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_files_decode_like_the_uncompressed_one(name: str) -> None:
    plain, packed = read_dicom(TEST_FILES / "MR_small.dcm")[0], read_dicom(TEST_FILES / name)[0]
    assert packed.array.shape == (1, 64, 64) and np.array_equal(plain.array, packed.array)


def test_seg_on_a_jpeg_ls_compressed_series(tmp_path: Path) -> None:
    folder = tmp_path / "jls"
    shutil.copytree(CT5N, folder)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(JPEGLSLossless, generate_instance_uid=False)  # lossless: still the same instance
        ds.save_as(f)
    vol = read_dicom_series(folder)
    assert vol.meta["transfer_syntax"] == "JPEG-LS Lossless Image Compression"
    assert np.array_equal(vol.data, read_dicom_series(CT5N).data)
    mask = _lesion_mask(vol.data)
    _, back = _read_back(write_dicom_seg(mask, folder, tmp_path / "seg.dcm"), _uids_by_z(CT5N))
    assert np.array_equal(back, mask)


_WITHOUT_PLUGINS = """
import sys
for name in {plugins!r}:
    sys.modules[name] = None  # as if not installed: import fails, find_spec returns None
from pathlib import Path
from vaedx.errors import InputError
from vaedx.io import read_dicom, read_dicom_series
for read, path in ((read_dicom_series, Path(sys.argv[1]).parent), (read_dicom, Path(sys.argv[1]))):
    try:
        read(path)
    except InputError as e:
        print(e)
    else:
        print("decoded")
"""


def test_compressed_series_without_plugins_names_the_extra(tmp_path: Path) -> None:
    (tmp_path / "jls").mkdir()
    shutil.copy(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm", tmp_path / "jls")
    script = _WITHOUT_PLUGINS.format(plugins=PLUGINS)
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "jls" / "MR_small_jpeg_ls_lossless.dcm")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    series_line, file_line = run.stdout.splitlines()
    assert "MR_small_jpeg_ls_lossless.dcm: cannot decode DICOM pixel data (JPEG-LS Lossless" in series_line
    assert series_line.endswith("compressed data needs the dicom extra: pip install 'vaedx[dicom]'")
    assert "cannot decode DICOM pixel data (JPEG-LS Lossless" in file_line
    assert file_line.endswith("compressed data needs the dicom extra: pip install 'vaedx[dicom]'")

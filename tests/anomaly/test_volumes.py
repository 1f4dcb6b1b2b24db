"""Volumes through ``detect``: NIfTI, DICOM series, slice folders in; NIfTI maps and masks in their space out.

Real volumes only: LGG FLAIR patients (as slice folders and written out as NIfTI with a real-world affine in
another voxel order), and pydicom's bundled CT series.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from lgg_volume_model import lgg_cases, make_lgg_volume_store, plant_blob
from vaedx.anomaly.detect import detect
from vaedx.anomaly.volumes import split_volume_inputs
from vaedx.errors import ConfigError
from vaedx.io.slice_stack import read_lgg_patient

CT5N = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892001" / "CT5N"
FAST = {"widths": [8, 16], "latent_dim": 8, "batch_size": 32, "num_threads": 2}


@pytest.fixture(scope="module")
def run(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vaedx

    root = tmp_path_factory.mktemp("volumes")
    store = make_lgg_volume_store(lgg_dir, root / "store")
    vaedx.train(store, root / "run", epochs=25, label_filter=["no_tumour"], lr=3e-3, **FAST)
    detect(root / "run", root / "calib", store=store, split="val", save_calibration=True, quiet=True)
    return root / "run"


@pytest.fixture(scope="module")
def planted(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A held-out LGG patient as a NIfTI with 0.9 x 0.9 x 3 mm voxels and a planted bright blob.

    The PNG rows run anterior to posterior and the columns right to left; the file stores them as its first
    and second axes (voxel order PLS), so reading it must turn the axes round to give the PNG planes back.
    Returns the file and the blob's voxels in the file's own (i, j, k) order.
    """
    case = lgg_cases(lgg_dir, 6)[-1]
    vol, _ = read_lgg_patient(case)
    centre = (vol.shape[0] // 2, 110, 100)
    data = plant_blob(vol.data, centre)
    blob = (data != vol.data).transpose(1, 2, 0)  # (row, column, slice) as stored below
    affine = np.array([[0, -0.9, 0, 115.0], [-0.9, 0, 0, 100.0], [0, 0, 3.0, -30.0], [0, 0, 0, 1]])
    path = tmp_path_factory.mktemp("planted") / f"{case.name}.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(1, 2, 0)).astype(np.float32), affine), path)
    return path, blob


def test_volume_inputs_are_told_apart(lgg_dir: Path, planted: tuple[Path, np.ndarray]) -> None:
    case = lgg_cases(lgg_dir, 1)[0]
    one_png = next(case.glob("*_1.png"))
    volumes, others = split_volume_inputs([planted[0], CT5N, case, one_png])
    assert volumes == [planted[0], CT5N, case] and others == [one_png]


def test_maps_and_masks_lie_on_the_input_and_find_the_blob(
    run: Path, planted: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, blob = planted
    out = detect(run, tmp_path / "out", inputs=[path], scorers=["residual"], quiet=True, max_overlays=0)
    name = path.name[: -len(".nii.gz")]
    source = nib.load(path)
    heat = nib.load(out / "volumes" / name / "residual_map.nii.gz")
    lesion = nib.load(out / "volumes" / name / "residual_mask.nii.gz")
    for img in (heat, lesion):
        assert img.shape == source.shape
        assert np.array_equal(img.affine, source.affine)
        assert nib.aff2axcodes(img.affine) == ("P", "L", "S")
    assert lesion.get_data_dtype() == np.uint8
    heat_map = heat.get_fdata()
    brain = source.get_fdata() > 0
    inside, elsewhere = heat_map[blob].mean(), heat_map[brain & ~blob].mean()
    assert inside > 3 * elsewhere, (inside, elsewhere)
    planes = np.flatnonzero(blob.any(axis=(0, 1)))  # the slices holding the blob
    peak = np.array(np.unravel_index(np.argmax(heat_map[:, :, planes]), (*heat_map.shape[:2], len(planes))))
    peak[2] = planes[peak[2]]
    gap = np.abs(np.argwhere(blob) - peak).max(axis=1).min()
    assert gap <= 256 // 32, gap  # the hottest voxel is on the blob, give or take one model pixel
    hit = lesion.get_fdata() > 0
    assert hit[blob].mean() > 0.5  # most of the blob is in the lesion mask
    info = json.loads((out / "volumes.json").read_text())["volumes"][0]
    assert info["volume"] == name and info["shape"] == list(source.shape)
    assert info["spacing_mm"] == pytest.approx([3.0, 0.9, 0.9])
    res = info["scorers"]["residual"]
    assert res["n_components"] >= 1 and res["lesion_volume_mm3"] == pytest.approx(
        hit.sum() * 0.9 * 0.9 * 3.0, rel=1e-6
    )
    biggest = res["components"][0]
    assert biggest["volume_mm3"] <= res["lesion_volume_mm3"]
    meta = json.loads((out / "detect.json").read_text())
    assert meta["volumes"] == {"n": 1, "file": "volumes.json"}


def test_slice_folder_and_dicom_series_and_scores_csv(run: Path, lgg_dir: Path, tmp_path: Path) -> None:
    case = lgg_cases(lgg_dir, 5)[-1]
    out = detect(run, tmp_path / "out", inputs=[case, CT5N], scorers=["residual"], quiet=True, max_overlays=0)
    vol, _ = read_lgg_patient(case)
    stack = nib.load(out / "volumes" / case.name / "residual_mask.nii.gz")
    assert stack.shape == vol.data.transpose(2, 1, 0).shape
    ct = nib.load(out / "volumes" / "CT5N" / "residual_map.nii.gz")
    assert ct.shape == (16, 16, 5)
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == vol.shape[0] + 5
    assert {r["volume"] for r in rows} == {case.name, "CT5N"}
    assert [int(r["slice_index"]) for r in rows if r["volume"] == "CT5N"] == list(range(5))
    text = (out / "volumes.json").read_text() + (out / "scores.csv").read_text()
    assert str(lgg_dir) not in text  # volume names only, never the folders above them


def test_multi_channel_model_refuses_a_volume(tmp_path: Path, planted: tuple[Path, np.ndarray]) -> None:
    from vaedx.data.preprocess import PreprocessConfig
    from vaedx.data.volume_prep import prepare_volume
    from vaedx.io.volume import read_nifti_volume

    with pytest.raises(ConfigError, match="one channel"):
        prepare_volume(read_nifti_volume(planted[0]), PreprocessConfig(channels=[0, 1, 2]))


def test_single_channel_files_stand_for_the_models_channel(run: Path, tmp_path: Path) -> None:
    """The model was trained on the FLAIR channel (channel 1) of 3-channel PNGs; a one-channel MR DICOM
    (pydicom's MR_small.dcm) is scored, and detect.json says how it was taken."""
    mr = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    out = detect(run, tmp_path / "out", inputs=[mr], scorers=["residual"], quiet=True, max_overlays=0)
    meta = json.loads((out / "detect.json").read_text())
    note = "single-channel images taken as channel 1, the one channel the model was trained on"
    assert meta["notes"] == [note]
    with (out / "scores.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 1


def test_dicom_seg_for_a_dicom_series_only_there_identifiers(run: Path, tmp_path: Path) -> None:
    """--dicom-seg: the SEG references the CT series' own instances; no other output names the patient."""
    import highdicom as hd  # in the dicom extra, which the test set-up installs

    out = detect(
        run, tmp_path / "out", inputs=[CT5N], scorers=["residual"], quiet=True, max_overlays=0, dicom_seg=True
    )
    info = json.loads((out / "volumes.json").read_text())["volumes"][0]["scorers"]["residual"]
    assert info["dicom_seg"] == "volumes/CT5N/residual_seg.dcm"
    seg = hd.seg.segread(out / info["dicom_seg"])
    sources = {pydicom.dcmread(f).SOPInstanceUID for f in CT5N.iterdir()}
    listed = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    referenced = {r.ReferencedSOPInstanceUID for r in listed}
    assert referenced <= sources and referenced
    first = pydicom.dcmread(next(CT5N.iterdir()))
    identifiers = [str(first.PatientName), str(first.PatientID)]
    assert str(seg.PatientID) == identifiers[1]  # the SEG carries the patient module, as the standard asks
    text = "".join(f.read_text() for f in out.rglob("*") if f.suffix in (".json", ".csv"))
    assert not [v for v in identifiers if v and v in text]


def test_a_folder_of_volumes_gives_one_output_per_volume(
    run: Path, planted: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "scans"
    (folder / "series").mkdir(parents=True)
    shutil.copy(planted[0], folder / "a.nii.gz")
    for f in CT5N.iterdir():
        shutil.copy(f, folder / "series" / f.name)
    (folder / "notes.txt").write_text("not an image")
    out = detect(run, tmp_path / "out", inputs=[folder], scorers=["residual"], quiet=True, max_overlays=0)
    names = [v["volume"] for v in json.loads((out / "volumes.json").read_text())["volumes"]]
    assert names == ["a", "series"]


@pytest.fixture(scope="module")
def run_25d(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAE on three LGG patients prepared with one neighbouring slice on each side (3 channels)."""
    import vaedx
    from vaedx.data.manifest import Manifest, write_manifest
    from vaedx.data.prepare import prepare, prepare_config
    from vaedx.data.sources import index_source

    root = tmp_path_factory.mktemp("context")
    m = index_source(lgg_dir)
    cases = {c.name for c in lgg_cases(lgg_dir, 3)}
    csv_path = write_manifest(Manifest([r for r in m.rows if r["volume"] in cases], m.root, m.source),
                              root / "m.csv")  # fmt: skip
    cfg = prepare_config(size=32, channels=[1], normalize_scope="volume", context_slices=1)
    store = prepare(csv_path, root / "store", cfg, fractions=(1.0, 0.0, 0.0))
    vaedx.train(store.root, root / "run", epochs=1, val_split=None, **FAST)
    return root / "run"


def test_a_25d_model_scores_a_volume_and_refuses_a_single_image(
    run_25d: Path, planted: tuple[Path, np.ndarray], lgg_dir: Path, tmp_path: Path
) -> None:
    from vaedx.errors import ModelMismatchError
    from vaedx.runs.loaded import load_model

    assert tuple(load_model(run_25d).image_shape) == (3, 32, 32)  # the model's channels follow the store
    path, _ = planted
    out = detect(run_25d, tmp_path / "out", inputs=[path], scorers=["residual"], quiet=True, max_overlays=0)
    source = nib.load(path)
    heat = nib.load(out / "volumes" / path.name[: -len(".nii.gz")] / "residual_map.nii.gz")
    assert heat.shape == source.shape and np.array_equal(heat.affine, source.affine)
    assert np.isfinite(heat.get_fdata()).all() and heat.get_fdata().max() > 0
    with (out / "scores.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == source.shape[2]  # one row per slice, each the centre
    png = next(lgg_cases(lgg_dir, 1)[0].glob("*_10.png"))
    with pytest.raises(ModelMismatchError, match="a single 2-D image has no neighbouring slices") as e:
        detect(run_25d, tmp_path / "png", inputs=[png], scorers=["residual"], quiet=True, max_overlays=0)
    assert str(png) in str(e.value) and "\n" not in str(e.value)

"""Calibrate -> thresholds.json -> detect on a store, PNGs and DICOM; torchrun shards equal one process."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cuda_fixtures import AUROC_TOL
from lesion_stores import make_lesion_store
from vaedx.anomaly.calibration import CalibrationFile, calibrate_thresholds
from vaedx.anomaly.detect import detect
from vaedx.anomaly.scoring import PostSpec, Scored, merge_shards, run_scorers, save_shard, shard_slice
from vaedx.cli import main
from vaedx.data.store import TensorStore
from vaedx.errors import ModelMismatchError

SIZE = 16


def make_store(out: Path, size: int = SIZE, n: int = 36) -> Path:
    return make_lesion_store(out, n, size)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import vaedx

    root = tmp_path_factory.mktemp("detect")
    store = make_store(root / "store")
    fast = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "num_threads": 1}
    vaedx.train(store, root / "run", epochs=1, label_filter=["normal"], **fast)
    return store, root / "run"


def write_dicom(path: Path) -> Path:
    """A small 24x24 MR DICOM written the pydicom-3 way."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "MR"
    yy, xx = np.mgrid[:24, :24]
    pixels = (400 * np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 20)).astype(np.uint16)
    ds.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_calibrate_writes_thresholds_at_specificity(setup: tuple[Path, Path]) -> None:
    store, run = setup
    from vaedx.runs.loaded import load_model

    loaded, ts = load_model(run), TensorStore.open(store)
    cal = calibrate_thresholds(loaded, ts, ["residual", "elbo"], target_specificity=0.75)
    again = CalibrationFile.load(run)
    assert (run / "thresholds.json").is_file() and set(again.scorers) >= {"residual", "elbo"}
    idx = ts.select(split="val", labels=["normal"])
    scores = run_scorers(loaded.model, np.asarray(ts.images[idx]), ["residual"]).scores["residual"]
    thr = cal.scorers["residual"].thresholds
    assert thr.n_calibration == idx.size
    assert np.mean(scores <= thr.image_threshold) >= 0.75
    assert thr.pixel_threshold is not None  # val split has masks


def test_detect_store_csv_flags_maps_overlays(setup: tuple[Path, Path], tmp_path: Path) -> None:
    store, run = setup
    out = detect(
        run,
        tmp_path / "o",
        store=store,
        split="test",
        scorers=["residual", "ssim"],
        max_overlays=3,
        quiet=True,
    )
    rows = _read(out / "scores.csv")
    ts = TensorStore.open(store)
    assert [int(r["index"]) for r in rows] == ts.select(split="test").tolist()
    assert list(rows[0])[:5] == ["index", "path", "split", "label", "patient_id"]
    assert all("/" not in r["path"] for r in rows)  # file name only, no patient folders
    meta = json.loads((out / "detect.json").read_text())
    for name in ("residual", "ssim"):
        thr = meta["thresholds"][name]["image_threshold"]
        assert all(int(r[f"{name}_flag"]) == (float(r[name]) > thr) for r in rows)
        maps = np.load(out / "maps" / f"{name}.npy")
        assert maps.shape == (len(rows), SIZE, SIZE) and np.isfinite(maps).all()
        assert len(list((out / "overlays" / name).glob("*.png"))) == 3


def test_detect_png_folder_and_dicom(setup: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = setup
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        PILImage.fromarray((rng.random((20, 20)) * 255).astype(np.uint8), mode="L").save(folder / f"a{k}.png")
    PILImage.fromarray(np.full((20, 20), 7, np.uint8), mode="L").save(folder / "const.png")  # constant image
    dcm = write_dicom(tmp_path / "scan.dcm")
    out = detect(run, tmp_path / "o", inputs=[folder, dcm], scorers=["residual"], quiet=True)
    rows = _read(out / "scores.csv")
    assert [r["path"] for r in rows] == ["a0.png", "a1.png", "a2.png", "const.png", dcm.name]
    assert all(np.isfinite(float(r["residual"])) for r in rows)
    assert json.loads((out / "detect.json").read_text())["source"] == "files"


def test_detect_nifti_volume_and_dicom_series_folder(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """A 3-D NIfTI is a volume, one row per slice; a folder of unrelated DICOM files one row per file; the
    outputs hold no identifier."""
    import nibabel as nib

    from dicom_builders import PHI_STRINGS, write_ct_dicom

    _, run = setup
    yy, xx = np.mgrid[:20, :20]
    vol = np.stack([np.exp(-((yy - 10) ** 2 + (xx - 6 - 2 * k) ** 2) / 30) for k in range(4)], axis=-1)
    vol[..., 3] = 0.0  # a blank slice must still get a finite score
    nii = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol.astype(np.float32), np.eye(4)), nii)
    series = tmp_path / "series"
    series.mkdir()
    for k in range(3):
        write_ct_dicom(series / f"s{k}.dcm", (1000 * vol[..., k]).astype(np.uint16))
    out = detect(run, tmp_path / "o", inputs=[nii, series], scorers=["residual", "ssim"], quiet=True)
    rows = _read(out / "scores.csv")
    names = [r["path"] for r in rows]
    assert names == [*(f"vol#{k}" for k in range(4)), "s0.dcm", "s1.dcm", "s2.dcm"]
    assert [int(r["index"]) for r in rows] == list(range(7))
    assert (out / "volumes" / "vol" / "residual_map.nii.gz").is_file()
    assert all(np.isfinite(float(r[s])) for r in rows for s in ("residual", "ssim"))
    maps = np.load(out / "maps" / "residual.npy")
    assert maps.shape == (7, SIZE, SIZE) and np.isfinite(maps).all()
    written = [f for f in out.rglob("*") if f.is_file()]
    text = "".join(f.read_text() for f in written if f.suffix in (".csv", ".json"))
    text += " ".join(str(f.relative_to(out)) for f in written)
    assert not [phi for phi in PHI_STRINGS if phi in text]


def test_rgb_file_and_store_mismatch_name_what_differs(setup: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = setup
    rgb = tmp_path / "rgb.png"
    PILImage.fromarray(np.zeros((16, 16, 3), np.uint8), mode="RGB").save(rgb)
    with pytest.raises(ModelMismatchError, match=r"rgb\.png.*3 channels but the model expects 1"):
        detect(run, tmp_path / "o", inputs=[rgb], quiet=True)
    other = make_store(tmp_path / "small", size=12, n=8)
    with pytest.raises(ModelMismatchError, match=r"image shape \(1, 16, 16\) \(model\) vs \(1, 12, 12\)"):
        detect(run, tmp_path / "o2", store=other, quiet=True)


def test_cli_bad_input_exits_2_with_one_line(setup: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    _, run = setup
    code = main(
        [
            "detect",
            "--model",
            str(run),
            "--input",
            str(tmp_path / "missing.png"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "missing.png" in err and "Traceback" not in err


def test_shards_merge_in_original_order(setup: tuple[Path, Path], tmp_path: Path) -> None:
    store, run = setup
    from vaedx.runs.loaded import load_model

    x = np.array(TensorStore.open(store).images)
    model = load_model(run).model
    whole = run_scorers(model, x, ["residual"], post=PostSpec(foreground=True))
    for r in range(3):
        part = shard_slice(len(x), r, 3)
        save_shard(tmp_path, r, run_scorers(model, x[part], ["residual"], post=PostSpec(foreground=True)))
    merged: Scored = merge_shards(tmp_path, 3)
    np.testing.assert_allclose(merged.scores["residual"], whole.scores["residual"], rtol=1e-6)
    np.testing.assert_array_equal(merged.valid, whole.valid)


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun"
)
def test_torchrun_two_ranks_equal_single_process(setup: tuple[Path, Path], tmp_path: Path) -> None:
    store, run = setup
    single = detect(run, tmp_path / "one", store=store, split=None, max_overlays=0, quiet=True)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vaedx.cli",
        "detect",
        "--model",
        str(run),
        "--store",
        str(store),
        "--split",
        "all",
        "--out",
        str(tmp_path / "two"),
        "--max-overlays",
        "0",
        "--scorer",
        "residual",
        "-q",
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=120)
    a, b = _read(single / "scores.csv"), _read(tmp_path / "two" / "scores.csv")
    assert [r["index"] for r in a] == [r["index"] for r in b]
    np.testing.assert_allclose(
        [float(r["residual"]) for r in a], [float(r["residual"]) for r in b], rtol=1e-6
    )


def test_detect_calibrates_explicitly_and_saves_into_the_run_only_on_request(
    setup: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    store, trained = setup
    run = shutil.copytree(trained, tmp_path / "run")
    (run / "thresholds.json").unlink(missing_ok=True)
    out = detect(run, tmp_path / "o", store=store, scorers=["residual"], target_specificity=0.8,
                 normal_label="lesion", max_overlays=0, quiet=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "normal label 'lesion'" in err and "--save-calibration" in err
    assert not (run / "thresholds.json").exists()
    entry = CalibrationFile.load(out).scorers["residual"]
    assert entry.normal_label == "lesion" and entry.thresholds.target_specificity == 0.8
    meta = json.loads((out / "detect.json").read_text())
    assert meta["normal_label"] == "lesion" and meta["target_specificity"] == 0.8
    assert meta["thresholds"]["residual"] == entry.thresholds.model_dump()

    guessed = detect(run, tmp_path / "g", store=store, scorers=["residual"], max_overlays=0,
                     save_calibration=True, quiet=True)  # fmt: skip
    saved_line = f"saved the calibration of residual to {run / 'thresholds.json'}"
    assert saved_line in capsys.readouterr().err.replace("\n", "")
    saved = CalibrationFile.load(run).scorers["residual"]
    assert saved.normal_label == "normal" and saved.thresholds.target_specificity == 0.95
    assert CalibrationFile.load(guessed) == CalibrationFile.load(run)
    assert json.loads((guessed / "detect.json").read_text())["normal_label"] == "normal"


def test_detect_refuses_an_unknown_normal_label_and_a_bad_specificity(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    from vaedx.errors import ConfigError

    store, run = setup
    with pytest.raises(ConfigError, match="normal label 'healthy'.*normal, lesion"):
        detect(run, tmp_path / "o", store=store, normal_label="healthy", quiet=True)
    with pytest.raises(ConfigError, match="target specificity"):
        detect(run, tmp_path / "o", store=store, target_specificity=1.5, quiet=True)


@pytest.mark.cuda
def test_detect_with_restoration_on_cuda_matches_cpu(cuda_run, tmp_path: Path) -> None:
    """`vaedx detect --device cuda` (restoration included) on real test images: the same rows, finite maps,
    and per scorer the same AUROC as on the CPU within the tolerance autocast allows."""
    from vaedx.anomaly.output import DetectOutput
    from vaedx.metrics.measures import auroc

    outs = {}
    for device in ("cpu", "cuda"):
        outs[device] = tmp_path / device
        args = ["detect", "--model", str(cuda_run.run), "--store", str(cuda_run.store)]
        args += ["--out", str(outs[device]), "--scorer", "residual,restoration"]
        args += ["--option", "restoration.steps=20", "--max-overlays", "2"]
        assert main([*args, "--device", device, "--quiet"]) == 0
    cpu, gpu = DetectOutput.open(outs["cpu"]), DetectOutput.open(outs["cuda"])
    assert np.array_equal(gpu.index, cpu.index)
    truth = np.array([r["label"] == "pneumonia" for r in cpu.rows], dtype=np.int8)
    assert 0 < truth.sum() < len(truth)
    for name in ("residual", "restoration"):
        a, b = cpu.scores(name), gpu.scores(name)
        assert np.isfinite(b).all() and len(b) == len(a)
        assert np.isfinite(gpu.load_maps(name)).all()
        assert abs(auroc(truth, a) - auroc(truth, b)) < AUROC_TOL, name

"""`vaedx data ...` and `vaedx demo` through vaedx.cli.main, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from progress_spy import bars  # noqa: F401
from vaedx.cli import main


def _pngs(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("normal", "tumour"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / cls / f"{cls}{i}.png")
    return root


def test_index_prepare_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pngs(tmp_path / "data")
    manifest = tmp_path / "m.csv"
    assert main(["data", "index", str(data), "-o", str(manifest), "--seed", "3"]) == 0
    assert f"wrote {manifest} (6 rows)" in capsys.readouterr().out
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("normalize: minmax\nsize: 16\n")
    assert (
        main(
            ["data", "prepare", str(manifest), "-o", str(tmp_path / "s"), "--config", str(cfg), "--size", "8"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "prepared" in out and "6 images of 1x8x8 (CxHxW)" in out and "normalize minmax" in out
    assert main(["data", "inspect", str(tmp_path / "s"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["n"] == 6
        and info["preprocess"]["size"] == [8, 8]
        and info["label_names"] == ["normal", "tumour"]
    )
    assert (
        main(["data", "split", str(manifest), "--reset", "--seed", "4", "-o", str(tmp_path / "m2.csv")]) == 0
    )


def test_bad_file_gives_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pngs(tmp_path / "data")
    bad = data / "tumour" / "tumour1.png"
    bad.write_bytes(bad.read_bytes()[:40])
    manifest = tmp_path / "m.csv"
    assert main(["data", "index", str(data), "-o", str(manifest)]) == 0  # indexing only sniffs the header
    capsys.readouterr()
    code = main(["data", "prepare", str(manifest), "-o", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and str(bad) in err and "Traceback" not in err

    assert main(["data", "prepare", str(manifest), "-o", str(tmp_path / "s"), "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "5 images" in out and "1 file(s) skipped" in out and "skipped data/tumour/tumour1.png: " in out


def test_empty_folder_and_unknown_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["data", "index", str(tmp_path / "empty"), "-o", str(tmp_path / "m.csv")]) == 2
    assert f"no images found in {tmp_path / 'empty'}" in capsys.readouterr().err
    assert main(["data", "prepare", str(tmp_path / "m.csv"), "-o", str(tmp_path / "s"), "--bogus"]) != 0


@pytest.mark.realdata
def test_inspect_pneumonia_store_prints_the_official_counts(
    pneumonia_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["data", "prepare", str(pneumonia_npz), "-o", str(tmp_path / "pn")]) == 0
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path / "pn")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[1]: ln.split()[3:6:2] for ln in lines if ln.startswith("│")}
    assert (
        rows["train"] == ["1214", "3494"] and rows["val"] == ["135", "389"] and rows["test"] == ["234", "390"]
    )


@pytest.mark.realdata
def test_lgg_csv_with_column_options(
    lgg_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lgg.csv"
    args = ["--path-col", "image", "--label-col", "tumour", "--mask-col", "mask", "--patient-col", "patient"]
    assert main(["data", "index", str(lgg_dir / "manifest.csv"), "--from-csv", *args, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (971 rows)" in text
    all_row = next(ln for ln in text.splitlines() if ln.startswith("│ all"))
    assert all_row.split()[3:10:2] == ["596", "375", "971", "28"]  # no_tumour, tumour, total, patients


def test_inspect_takes_every_source_index_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        f"{s}_images": rng.integers(0, 255, (4, 8, 8), dtype=np.uint8) for s in ("train", "val", "test")
    }
    arrays |= {f"{s}_labels": np.array([[0], [1], [0], [1]]) for s in ("train", "val", "test")}
    np.savez(tmp_path / "x.npz", **arrays)
    assert main(["data", "inspect", str(tmp_path / "x.npz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(info["counts"]["train"].values()) == 4
    assert main(["data", "inspect", str(_pngs(tmp_path / "pngs"))]) == 0
    assert "6 images" in capsys.readouterr().out


def test_volume_options_of_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    import nibabel as nib

    shutil.copy(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii", tmp_path / "anat.nii")
    manifest = tmp_path / "m.csv"
    assert main(["data", "index", str(tmp_path / "anat.nii"), "-o", str(manifest)]) == 0
    assert "volumes: 1 (slices per volume min 25" in capsys.readouterr().out
    out = str(tmp_path / "s")
    args = ["--normalize-scope", "volume", "--target-spacing", "1.5,1.5", "--size", "32"]
    assert main(["data", "prepare", str(manifest), "-o", out, *args]) == 0
    text = capsys.readouterr().out
    assert (
        "25 images of 1x32x32" in text
        and "normalize_scope volume" in text
        and "target_spacing [1.5, 1.5]" in text
    )
    assert main(["data", "inspect", out, "--json"]) == 0
    vols = json.loads(capsys.readouterr().out)["volumes"]
    assert vols["n"] == 1 and vols["spacing"]["known"] == 1 and vols["per_split"] == {"train": 1}
    assert (
        main(["data", "prepare", str(manifest), "-o", out, "--brain-extraction", "bogus", "--overwrite"]) == 2
    )
    assert "--brain-extraction 'bogus' is not a method" in capsys.readouterr().err
    assert (
        main(["data", "prepare", str(manifest), "-o", out, "--target-spacing", "1,2,3", "--overwrite"]) == 2
    )
    assert "--target-spacing expects 2" in capsys.readouterr().err


def test_prepare_json_quiet_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str], bars) -> None:  # noqa: F811
    data = _pngs(tmp_path / "data")
    args = ["data", "prepare", str(data), "--size", "8"]
    assert main([*args, "-o", str(tmp_path / "s"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # the sentence went to stderr
    assert "prepared" in captured.err and "prepared" not in captured.out
    assert doc["images"] == 6 and doc["image_shape"] == [1, 8, 8] and doc["summary"]["n"] == 6
    assert bars == [(6, 6)]  # the six images were written in one chunk
    assert main([*args, "-o", str(tmp_path / "q"), "--quiet"]) == 0 and bars == [(6, 6)]
    assert "6 images of 1x8x8" in capsys.readouterr().out


def test_prepare_context_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    import nibabel as nib

    shutil.copy(Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii", tmp_path / "anat.nii")
    manifest = tmp_path / "m.csv"
    assert main(["data", "index", str(tmp_path / "anat.nii"), "-o", str(manifest)]) == 0
    out = str(tmp_path / "s")
    assert main(["data", "prepare", str(manifest), "-o", out, "--size", "32", "--context-slices", "2"]) == 0
    text = capsys.readouterr().out
    assert "25 images of 5x32x32" in text and "context_slices 2" in text
    bad = ["--channels", "0,1", "--context-slices", "1", "--overwrite"]
    assert main(["data", "prepare", str(manifest), "-o", out, *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "channels [0, 1] are kept: choose one channel" in err and "\n" not in err


def test_prepare_preset_fills_in_options_that_typed_ones_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _pngs(tmp_path / "imgs")
    assert main(["data", "prepare", str(root), "--preset", "brain-mri", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "normalize_scope: volume" in text and "brain_extraction: deepbet" in text
    typed = ["--brain-extraction", "none", "--print-config"]
    assert main(["data", "prepare", str(root), "--preset", "brain-mri", *typed]) == 0
    assert "brain_extraction: none" in capsys.readouterr().out
    assert main(["data", "prepare", str(root), "--preset", "brain-mri", "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "skull stripping (deepbet) needs volumes" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "prepare", str(root), "--preset", "chest", "-o", str(tmp_path / "s")]) == 2
    assert "unknown preset 'chest'" in capsys.readouterr().err

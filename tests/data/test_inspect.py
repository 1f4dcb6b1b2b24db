from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from synth_data import write_csv, write_png
from vaedx.data.index import IndexOptions
from vaedx.data.inspect import render, summarize, summarize_manifest
from vaedx.data.manifest import Manifest, write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.errors import InputError


def _render(info: dict) -> str:
    console = Console(record=True, width=200)
    render(info, console)
    return console.export_text()


def test_store_summary_with_masks(mask_folder: Path, tmp_path: Path) -> None:
    m = index_source(mask_folder)
    for r in m.rows:
        r["split"] = "train" if r["patient_id"] == "patA" else "test"
    store_dir = tmp_path / "store"
    prepare(write_manifest(m, mask_folder / "m.csv"), store_dir, prepare_config(size=16))
    info = summarize(store_dir)
    assert info["counts"] == {"train": {"unlabelled": 2}, "test": {"unlabelled": 2}}
    assert info["patients"] == {"train": 1, "test": 1, "total": 2}
    assert info["image"] == {"sizes": {"16x16": 4}, "channels": 3, "dtype": "float32"}
    assert len(info["intensity"]["channels"]) == 3
    assert 0 <= info["intensity"]["channels"][0]["min"] < info["intensity"]["channels"][0]["max"] <= 1
    masks = info["masks"]
    assert masks["with_mask"] == 4 and masks["non_empty"] == 2 and masks["fraction_non_empty"] == 0.5
    assert masks["median_mask_fraction"] == pytest.approx(36 / 256)  # 12x12 of 32x32 -> 6x6 of 16x16
    json.dumps(info)  # --json must be able to print it
    text = _render(info)
    assert "non-empty in 2 (50.0% of all images)" in text and "2 unlabelled image(s) in train" in text


def test_problems_are_found(class_folder: Path, tmp_path: Path) -> None:
    rows = [
        ["normal/n0.png", "normal", "train", "P1"],
        ["normal/n1.png", "normal", "test", "P1"],  # P1 in two splits
        ["normal/n2.png", "normal", "train", "P2"],
        ["pneumonia/p0.png", "pneumonia", "train", "P3"],
        ["pneumonia/gone.png", "pneumonia", "val", "P4"],
    ]
    csv_path = write_csv(class_folder / "m.csv", ["path", "label", "split", "patient_id"], rows)
    info = summarize(csv_path)
    problems = "\n".join(info["problems"])
    assert "1 patient(s) in more than one split, e.g. P1 (test/train)" in problems
    assert "label imbalance in train: normal 2 vs pneumonia 1 (2.0:1)" in problems  # 2:1 is the threshold
    assert "split test has no 'pneumonia' images" in problems
    assert "1 file(s) skipped or missing" in problems
    assert info["skipped"] == [{"path": "pneumonia/gone.png", "reason": "image file does not exist"}]
    assert info["image"]["sizes"] == {"16x16": 4}
    text = _render(info)
    assert "skipped pneumonia/gone.png: image file does not exist" in text

    store = prepare(csv_path, tmp_path / "s", prepare_config(), on_error="skip")
    sinfo = summarize(store.root)
    assert sinfo["skipped"] == info["skipped"] and any("more than one split" in p for p in sinfo["problems"])


def test_imbalance_and_missing_split(class_folder: Path, tmp_path: Path) -> None:
    m = index_source(class_folder, IndexOptions())
    for r in m.rows:
        r["split"] = "train" if r["label"] == "normal" or r["path"].endswith("p0.png") else ""
    info = summarize(write_manifest(m, class_folder / "m.csv"))
    assert "label imbalance in train: normal 3 vs pneumonia 1 (3.0:1)" in info["problems"]
    assert any("some rows have no split" in p for p in info["problems"])


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        summarize(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(InputError, match="expected a tensor store"):
        summarize(tmp_path / "x.txt")
    with pytest.raises(InputError, match="store.json missing"):
        summarize(tmp_path)


def test_identical_images_in_two_splits_are_reported(class_folder: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(class_folder / "normal" / "n0.png", class_folder / "pneumonia" / "copy.png")
    write_png(class_folder / "normal" / "blank.png", np.zeros((16, 16), np.uint8))
    m = index_source(class_folder)
    for r in m.rows:
        r["split"] = "test" if r["path"] == "pneumonia/copy.png" else "train"
    store = prepare(write_manifest(m, class_folder / "m.csv"), tmp_path / "s", prepare_config())
    info = summarize(store.root)
    assert info["duplicates"] == {
        "checked": True, "across_splits": 1, "within_splits": 0, "split_pairs": ["train/test"], "blank": 1,
    }  # fmt: skip
    assert (
        "1 image(s) appear identically in more than one split (train/test): possible leakage"
        in info["problems"]
    )


@pytest.mark.realdata
def test_volumes_of_a_manifest_and_of_a_store(lgg_dir: Path, tmp_path: Path) -> None:
    m = index_source(lgg_dir)
    keep = sorted({r["volume"] for r in m.rows})[:3]
    subset = Manifest([r for r in m.rows if r["volume"] in keep], m.root, m.source)
    sizes = sorted(sum(r["volume"] == v for r in subset.rows) for v in keep)
    info = summarize_manifest(subset, sample=0)
    vols = info["volumes"]
    assert vols["n"] == 3 and vols["slices"] == {"min": sizes[0], "median": float(sizes[1]), "max": sizes[2]}
    assert vols["with_masks"] == 3 and vols["with_lesion"] is None and vols["per_split"] == {"none": 3}
    assert vols["spacing"] == {"known": 0, "assumed": 3, "from": "file kinds"}
    cfg = prepare_config(size=32, channels=[1], normalize_scope="volume")
    store = prepare(
        write_manifest(subset, tmp_path / "m.csv"), tmp_path / "s", cfg, fractions=(0.34, 0.33, 0.33)
    )
    sinfo = summarize(store.root)
    json.loads(json.dumps(sinfo))
    svols = sinfo["volumes"]
    assert svols["n"] == 3 and sum(svols["per_split"].values()) == 3 and svols["in_several_splits"] == 0
    assert svols["with_lesion"] == 3 and svols["spacing"] == {
        "known": 0,
        "assumed": 3,
        "from": "volumes read",
    }
    text = _render(sinfo)
    assert f"volumes: 3 (slices per volume min {sizes[0]}, median {sizes[1]}, max {sizes[2]})" in text
    assert (
        "with masks 3, with lesion 3; spacing known 0, assumed 3" in text and "normalize_scope volume" in text
    )


def test_a_volume_in_two_splits_is_a_problem(tmp_path: Path) -> None:
    from vaedx.data.inspect import _volume_summary

    vols = _volume_summary(["v", "v", "w", ""], ["train", "test", "val", "train"], [False] * 4, None,
                           {"v": False, "w": True}, "file kinds")  # fmt: skip
    assert vols is not None and vols["in_several_splits"] == 1 and vols["rows_outside_volumes"] == 1
    assert vols["per_split"] == {"train": 1, "val": 1, "test": 1}

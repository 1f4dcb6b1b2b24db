"""MONAI/Decathlon datalist JSON (real LGG slices and masks, case folders linked into a base folder):
lists map to splits, labels to masks, val carved by patient when the JSON has none; bad files are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from byo_data import write_datalist
from vaedx.cli import main
from vaedx.data.datalist import is_datalist
from vaedx.data.index import IndexOptions
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore
from vaedx.errors import InputError

pytestmark = pytest.mark.realdata


def test_lists_become_splits_and_labels_masks(lgg_dir: Path, tmp_path: Path) -> None:
    path = write_datalist(lgg_dir, tmp_path / "base")
    assert is_datalist(path)
    m = index_source(None, IndexOptions(datalist=path))
    assert [sum(r["split"] == s for r in m.rows) for s in ("train", "val", "test")] == [8, 4, 4]
    patients = {s: {r["patient_id"] for r in m.rows if r["split"] == s} for s in ("train", "val", "test")}
    assert [len(p) for p in patients.values()] == [2, 1, 1]
    assert all(r["mask"].endswith("_mask.png") for r in m.rows if r["split"] != "test")
    assert all(r["mask"] == "" and r["label"] == "" for r in m.rows if r["split"] == "test")
    assert {r["fold"] for r in m.rows if r["split"] == "train"} == {"0", "1"}
    # the JSON given as the source is recognised too, with the same rows
    assert index_source(path).rows == m.rows


def test_without_validation_val_is_carved_by_patient(lgg_dir: Path, tmp_path: Path) -> None:
    path = write_datalist(lgg_dir, tmp_path / "base", with_validation=False)
    m = index_source(None, IndexOptions(datalist=path, fractions=(0.6, 0.4, 0.0)))
    by_patient: dict[str, set[str]] = {}
    for r in m.rows:
        by_patient.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_patient.values())
    assert sorted(next(iter(s)) for s in by_patient.values()) == ["test", "train", "train", "val"]


def test_base_folder_other_than_the_json_s(lgg_dir: Path, tmp_path: Path) -> None:
    path = write_datalist(lgg_dir, tmp_path / "base")
    moved = tmp_path / "elsewhere" / "list.json"
    moved.parent.mkdir()
    path.rename(moved)
    with pytest.raises(InputError, match="image file not found"):
        index_source(None, IndexOptions(datalist=moved))
    assert len(index_source(tmp_path / "base", IndexOptions(datalist=moved))) == 16


def test_index_and_prepare_through_the_cli(lgg_dir: Path, tmp_path: Path) -> None:
    path = write_datalist(lgg_dir, tmp_path / "base")
    manifest, store = tmp_path / "m.csv", tmp_path / "store"
    assert main(["data", "index", "--datalist", str(path), "--out", str(manifest)]) == 0
    assert (
        main(["data", "prepare", str(manifest), "--out", str(store), "--size", "64", "--channels", "1"]) == 0
    )
    st = TensorStore.open(store)
    assert len(st) == 16 and st.image_shape == (1, 64, 64) and st.masks is not None
    tumour = st.masks.reshape(len(st), -1).max(1) == 1
    assert tumour.sum() == 6  # two tumour slices of each training and validation patient


def test_class_labels_and_plain_string_entries(lgg_dir: Path, tmp_path: Path) -> None:
    path = write_datalist(lgg_dir, tmp_path / "base")
    doc = json.loads(path.read_text())
    doc["training"] = [
        {"image": e["image"], "label": i % 2, "mask": e["label"]} for i, e in enumerate(doc["training"])
    ]
    path.write_text(json.dumps(doc))
    m = index_source(path)
    train = [r for r in m.rows if r["split"] == "train"]
    assert [r["label"] for r in train] == ["0", "1"] * 4 and all(r["mask"] for r in train)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not a readable JSON datalist"),
        ('{"images": []}', "not a datalist: expected a JSON object with training/validation/test lists"),
        ('{"training": [{"label": "a.png"}]}', r"training\[0\] needs an 'image' path"),
        ('{"training": [{"image": "missing.png"}]}', r"training\[0\]: image file not found"),
        ('{"training": [{"image": "a.png", "label": ["x", "y"]}]}', "list labels .* are not supported"),
    ],
)
def test_bad_datalists_are_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "d.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        index_source(None, IndexOptions(datalist=path))

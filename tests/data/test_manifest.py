from __future__ import annotations

from pathlib import Path

import pytest

from synth_data import gradient, write_csv, write_png
from vaedx.data.manifest import Ref, parse_ref, read_manifest, write_manifest
from vaedx.errors import InputError


def _images(tmp_path: Path, n: int = 3) -> list[Path]:
    return [write_png(tmp_path / "img" / f"a{i}.png", gradient(seed=i)) for i in range(n)]


def test_reads_relative_and_absolute_paths_and_keeps_extra_columns(tmp_path: Path) -> None:
    a, b, _ = _images(tmp_path)
    csv_path = write_csv(
        tmp_path / "m.csv",
        ["path", "label", "split", "patient_id", "slice_index"],
        [["img/a0.png", "normal", "train", "p1", "4"], [str(b), "tumour", "", "p2", ""]],
    )
    m = read_manifest(csv_path)
    assert len(m) == 2
    assert m.resolve(m.rows[0]["path"]).file == a
    assert m.resolve(m.rows[1]["path"]).file == b
    assert m.columns == ["path", "label", "mask", "split", "patient_id", "slice_index"]
    assert m.rows[0]["slice_index"] == "4"


def test_write_rebases_relative_paths_to_the_new_folder(tmp_path: Path) -> None:
    a, *_ = _images(tmp_path)
    m = read_manifest(write_csv(tmp_path / "m.csv", ["path"], [["img/a0.png"]]))
    out = write_manifest(m, tmp_path / "img" / "copy.csv")
    again = read_manifest(out)
    assert again.rows[0]["path"] == "a0.png"
    assert again.resolve(again.rows[0]["path"]).file == a
    elsewhere = read_manifest(write_manifest(m, tmp_path.parent / f"{tmp_path.name}_other" / "m.csv"))
    assert Path(elsewhere.rows[0]["path"]).is_absolute()  # outside the manifest's folder: absolute


def test_missing_path_column_is_refused_naming_the_csv(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", ["file", "label"], [["a.png", "1"]])
    with pytest.raises(InputError, match="no 'path' column") as e:
        read_manifest(csv_path)
    assert e.value.path == str(csv_path)


def test_mixed_label_types_are_refused_with_an_example_of_each(tmp_path: Path) -> None:
    _images(tmp_path)
    csv_path = write_csv(
        tmp_path / "m.csv",
        ["path", "label"],
        [["img/a0.png", "1"], ["img/a1.png", "tumour"], ["img/a2.png", ""]],
    )
    with pytest.raises(InputError) as e:
        read_manifest(csv_path)
    assert e.value.path == str(csv_path)
    assert "'1' on line 2" in e.value.problem and "'tumour' on line 3" in e.value.problem


def test_missing_file_fails_naming_it_or_is_collected_when_skipping(tmp_path: Path) -> None:
    _images(tmp_path, 1)
    csv_path = write_csv(tmp_path / "m.csv", ["path", "mask"], [["img/a0.png", ""], ["img/gone.png", ""]])
    with pytest.raises(InputError, match="line 3") as e:
        read_manifest(csv_path)
    assert e.value.path == str(tmp_path / "img" / "gone.png")
    m = read_manifest(csv_path, on_error="skip")
    assert [r["path"] for r in m.rows] == ["img/a0.png"]
    assert m.skipped == [{"path": "img/gone.png", "reason": "image file does not exist"}]


def test_missing_mask_is_reported(tmp_path: Path) -> None:
    _images(tmp_path, 1)
    csv_path = write_csv(tmp_path / "m.csv", ["path", "mask"], [["img/a0.png", "img/a0_mask.png"]])
    with pytest.raises(InputError, match="mask file does not exist"):
        read_manifest(csv_path)


def test_unknown_split_name_is_refused(tmp_path: Path) -> None:
    _images(tmp_path, 1)
    with pytest.raises(InputError, match="unknown split 'training'"):
        read_manifest(write_csv(tmp_path / "m.csv", ["path", "split"], [["img/a0.png", "training"]]))


def test_npz_references(tmp_path: Path) -> None:
    assert parse_ref("d/x.npz#train/17", tmp_path) == Ref(tmp_path / "d" / "x.npz", "train", 17)
    assert parse_ref("/abs/y.png", tmp_path) == Ref(Path("/abs/y.png"))
    with pytest.raises(InputError, match="SPLIT/INDEX"):
        parse_ref("x.npz#train", tmp_path)


def test_label_names_and_codes(tmp_path: Path) -> None:
    _images(tmp_path)
    rows = [["img/a0.png", "1"], ["img/a1.png", "0"], ["img/a2.png", ""]]
    m = read_manifest(write_csv(tmp_path / "m.csv", ["path", "label"], rows))
    assert m.label_names() == ["0", "1"]
    assert m.label_codes(m.label_names()) == [1, 0, -1]
    names = m.label_names(["normal", "pneumonia"])
    assert m.label_codes(names, explicit=True) == [1, 0, -1]
    with pytest.raises(InputError, match="no name"):
        m.label_names(["only_one"])
    text = read_manifest(
        write_csv(tmp_path / "t.csv", ["path", "label"], [["img/a0.png", "b"], ["img/a1.png", "a"]])
    )
    assert text.label_names() == ["a", "b"]
    assert text.label_codes(text.label_names(["b", "a"])) == [0, 1]  # explicit order wins


def test_a_volume_belongs_to_one_patient_and_one_split(tmp_path: Path) -> None:
    _images(tmp_path)
    header = ["path", "split", "patient_id", "volume", "slice_index"]
    ok = write_csv(
        tmp_path / "ok.csv", header, [["img/a0.png", "", "", "v1", "0"], ["img/a1.png", "", "", "v1", "1"]]
    )
    assert {r["patient_id"] for r in read_manifest(ok).rows} == {"v1"}  # blank patient: the volume's id
    two_patients = write_csv(
        tmp_path / "p.csv", header, [["img/a0.png", "", "A", "v1", "0"], ["img/a1.png", "", "B", "v1", "1"]]
    )
    with pytest.raises(InputError, match="volume 'v1' has rows of patients 'A' and 'B'"):
        read_manifest(two_patients)
    two_splits = write_csv(
        tmp_path / "s.csv",
        header,
        [["img/a0.png", "train", "A", "v1", "0"], ["img/a1.png", "test", "A", "v1", "1"]],
    )
    with pytest.raises(InputError, match="keep a volume in one split"):
        read_manifest(two_splits)
    bad_index = write_csv(tmp_path / "i.csv", header, [["img/a0.png", "", "A", "v1", "one"]])
    with pytest.raises(InputError, match="slice_index 'one'"):
        read_manifest(bad_index)


def test_a_dicom_series_folder_is_a_valid_path_only_for_volume_rows(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()
    header = ["path", "volume", "slice_index"]
    m = read_manifest(write_csv(tmp_path / "m.csv", header, [["series", "series", "0"]]))
    assert m.resolve(m.rows[0]["path"]).file.is_dir()
    with pytest.raises(InputError, match="image file does not exist"):
        read_manifest(write_csv(tmp_path / "n.csv", ["path"], [["series"]]))

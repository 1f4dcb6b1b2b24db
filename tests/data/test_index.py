from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from synth_data import gradient, write_csv, write_dicom, write_png
from vaedx.data.index import Columns, IndexOptions
from vaedx.data.manifest import read_manifest, write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.data.splits import assign_splits
from vaedx.errors import ConfigError, InputError
from vaedx.io import read_dicom_series, read_lgg_patient, read_raster

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
DIRTESTS = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"
CT5N = DIRTESTS / "98892001" / "CT5N"  # one axial CT series of 5 slices
CR = [DIRTESTS / "77654033" / f"CR{i}" for i in (1, 2, 3)]  # three one-image radiographs


def _by_path(m) -> dict[str, dict[str, str]]:
    return {r["path"]: r for r in m.rows}


def test_class_folders_give_labels_and_file_stems_as_patients(class_folder: Path) -> None:
    m = index_source(class_folder)
    rows = _by_path(m)
    assert sorted(rows) == [
        "normal/n0.png",
        "normal/n1.png",
        "normal/n2.png",
        "pneumonia/p0.png",
        "pneumonia/p1.png",
    ]
    assert rows["pneumonia/p1.png"]["label"] == "pneumonia"
    assert rows["normal/n0.png"]["patient_id"] == "n0"
    assert m.label_names() == ["normal", "pneumonia"]


def test_patient_folders_below_class_folders_give_the_patient_id(tmp_path: Path) -> None:
    for cls, pat, i in (("normal", "p1", 0), ("normal", "p1", 1), ("tumour", "p2", 0)):
        write_png(tmp_path / cls / pat / "series" / f"im{i}.png", gradient(seed=i))
    rows = _by_path(index_source(tmp_path))
    assert rows["normal/p1/series/im1.png"]["patient_id"] == "p1"
    assert rows["tumour/p2/series/im0.png"] | {} == {
        "path": "tumour/p2/series/im0.png", "label": "tumour", "mask": "", "split": "", "patient_id": "p2",
    }  # fmt: skip


def test_labels_csv(class_folder: Path, tmp_path: Path) -> None:
    labels = write_csv(
        tmp_path / "labels.csv",
        ["file", "label", "patient_id"],
        [["normal/n0.png", "0", "A"], ["pneumonia/p0.png", "1", "B"], ["normal/n1.png", "0", ""]],
    )
    m = index_source(class_folder, IndexOptions(labels=labels, label_names=["normal", "pneumonia"]))
    rows = _by_path(m)
    assert len(rows) == 3  # only the files the CSV names
    assert rows["pneumonia/p0.png"]["label"] == "pneumonia" and rows["pneumonia/p0.png"]["patient_id"] == "B"
    assert rows["normal/n1.png"]["patient_id"] == "normal"  # nested file: first folder below the source


def test_labels_csv_naming_a_missing_file(class_folder: Path, tmp_path: Path) -> None:
    labels = write_csv(
        tmp_path / "labels.csv", ["file", "label"], [["normal/n0.png", "a"], ["normal/nope.png", "b"]]
    )
    with pytest.raises(InputError, match="does not exist") as e:
        index_source(class_folder, IndexOptions(labels=labels))
    assert e.value.path == str(class_folder / "normal" / "nope.png")
    m = index_source(class_folder, IndexOptions(labels=labels, on_error="skip"))
    assert len(m) == 1 and m.skipped[0]["path"] == "normal/nope.png"


def test_labels_csv_mixing_label_types(class_folder: Path, tmp_path: Path) -> None:
    labels = write_csv(
        tmp_path / "labels.csv", ["file", "label"], [["normal/n0.png", "0"], ["normal/n1.png", "x"]]
    )
    with pytest.raises(InputError, match="labels mix numbers and text") as e:
        index_source(class_folder, IndexOptions(labels=labels))
    assert e.value.path == str(labels)


def test_masks_beside_images_are_paired_not_listed(mask_folder: Path) -> None:
    m = index_source(mask_folder)
    rows = _by_path(m)
    assert sorted(rows) == ["patA/patA_1.png", "patA/patA_2.png", "patB/patB_1.png", "patB/patB_2.png"]
    assert rows["patB/patB_1.png"]["mask"] == "patB/patB_1_mask.png"
    assert {r["patient_id"] for r in m.rows} == {"patA", "patB"}
    assert {r["label"] for r in m.rows} == {""}  # masks present: patient folders are not classes


def test_orphan_mask_fails_or_is_skipped(mask_folder: Path) -> None:
    (mask_folder / "patA" / "patA_2.png").unlink()
    with pytest.raises(InputError, match="mask has no image") as e:
        index_source(mask_folder)
    assert e.value.path == str(mask_folder / "patA" / "patA_2_mask.png")
    m = index_source(mask_folder, IndexOptions(on_error="skip"))
    assert len(m) == 3 and m.skipped[0]["reason"] == "mask has no image beside it"


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=f"no images found in {tmp_path / 'empty'}"):
        index_source(tmp_path / "empty")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("scan.gif", b"GIF89a" + bytes(20), "unsupported file type"),
        ("broken.png", b"\x00\x01garbage", "content is not"),
        ("empty.png", b"", "file is empty"),
    ],
)
def test_unsupported_or_broken_files(class_folder: Path, name: str, content: bytes, reason: str) -> None:
    (class_folder / "normal" / name).write_bytes(content)
    with pytest.raises(InputError, match=reason) as e:
        index_source(class_folder)
    assert e.value.path == str(class_folder / "normal" / name)
    m = index_source(class_folder, IndexOptions(on_error="skip"))
    assert len(m) == 5
    assert m.skipped[0]["path"] == str(class_folder / "normal" / name) and reason in m.skipped[0]["reason"]


def test_npz_rows(small_npz: Path) -> None:
    m = index_source(small_npz, IndexOptions(label_names=["normal", "pneumonia"]))
    assert len(m) == 11
    first = {"path": "tinymnist.npz#train/0", "label": "normal", "mask": "", "split": "train"}
    assert m.rows[0] == {**first, "patient_id": "train/0"}
    assert m.rows[-1]["path"] == "tinymnist.npz#test/2" and m.rows[-1]["label"] == "normal"
    assert [r["split"] for r in m.rows].count("val") == 2
    assert index_source(small_npz).rows[1]["label"] == "1"  # no names: integer codes


def test_nifti_volume_gives_one_row_per_kept_slice(nifti_volume: Path) -> None:
    every = index_source(nifti_volume)
    assert [r["slice_index"] for r in every.rows] == ["0", "1", "2", "3", "4"]
    kept = index_source(nifti_volume, IndexOptions(min_foreground=0.1))
    assert [r["slice_index"] for r in kept.rows] == ["1", "2", "3"]
    assert {(r["path"], r["axis"], r["patient_id"]) for r in kept.rows} == {("case7.nii.gz", "2", "case7")}
    assert {r["volume"] for r in every.rows} == {"case7.nii.gz"}
    other_axis = index_source(nifti_volume, IndexOptions(axis=0))
    assert len(other_axis) == 12


def _lgg_like(tmp_path: Path) -> Path:
    root = tmp_path / "lgg"
    rows = []
    for i, tumour in enumerate((0, 1, 1)):
        write_png(root / "case" / f"c_{i}.png", gradient(seed=i))
        write_png(root / "case" / f"c_{i}_mask.png", np.full((16, 16), 255 * tumour, np.uint8))
        rows.append(["case", "P1", i, f"case/c_{i}.png", f"case/c_{i}_mask.png", tumour, 256 * tumour, "md5"])
    header = ["case_folder", "patient", "slice", "image", "mask", "tumour", "mask_pixels", "source_tif_md5"]
    write_csv(root / "manifest.csv", header, rows)
    return root


def test_lgg_layout_is_recognised_in_its_folder(tmp_path: Path) -> None:
    root = _lgg_like(tmp_path)
    m = index_source(root)
    assert m.source == root / "manifest.csv"
    r = m.rows[1]
    assert (r["path"], r["label"], r["mask"], r["patient_id"]) == (
        "case/c_1.png",
        "tumour",
        "case/c_1_mask.png",
        "P1",
    )
    assert r["slice"] == "1" and r["case_folder"] == "case"  # source metadata kept
    assert m.label_names() == ["no_tumour", "tumour"]


def test_any_csv_with_column_options(tmp_path: Path) -> None:
    root = _lgg_like(tmp_path)
    cols = Columns(path="image", label="tumour", mask="mask", patient="case_folder")
    m = index_source(root / "manifest.csv", IndexOptions(columns=cols))
    assert m.rows[0]["patient_id"] == "case" and m.rows[0]["label"] == "no_tumour"
    m2 = index_source(root / "manifest.csv", IndexOptions(columns=Columns(path="image", label="slice")))
    assert [r["label"] for r in m2.rows] == ["0", "1", "2"] and m2.rows[0]["mask"] == ""
    with pytest.raises(ConfigError, match="no column 'nope'"):
        index_source(root / "manifest.csv", IndexOptions(columns=Columns(path="nope")))
    other = write_csv(tmp_path / "t.csv", ["a", "b"], [["x", "y"]])
    with pytest.raises(ConfigError, match="--path-col"):
        index_source(other)


def test_written_manifest_reads_back(mask_folder: Path, tmp_path: Path) -> None:
    m = index_source(mask_folder)
    again = read_manifest(write_manifest(m, tmp_path / "out" / "m.csv"))
    assert [again.resolve(r["mask"]).file for r in again.rows if r["mask"]] == [
        mask_folder / r["mask"] for r in m.rows if r["mask"]
    ]


def test_dicom_tree_single_and_multi_frame(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    write_dicom(root / "pat1" / "study" / "one.dcm", np.full((6, 6), 50))
    write_dicom(
        root / "pat1" / "study" / "multi", np.stack([np.full((6, 6), 10 * (k + 1)) for k in range(3)])
    )
    m = index_source(root)
    multi = [("pat1/study/multi", str(k)) for k in range(3)]
    assert [(r["path"], r.get("frame", "")) for r in m.rows] == [*multi, ("pat1/study/one.dcm", "")]
    assert {r["patient_id"] for r in m.rows} == {"pat1"} and {r["label"] for r in m.rows} == {""}
    store = prepare(write_manifest(m, root / "m.csv"), tmp_path / "s", prepare_config(normalize="none"))
    assert [float(x.max()) for x in store.images] == [10.0, 20.0, 30.0, 50.0]


def test_volumes_sharing_a_file_name_are_named_by_their_path(tmp_path: Path) -> None:
    for patient in ("p1", "p2"):
        shutil.copy(NIBABEL_DATA / "anatomical.nii", _mkdir(tmp_path / patient) / "T1.nii")
    m = index_source(tmp_path)
    assert {(r["volume"], r["patient_id"]) for r in m.rows} == {("p1/T1.nii", "p1"), ("p2/T1.nii", "p2")}
    assert len(m) == 2 * 25  # 25 axial slices each


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_lgg_rows_are_slices_of_their_case_volume(lgg_dir: Path) -> None:
    m = index_source(lgg_dir)
    case = "TCGA_CS_4941_19960909"
    rows = [r for r in m.rows if r["volume"] == case]
    vol, _ = read_lgg_patient(lgg_dir / case)
    assert sorted(int(r["slice_index"]) for r in rows) == list(range(vol.shape[0]))
    for r in rows[::7]:  # slice_index indexes read_lgg_patient's volume (FLAIR = channel 1)
        assert np.array_equal(vol.data[int(r["slice_index"])], read_raster(lgg_dir / r["path"]).array[1])
    assert len({r["volume"] for r in m.rows}) == 28
    assign_splits(m, seed=1)
    splits_of: dict[str, set[str]] = {}
    for r in m.rows:
        splits_of.setdefault(r["volume"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())  # a volume never straddles two splits


def test_dicom_series_folder_is_one_volume_and_unrelated_files_stay_files(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    shutil.copytree(CT5N, root / "patA" / "CT5N")
    for cr in CR:  # one radiograph per patient folder, each its own series
        shutil.copytree(cr, root / "xrays", dirs_exist_ok=True)
    m = index_source(root)
    series = [r for r in m.rows if r.get("volume")]
    assert [(r["path"], r["volume"], r["slice_index"], r["patient_id"]) for r in series] == [
        ("patA/CT5N", "CT5N", str(k), "patA") for k in range(5)
    ]
    assert sorted(r["path"] for r in m.rows if not r.get("volume")) == [
        "xrays/6154",
        "xrays/6247",
        "xrays/6278",
    ]
    store = prepare(write_manifest(m, tmp_path / "m.csv"), tmp_path / "s", prepare_config(normalize="none"))
    lps = read_dicom_series(CT5N).reoriented("LPS").data
    for i, r in enumerate(store.records["slice_index"][:5]):
        np.testing.assert_array_equal(store.images[i, 0], lps[int(r)])


def test_a_series_over_a_folder_and_its_sub_folder_is_one_volume(tmp_path: Path) -> None:
    """The rule detect follows too (vaedx.io.series_folder): the series folder's tree, read once."""
    files = sorted(CT5N.iterdir())
    for i, f in enumerate(files):
        dest = tmp_path / "dicom" / "patA" / "CT5N" / ("more" if i >= 3 else "")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest / f.name)
    shutil.copytree(CR[0], tmp_path / "dicom" / "patB" / "CR1")  # one radiograph: a file, not a volume
    m = index_source(tmp_path / "dicom")
    assert sorted((r["path"], r.get("volume", ""), r.get("slice_index", "")) for r in m.rows) == [
        *[("patA/CT5N", "CT5N", str(k)) for k in range(5)],
        ("patB/CR1/6154", "", ""),
    ]


def test_a_series_zip_is_one_volume(tmp_path: Path) -> None:
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(CT5N.iterdir()):
            z.write(f, f"CT5N/{f.name}")
    m = index_source(archive, IndexOptions(min_foreground=0.5))
    assert {(r["path"], r["volume"], r["patient_id"]) for r in m.rows} == {("ct.zip", "ct.zip", "ct")}
    assert 0 < len(m) <= 5 and read_manifest(write_manifest(m, tmp_path / "m.csv")).rows == m.rows


def _split_tree(lgg_dir: Path, root: Path, names: tuple[str, ...] = ("train", "test")) -> Path:
    """data/<split>/<class>/*.png from real LGG slices (odd slice numbers called 'tumour' here)."""
    cases = sorted(p for p in lgg_dir.iterdir() if p.is_dir() and p.name.startswith("TCGA"))[:3]
    for split, group in zip(names, (cases[:2], cases[2:]), strict=False):
        for case in group:
            for f in sorted(case.glob("*.png"))[:8]:
                if f.stem.endswith("_mask"):
                    continue
                label = "tumour" if int(f.stem.rsplit("_", 1)[1]) % 2 else "normal"
                (root / split / label).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, root / split / label / f.name)
    return root


def test_split_folders_give_splits_and_class_folders_labels(lgg_dir: Path, tmp_path: Path) -> None:
    """data/{train,test}/{normal,tumour}/: the split from the first folder, the label from the second,
    never a patient called 'train' or a label called 'test'."""
    root = _split_tree(lgg_dir, tmp_path / "data", ("Training", "test"))
    m = index_source(root)
    assert {r["split"] for r in m.rows} == {"train", "test"}
    assert {r["label"] for r in m.rows} == {"normal", "tumour"}
    assert not {r["patient_id"] for r in m.rows} & {"Training", "test", "train"}
    for r in m.rows:
        assert (root / r["path"]).is_file()
        assert r["path"].split("/")[1] == r["label"]


def test_split_folders_mixed_with_other_folders_are_refused(lgg_dir: Path, tmp_path: Path) -> None:
    root = _split_tree(lgg_dir, tmp_path / "data", ("train", "extra"))
    with pytest.raises(InputError, match=r"mixes split folders \(train\) with other folders \(extra\)"):
        index_source(root)

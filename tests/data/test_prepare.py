from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import yaml

from synth_data import gradient, write_csv, write_png
from vaedx.data.index import IndexOptions
from vaedx.data.manifest import Manifest, write_manifest
from vaedx.data.prepare import apply_batch, prepare, prepare_config
from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore
from vaedx.data.volume_prep import prepare_volume
from vaedx.errors import ConfigError, InputError
from vaedx.io import read_dicom, read_dicom_series, read_lgg_patient, read_nifti_volume
from vaedx.io.slice_stack import LGG_SEQUENCES

ANATOMICAL = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
CT5N = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "98892001" / "CT5N"
LGG_CASES = ("TCGA_CS_4941_19960909", "TCGA_CS_5393_19990606")


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(),
        PreprocessConfig(normalize="minmax", size=(12, 20)),
        PreprocessConfig(normalize="zscore", grey=True),
        PreprocessConfig(normalize="fixed", channels=[1], size=8, keep_aspect=False),
        PreprocessConfig(normalize="none", channels=[2, 0]),
        PreprocessConfig(foreground_mask=True, size=10, pad_value=0.5),
    ],
)
def test_apply_batch_matches_apply_image_by_image(cfg: PreprocessConfig) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((5, 3, 14, 18)) * 255).astype(np.float32)
    x[2] = 7.0  # a constant image: normalisation must not divide by zero
    masks = (rng.random((5, 14, 18)) > 0.7).astype(np.uint8)
    got, got_masks = apply_batch(x, cfg, masks)
    for i in range(len(x)):
        want, want_mask = apply(x[i], cfg, masks[i])
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got_masks[i], want_mask)


def _manifest_of(folder: Path, tmp_path: Path, **kw) -> Path:
    """Index ``folder`` and write the manifest inside it, so manifest paths are relative to ``folder``."""
    return write_manifest(index_source(folder, IndexOptions(**kw)), folder / "m.csv")


def test_prepare_folder_with_masks(mask_folder: Path, tmp_path: Path) -> None:
    csv_path = _manifest_of(mask_folder, tmp_path)
    store = prepare(csv_path, tmp_path / "store", prepare_config(size=16, channels=[1]))
    assert store.images.shape == (4, 1, 16, 16) and store.masks.shape == (4, 1, 16, 16)
    assert store.images.min() >= 0 and store.images.max() <= 1
    nonempty = {p: bool(m.any()) for p, m in zip(store.paths, store.masks, strict=True)}
    assert nonempty == {
        "patA/patA_1.png": True,
        "patA/patA_2.png": False,
        "patB/patB_1.png": True,
        "patB/patB_2.png": False,
    }
    assert store.masks[0, 0, 4:10, 4:10].all()  # 8:20 of 32 -> 4:10 of 16
    assert store.records["mask"][0] == "patA/patA_1_mask.png"
    assert set(store.records["split"]) <= {"train", "val", "test"}  # blank splits assigned by patient
    meta = json.loads((tmp_path / "store" / "store.json").read_text())
    assert meta["preprocess"]["channels"] == [1] and meta["splits_assigned"] == 4
    saved = yaml.safe_load((tmp_path / "store" / "preprocess.yaml").read_text())
    assert PreprocessConfig.model_validate(saved) == store.preprocess
    assert not (tmp_path / ".store.partial").exists()


def test_labels_become_codes_in_name_order(class_folder: Path, tmp_path: Path) -> None:
    store = prepare(_manifest_of(class_folder, tmp_path), tmp_path / "s", prepare_config())
    assert store.label_names == ["normal", "pneumonia"]
    codes = dict(zip(store.paths, store.labels.tolist(), strict=True))
    assert codes["normal/n2.png"] == 0 and codes["pneumonia/p0.png"] == 1
    assert store.image_shape == (1, 16, 16)


def test_mask_of_another_size_names_both_files(mask_folder: Path, tmp_path: Path) -> None:
    csv_path = _manifest_of(mask_folder, tmp_path)
    bad_mask = write_png(mask_folder / "patB" / "patB_2_mask.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(InputError) as e:
        prepare(csv_path, tmp_path / "store", prepare_config(size=16))
    assert e.value.path == str(bad_mask)
    assert "patB_2.png" in e.value.problem and "20x20" in e.value.problem and "32x32" in e.value.problem
    assert not (tmp_path / "store").exists() and not (tmp_path / ".store.partial").exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:60]), None),  # truncated PNG
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50)), None),  # right magic, corrupt body
    ],
)
def test_bad_files_fail_naming_the_file_or_are_skipped_and_recorded(
    class_folder: Path, tmp_path: Path, damage, reason
) -> None:
    csv_path = _manifest_of(class_folder, tmp_path)
    bad = class_folder / "normal" / "n1.png"
    damage(bad)
    with pytest.raises(InputError, match=reason) as e:
        prepare(csv_path, tmp_path / "store", prepare_config())
    assert e.value.path == str(bad)
    store = prepare(csv_path, tmp_path / "store", prepare_config(), on_error="skip")
    assert len(store) == 4 and "normal/n1.png" not in store.paths
    skipped = json.loads((tmp_path / "store" / "store.json").read_text())["skipped"]
    assert [s["path"] for s in skipped] == ["normal/n1.png"] and skipped[0]["reason"]


def test_missing_file_is_skipped_and_recorded(class_folder: Path, tmp_path: Path) -> None:
    csv_path = _manifest_of(class_folder, tmp_path)
    (class_folder / "pneumonia" / "p0.png").unlink()
    with pytest.raises(InputError, match="does not exist"):
        prepare(csv_path, tmp_path / "store", prepare_config())
    store = prepare(csv_path, tmp_path / "store", prepare_config(), on_error="skip")
    assert store.meta["skipped"] == [{"path": "pneumonia/p0.png", "reason": "image file does not exist"}]


def test_mixed_sizes_need_a_common_size(class_folder: Path, tmp_path: Path) -> None:
    write_png(class_folder / "normal" / "z_big.png", gradient(24, 20))
    csv_path = _manifest_of(class_folder, tmp_path)
    with pytest.raises(InputError, match="give --size") as e:
        prepare(csv_path, tmp_path / "store", prepare_config())
    assert e.value.path == str(class_folder / "normal" / "z_big.png")
    assert prepare(csv_path, tmp_path / "store", prepare_config(size=16)).image_shape == (1, 16, 16)


def test_nifti_slices_are_the_right_ones(nifti_volume: Path, tmp_path: Path) -> None:
    m = index_source(nifti_volume, IndexOptions(min_foreground=0.1))
    csv_path = write_manifest(m, tmp_path / "m.csv")
    store = prepare(csv_path, tmp_path / "store", prepare_config(normalize="none"))
    assert store.image_shape[0] == 1 and len(store) == 3
    assert [float(im.max()) for im in store.images] == [2.0, 3.0, 4.0]  # slice k holds k + 1
    assert store.records["slice_index"] == ["1", "2", "3"]


def test_nifti_mask_volume_follows_its_slices(nifti_volume: Path, tmp_path: Path) -> None:
    import nibabel as nib

    vol = np.asarray(nib.load(nifti_volume).dataobj)
    mask = (vol == 3).astype(np.uint8)  # lesion on slice 2 only
    nib.save(nib.Nifti1Image(mask, np.eye(4)), nifti_volume.parent / "case7_mask.nii.gz")
    m = index_source(nifti_volume.parent)
    assert {r["mask"] for r in m.rows} == {"case7_mask.nii.gz"} and len(m) == 5
    store = prepare(write_manifest(m, tmp_path / "m.csv"), tmp_path / "store", prepare_config())
    assert [bool(x.any()) for x in store.masks] == [False, False, True, False, False]


def test_npz_directly_and_through_a_manifest_agree(small_npz: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    direct = prepare(small_npz, tmp_path / "a", prepare_config(size=16), progress=lambda *c: calls.append(c))
    assert direct.images.shape == (11, 1, 16, 16)
    assert calls == [(6, 11), (8, 11), (11, 11)]  # images written so far, after each split's chunk
    assert direct.counts() == {"train": {"0": 3, "1": 3}, "val": {"0": 1, "1": 1}, "test": {"0": 2, "1": 1}}
    assert direct.paths[6] == "tinymnist.npz#val/0"
    csv_path = write_manifest(index_source(small_npz), tmp_path / "m.csv")
    via = prepare(csv_path, tmp_path / "b", prepare_config(size=16))
    np.testing.assert_array_equal(np.asarray(direct.images), np.asarray(via.images))
    np.testing.assert_array_equal(direct.labels, via.labels)
    named = prepare(small_npz, tmp_path / "c", prepare_config(), label_names=["normal", "pneumonia"])
    assert named.label_names == ["normal", "pneumonia"] and named.counts()["test"] == {
        "normal": 2,
        "pneumonia": 1,
    }


def test_config_from_yaml_with_cli_overrides(tmp_path: Path) -> None:
    cfg_file = tmp_path / "pre.yaml"
    cfg_file.write_text("size: 64\nnormalize: minmax\nchannels: [1]\n")
    cfg = prepare_config(cfg_file, size=32, grey=None)
    assert cfg.size == (32, 32) and cfg.normalize == "minmax" and cfg.channels == [1]
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({"preprocess": {"clip_percentiles": [1, 99]}}))
    assert prepare_config(nested).clip_percentiles == (1.0, 99.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("normalise: minmax\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: normalise: Extra inputs"):
        prepare_config(bad)
    with pytest.raises(ConfigError, match="clip_percentiles"):
        prepare_config(clip_percentiles=[50, 10])


def test_output_folder_rules(class_folder: Path, tmp_path: Path) -> None:
    csv_path = _manifest_of(class_folder, tmp_path)
    out = tmp_path / "store"
    prepare(csv_path, out, prepare_config())
    (out / "model.safetensors").write_text("kept")
    again = prepare(csv_path, out, prepare_config(size=8))  # re-prepare replaces the store, keeps other files
    assert again.image_shape == (1, 8, 8) and (out / "model.safetensors").read_text() == "kept"
    assert TensorStore.open(out).image_shape == (1, 8, 8)
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a vaedx store"):
        prepare(csv_path, other, prepare_config())


def test_manifest_with_labels_csv_and_explicit_names(class_folder: Path, tmp_path: Path) -> None:
    labels = write_csv(
        tmp_path / "labels.csv", ["file", "label"], [["normal/n0.png", "1"], ["pneumonia/p1.png", "0"]]
    )
    csv_path = _manifest_of(class_folder, tmp_path, labels=labels)
    store = prepare(csv_path, tmp_path / "s", prepare_config(), label_names=["healthy", "sick"])
    assert store.label_names == ["healthy", "sick"]
    assert dict(zip(store.paths, store.labels.tolist(), strict=True)) == {
        "normal/n0.png": 1,
        "pneumonia/p1.png": 0,
    }


@pytest.fixture(scope="module")
def lgg_two(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of two real LGG patients (slices of their case volumes)."""
    m = index_source(lgg_dir)
    rows = [r for r in m.rows if r["volume"] in LGG_CASES]
    return write_manifest(Manifest(rows, m.root, m.source), tmp_path_factory.mktemp("lgg") / "m.csv")


def _rows_of(store: TensorStore, volume: str) -> list[tuple[int, int]]:
    """(store row, slice_index) of one volume."""
    pairs = zip(store.records["volume"], store.records["slice_index"], strict=True)
    return [(i, int(k)) for i, (v, k) in enumerate(pairs) if v == volume]


def test_lgg_volume_scope_equals_the_volume_route(lgg_two: Path, lgg_dir: Path, tmp_path: Path) -> None:
    cfg = prepare_config(size=64, channels=[1], normalize_scope="volume")
    calls: list[tuple[int, int]] = []
    store = prepare(lgg_two, tmp_path / "s", cfg, progress=lambda *c: calls.append(c))
    assert len(calls) == len(LGG_CASES) and calls[-1] == (len(store), len(store))  # one step per volume
    assert store.meta["volumes"][LGG_CASES[0]]["spacing_assumed"] is True
    for case in LGG_CASES:
        vol, mask = read_lgg_patient(lgg_dir / case)
        want = prepare_volume(vol, cfg, mask)
        rows = _rows_of(store, case)
        assert len(rows) == vol.shape[0]
        for i, k in rows:
            np.testing.assert_allclose(store.images[i], want.slices[k], atol=1e-6)
            np.testing.assert_array_equal(store.masks[i, 0], want.masks[k])
    per_slice = prepare(lgg_two, tmp_path / "p", prepare_config(size=64, channels=[1]))
    assert not np.allclose(np.asarray(per_slice.images), np.asarray(store.images), atol=0.02)


def test_lgg_three_channels_are_normalised_channel_by_channel(
    lgg_two: Path, lgg_dir: Path, tmp_path: Path
) -> None:
    store = prepare(lgg_two, tmp_path / "s", prepare_config(size=32, normalize_scope="volume"))
    assert store.image_shape == (3, 32, 32)
    rows = _rows_of(store, LGG_CASES[1])
    for c, sequence in enumerate(LGG_SEQUENCES):
        vol, _ = read_lgg_patient(lgg_dir / LGG_CASES[1], sequence=sequence)
        want = prepare_volume(vol, PreprocessConfig(size=32, normalize_scope="volume"))
        for i, k in rows[::5]:
            np.testing.assert_allclose(store.images[i, c], want.slices[k, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="needs one channel: choose it with --channels"):
        prepare(lgg_two, tmp_path / "b", prepare_config(normalize_scope="volume", brain_extraction="deepbet"))


def test_skull_stripping_of_2d_images_is_refused_not_guessed(tmp_path: Path) -> None:
    for i in range(3):
        write_png(tmp_path / f"{i}.png", gradient(16, 16, seed=i))
    csv = write_csv(tmp_path / "m.csv", ["path", "label"], [[f"{i}.png", "normal"] for i in range(3)])
    with pytest.raises(ConfigError, match=r"needs volumes, and 3 of 3 rows are 2-D images") as e:
        prepare(csv, tmp_path / "s", prepare_config(brain_extraction="deepbet"))
    assert "\n" not in str(e.value) and "--brain-extraction none" in str(e.value)
    assert not (tmp_path / "s" / "store.json").exists()


def test_lgg_context_slices_stack_each_slice_with_its_neighbours(
    lgg_two: Path, lgg_dir: Path, tmp_path: Path
) -> None:
    cfg = prepare_config(size=32, channels=[1], normalize_scope="volume", context_slices=1)
    store = prepare(lgg_two, tmp_path / "s", cfg)
    assert store.image_shape == (3, 32, 32) and store.preprocess.context_slices == 1
    assert TensorStore.open(store.root).preprocess == cfg  # every later command reads the same config
    flat_cfg = prepare_config(size=32, channels=[1], normalize_scope="volume")
    flat = prepare(lgg_two, tmp_path / "flat", flat_cfg)
    x, centre = np.asarray(store.images), np.asarray(flat.images)
    for case in LGG_CASES:
        rows = _rows_of(store, case)
        assert [k for _, k in rows] == list(range(len(rows))) == [k for _, k in _rows_of(flat, case)]
        assert len(rows) == read_lgg_patient(lgg_dir / case)[0].shape[0]
        order = [i for i, _ in rows]
        mid = len(order) // 2
        assert x[order[mid], 1].std() > 0.1 and not np.array_equal(x[order[mid], 1], x[order[mid + 1], 1])
        np.testing.assert_array_equal(x[order, 1], centre[[i for i, _ in _rows_of(flat, case)], 0])
        for a, b in zip(order, order[1:], strict=False):
            np.testing.assert_array_equal(x[a, 1], x[b, 0])  # slice k is the centre of row k ...
            np.testing.assert_array_equal(x[a, 2], x[b, 1])  # ... and the side channels of rows k -+ 1
        np.testing.assert_array_equal(x[order[0], 0], x[order[0], 1])  # no slice above the first: repeated
        np.testing.assert_array_equal(store.masks[order], flat.masks[[i for i, _ in _rows_of(flat, case)]])
    m = index_source(lgg_dir)
    inner = [r for r in m.rows if r["volume"] == LGG_CASES[1] and 10 <= int(r["slice_index"]) <= 14]
    inner_csv = write_manifest(Manifest(inner, m.root, m.source), tmp_path / "in.csv")
    ends = prepare(inner_csv, tmp_path / "e", cfg)
    e = np.asarray(ends.images)  # brain on the end slices, so a repeat is not zeros equal to zeros
    assert e[0, 1].std() > 0.1 and e[-1, 1].std() > 0.1 and not np.array_equal(e[0, 1], e[0, 2])
    np.testing.assert_array_equal(e[0, 0], e[0, 1])
    np.testing.assert_array_equal(e[-1, 2], e[-1, 1])
    with pytest.raises(ConfigError, match="images have 3: choose one with --channels"):
        prepare(lgg_two, tmp_path / "rgb", prepare_config(size=32, context_slices=1))
    gappy = [r for r in m.rows if r["volume"] == LGG_CASES[0] and r["slice_index"] != "5"]
    with pytest.raises(InputError, match="lacks the slice after 4, so neighbouring slices are unknown"):
        prepare(write_manifest(Manifest(gappy, m.root, m.source), tmp_path / "gap.csv"), tmp_path / "g", cfg)


def test_nifti_slices_agree_between_the_2d_and_the_volume_route(tmp_path: Path) -> None:
    shutil.copy(ANATOMICAL, tmp_path / "anat.nii")
    csv_path = write_manifest(index_source(tmp_path / "anat.nii"), tmp_path / "m.csv")
    lps = read_nifti_volume(ANATOMICAL).reoriented("LPS").data
    flat = prepare(csv_path, tmp_path / "flat", prepare_config(normalize="none"))
    for i, k in _rows_of(flat, "anat.nii"):
        np.testing.assert_array_equal(flat.images[i, 0], lps[k])  # the 2-D reader gives the model's planes
    cfg = prepare_config(size=48, normalize_scope="volume", target_spacing=[1.5, 1.5])
    store = prepare(csv_path, tmp_path / "vol", cfg)
    want = prepare_volume(read_nifti_volume(ANATOMICAL), cfg)
    for i, k in _rows_of(store, "anat.nii"):
        np.testing.assert_allclose(store.images[i], want.slices[k], atol=1e-6)
    assert store.meta["volumes"]["anat.nii"]["spacing"] == [2.0, 2.0, 2.0]
    direct = prepare(tmp_path / "anat.nii", tmp_path / "direct", cfg)  # a volume file is indexed first
    np.testing.assert_array_equal(np.asarray(direct.images), np.asarray(store.images))
    with pytest.raises(ConfigError, match="train on one channel"):  # not skipped: no file is at fault
        prepare(csv_path, tmp_path / "m", cfg.model_copy(update={"channels": [0, 1, 2]}), on_error="skip")
    coronal = write_manifest(index_source(tmp_path / "anat.nii", IndexOptions(axis=1)), tmp_path / "c.csv")
    with pytest.raises(ConfigError, match="index the volume with --axis 2"):
        prepare(coronal, tmp_path / "c", cfg)


def test_dicom_series_volume_scope_and_window(tmp_path: Path) -> None:
    shutil.copytree(CT5N, tmp_path / "data" / "CT5N")
    csv_path = write_manifest(index_source(tmp_path / "data"), tmp_path / "m.csv")
    cfg = prepare_config(normalize_scope="volume", size=16)
    store = prepare(csv_path, tmp_path / "s", cfg)
    want = prepare_volume(read_dicom_series(CT5N), cfg)
    np.testing.assert_allclose(np.asarray(store.images), want.slices, atol=1e-6)
    windowed = prepare(
        csv_path, tmp_path / "w", prepare_config(normalize="none"), read_options={"window": "brain"}
    )
    for i, f in enumerate(
        sorted(CT5N.iterdir(), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    ):
        [one] = read_dicom(f, window="brain")  # the same window as the 2-D reader applies
        np.testing.assert_allclose(windowed.images[i], one.array, atol=1e-6)
    with pytest.raises(ConfigError, match="--window auto"):
        prepare(csv_path, tmp_path / "a", cfg, read_options={"window": "auto"})


def test_a_broken_volume_is_skipped_as_a_whole(tmp_path: Path) -> None:
    for name in ("good.nii", "bad.nii"):
        shutil.copy(ANATOMICAL, tmp_path / name)
    csv_path = write_manifest(index_source(tmp_path), tmp_path / "m.csv")
    (tmp_path / "bad.nii").write_bytes((tmp_path / "bad.nii").read_bytes()[:5000])
    cfg = prepare_config(normalize_scope="volume")
    with pytest.raises(InputError, match="truncated or corrupt"):
        prepare(csv_path, tmp_path / "s", cfg)
    store = prepare(csv_path, tmp_path / "s", cfg, on_error="skip")
    assert set(store.records["volume"]) == {"good.nii"} and len(store) == 25
    assert len(store.meta["skipped"]) == 25 and {s["path"] for s in store.meta["skipped"]} == {"bad.nii"}


def test_rows_without_a_volume_are_volumes_of_one_image(class_folder: Path, tmp_path: Path) -> None:
    store = prepare(
        _manifest_of(class_folder, tmp_path), tmp_path / "s", prepare_config(normalize_scope="volume")
    )
    assert len(store) == 5 and store.meta["volumes"] == {}
    assert store.meta["notes"] == [
        "rows without a volume column: each image is normalised as a volume of its own"
    ]


def test_images_larger_than_128_px_default_to_128_px_unless_a_size_is_given(
    lgg_two: Path, lgg_dir: Path, tmp_path: Path
) -> None:
    """Real LGG FLAIR volumes (256 x 256 slices): no size gives 128 px and says so in the store; a given
    size wins; the same slices without a volume (2-D images) get the same default, named as images."""
    store = prepare(lgg_two, tmp_path / "d", prepare_config(channels=[1], normalize_scope="volume"))
    assert store.image_shape == (1, 128, 128)
    assert store.meta["size_default"]["size"] == 128 and store.meta["size_default"]["source"] == [256, 256]
    assert store.meta["size_default"]["what"] == "slices of volumes"
    assert store.masks is not None and store.masks.shape[-2:] == (128, 128)
    sized = prepare(lgg_two, tmp_path / "s", prepare_config(size=64, channels=[1]))
    assert sized.image_shape == (1, 64, 64) and "size_default" not in sized.meta
    m = index_source(lgg_dir)
    flat = [{k: v for k, v in r.items() if k not in ("volume", "slice_index")} for r in m.rows[:4]]
    flat_csv = write_manifest(Manifest(flat, m.root, m.source), tmp_path / "flat.csv")
    flat_store = prepare(flat_csv, tmp_path / "f", prepare_config(channels=[1]))
    assert flat_store.image_shape == (1, 128, 128) and flat_store.meta["size_default"]["what"] == "images"
    assert flat_store.masks is not None and flat_store.masks.shape[-2:] == (128, 128)


def test_images_of_128_px_or_less_keep_their_size(class_folder: Path, tmp_path: Path) -> None:
    """The default never enlarges: small 2-D images keep their size and the store records no default."""
    store = prepare(class_folder, tmp_path / "p", prepare_config())
    assert store.image_shape[1:] == (16, 16) and "size_default" not in store.meta

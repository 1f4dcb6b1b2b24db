"""MVTec-AD layout (real LGG FLAIR slices and masks laid out as train/good, test/<defect>, ground_truth):
recognised by index, val carved from train only, masks from ground_truth, prepared into a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from byo_data import lay_out_mvtec
from vaedx.cli import main
from vaedx.data.index import IndexOptions
from vaedx.data.manifest import read_manifest
from vaedx.data.mvtec import is_mvtec
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore
from vaedx.errors import InputError

pytestmark = pytest.mark.realdata


@pytest.fixture
def mvtec(lgg_dir: Path, tmp_path: Path) -> Path:
    return lay_out_mvtec(lgg_dir, tmp_path / "brain")


def test_rows_labels_splits_and_masks(mvtec: Path) -> None:
    assert is_mvtec(mvtec)
    m = index_source(mvtec, IndexOptions(fractions=(0.7, 0.15, 0.15), seed=0))
    by_split: dict[str, list[dict[str, str]]] = {}
    for r in m.rows:
        by_split.setdefault(r["split"], []).append(r)
    assert len(by_split["train"]) + len(by_split["val"]) == 12 and len(by_split["val"]) == 2
    assert all(r["path"].startswith("train/good/") for r in by_split["train"] + by_split["val"])
    test = by_split["test"]
    assert sorted(r["label"] for r in test) == ["defect"] * 6 + ["good"] * 3
    for r in test:
        if r["label"] == "defect":
            assert r["defect_type"] == "tumour"
            assert r["mask"] == f"ground_truth/tumour/{Path(r['path']).stem}_mask.png"
        else:
            assert r["mask"] == "" and r["defect_type"] == "good"
    assert len({r["patient_id"] for r in m.rows}) == len(m.rows)


def test_fractions_decide_the_val_share_and_seed_which(mvtec: Path) -> None:
    none = index_source(mvtec, IndexOptions(fractions=(1.0, 0.0, 0.0)))
    assert "val" not in {r["split"] for r in none.rows}
    val = [
        {r["path"] for r in index_source(mvtec, IndexOptions(seed=s)).rows if r["split"] == "val"}
        for s in range(4)
    ]
    assert len(set(map(frozenset, val))) > 1


def test_index_and_prepare_through_the_cli(mvtec: Path, tmp_path: Path) -> None:
    manifest, store = tmp_path / "m.csv", tmp_path / "store"
    assert main(["data", "index", str(mvtec), "--out", str(manifest)]) == 0
    assert (
        main(["data", "prepare", str(manifest), "--out", str(store), "--size", "32", "--channels", "1"]) == 0
    )
    st = TensorStore.open(store)
    assert st.image_shape == (1, 32, 32) and sorted(st.label_names) == ["defect", "good"]
    assert st.masks is not None
    defect = st.labels == st.label_names.index("defect")
    assert (st.masks[defect].reshape(defect.sum(), -1).max(1) == 1).all()  # each tumour slice has its mask
    assert st.masks[~defect].sum() == 0
    assert set(st.splits[defect]) == {"test"}
    assert len(read_manifest(manifest)) == len(st) == 21


def test_missing_mask_fails_or_is_skipped(mvtec: Path) -> None:
    mask = sorted((mvtec / "ground_truth" / "tumour").iterdir())[0]
    mask.unlink()
    with pytest.raises(InputError, match="defect image has no mask ground_truth/tumour/"):
        index_source(mvtec)
    m = index_source(mvtec, IndexOptions(on_error="skip"))
    assert len(m.rows) == 20 and "no mask" in m.skipped[0]["reason"]


def test_orphan_mask_is_a_problem(mvtec: Path) -> None:
    extra = mvtec / "ground_truth" / "tumour" / "nothing_mask.png"
    extra.symlink_to(sorted((mvtec / "ground_truth" / "tumour").iterdir())[0].resolve())
    with pytest.raises(InputError, match="mask has no image in test/"):
        index_source(mvtec)


def test_layouts_not_understood_are_refused_in_one_line(mvtec: Path, tmp_path: Path) -> None:
    root = tmp_path / "mvtec_ad"
    root.mkdir()
    (root / "brain").symlink_to(mvtec, target_is_directory=True)
    (root / "brain2").symlink_to(mvtec, target_is_directory=True)
    with pytest.raises(InputError, match="holds 2 MVTec-AD categories .*index one category folder at a time"):
        index_source(root)
    (mvtec / "extras").mkdir()
    with pytest.raises(InputError, match="only train/, test/ and ground_truth/, not extras"):
        index_source(mvtec)
    (mvtec / "extras").rmdir()
    (mvtec / "train" / "good").rename(mvtec / "train" / "ok")
    with pytest.raises(InputError, match="needs train/good/ and test/ beside ground_truth/"):
        index_source(mvtec)


def test_defect_folders_in_train_are_refused(mvtec: Path) -> None:
    src = next((mvtec / "test" / "tumour").iterdir()).resolve()
    (mvtec / "train" / "tumour").mkdir()
    (mvtec / "train" / "tumour" / "x.png").symlink_to(src)
    with pytest.raises(InputError, match="train/ holds only good/, not tumour"):
        index_source(mvtec)

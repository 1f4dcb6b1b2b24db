"""The data layer on the two real data sets: counts must equal those documented in SOURCES.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vaedx.data.inspect import summarize
from vaedx.data.manifest import Manifest, read_manifest, write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.data.splits import assign_splits, patient_overlap

pytestmark = pytest.mark.realdata

PNEUMONIA_COUNTS = {
    "train": {"normal": 1214, "pneumonia": 3494},
    "val": {"normal": 135, "pneumonia": 389},
    "test": {"normal": 234, "pneumonia": 390},
}


def test_pneumonia_index_and_prepare(pneumonia_npz: Path, tmp_path: Path) -> None:
    m = index_source(pneumonia_npz)
    assert len(m) == 5856
    counts = Counter((r["split"], r["label"]) for r in m.rows)
    assert {s: {lab: counts[(s, lab)] for lab in c} for s, c in PNEUMONIA_COUNTS.items()} == PNEUMONIA_COUNTS
    store = prepare(pneumonia_npz, tmp_path / "store", prepare_config())
    assert store.images.shape == (5856, 1, 28, 28)
    assert store.counts() == PNEUMONIA_COUNTS
    dup = summarize(store.root)["duplicates"]  # SOURCES.md: 18 + 3 duplicate pairs, 8 images in train and val
    assert (dup["within_splits"], dup["across_splits"], dup["split_pairs"]) == (21, 8, ["train/val"])
    via_manifest = prepare(write_manifest(m, tmp_path / "m.csv"), tmp_path / "s2", prepare_config())
    np.testing.assert_array_equal(np.asarray(store.images[:50]), np.asarray(via_manifest.images[:50]))


def test_lgg_index_split_and_prepare_a_subset(lgg_dir: Path, tmp_path: Path) -> None:
    m = index_source(lgg_dir)
    assert len(m) == 971
    assert Counter(r["label"] for r in m.rows) == {"tumour": 375, "no_tumour": 596}
    patients = [r["patient_id"] for r in m.rows]
    assert len(set(patients)) == 28
    assign_splits(m, seed=0)
    splits = [r["split"] for r in m.rows]
    assert patient_overlap(splits, patients) == {}
    per_split = Counter(s for s, _ in {(s, p) for s, p in zip(splits, patients, strict=True)})
    assert per_split["train"] >= 15 and per_split["val"] >= 2 and per_split["test"] >= 2
    for split in ("train", "val", "test"):
        assert {r["label"] for r in m.rows if r["split"] == split} == {"tumour", "no_tumour"}

    keep = sorted(set(patients))[:4]
    subset = Manifest([r for r in m.rows if r["patient_id"] in keep], m.root, m.source)
    csv_path = write_manifest(subset, tmp_path / "lgg4.csv")
    store = prepare(csv_path, tmp_path / "store", prepare_config(size=64, channels=[1]))
    assert store.images.shape == (len(subset), 1, 64, 64) and store.masks is not None
    tumour = store.labels == store.label_names.index("tumour")
    nonempty = store.masks.reshape(len(store), -1).any(axis=1)
    np.testing.assert_array_equal(nonempty, tumour)  # every lesion survives the 4x downsampling, none appear
    assert read_manifest(csv_path).rows[0]["source_tif_md5"]  # source metadata travels with the rows

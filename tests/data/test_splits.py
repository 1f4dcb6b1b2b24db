from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vaedx.data.manifest import Manifest
from vaedx.data.splits import assign_splits, parse_fractions, patient_overlap
from vaedx.errors import ConfigError, InputError


def _manifest(n_patients: int = 60, seed: int = 1) -> Manifest:
    """Patients with 1-12 slices each; about a third of slices are 'tumour', clustered in some patients."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        p_tumour = rng.choice([0.0, 0.3, 0.7])
        for s in range(int(rng.integers(1, 13))):
            label = "tumour" if rng.random() < p_tumour else "normal"
            rows.append({"path": f"p{p}/{s}.png", "label": label, "split": "", "patient_id": f"p{p}"})
    return Manifest(rows=rows, root=Path("."))


def _splits(m: Manifest) -> list[str]:
    return [r["split"] for r in m.rows]


def test_patient_level_stratified_and_reproducible() -> None:
    m = _manifest()
    added = assign_splits(m, seed=0)
    assert sum(added.values()) == len(m) and set(_splits(m)) == {"train", "val", "test"}
    assert patient_overlap(_splits(m), [r["patient_id"] for r in m.rows]) == {}
    counts = Counter((r["split"], r["label"]) for r in m.rows)
    for label in ("normal", "tumour"):
        total = sum(v for (_, lab), v in counts.items() if lab == label)
        for split, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(counts[(split, label)] / total - frac) < 0.08, (split, label, counts)

    same = _manifest()
    assign_splits(same, seed=0)
    assert _splits(same) == _splits(m)
    other = _manifest()
    assign_splits(other, seed=1)
    assert _splits(other) != _splits(m)


def test_existing_splits_are_kept_and_their_patients_follow() -> None:
    m = _manifest()
    m.rows[0]["split"] = "test"  # first slice of patient p0
    fixed = {i: r["split"] for i, r in enumerate(m.rows) if r["split"]}
    assign_splits(m, seed=3)
    assert all(m.rows[i]["split"] == s for i, s in fixed.items())
    assert {r["split"] for r in m.rows if r["patient_id"] == "p0"} == {"test"}
    assert patient_overlap(_splits(m), [r["patient_id"] for r in m.rows]) == {}


def test_custom_fractions_and_zero_fraction() -> None:
    m = _manifest()
    assign_splits(m, fractions=(0.8, 0.0, 0.2), seed=0)
    c = Counter(_splits(m))
    assert c["val"] == 0 and abs(c["train"] / len(m) - 0.8) < 0.05


def test_a_patient_already_in_two_splits_is_refused() -> None:
    m = _manifest()
    m.rows += [
        {"path": "x/1.png", "label": "normal", "split": "train", "patient_id": "x"},
        {"path": "x/2.png", "label": "normal", "split": "test", "patient_id": "x"},
    ]
    with pytest.raises(InputError, match="patient 'x' already appears in splits 'train' and 'test'"):
        assign_splits(m)


@pytest.mark.parametrize("bad", ["0.7,0.3", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"])
def test_bad_fractions(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_fractions(bad)

"""benchmarks/brain_mri.py: the patient folds on their own, then a --quick run on real LGG FLAIR volumes.

Nothing here is timed: the checks are that every patient is a test patient exactly once, validation
patients never overlap test patients, and the written results have the figures the tables are built from.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("brain_mri", ROOT / "benchmarks" / "brain_mri.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["brain_mri"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.mark.parametrize(("n", "k", "n_val"), [(28, 7, 3), (28, 5, 3), (6, 2, 1), (10, 10, 1)])
def test_folds_test_every_patient_once_and_keep_val_and_train_apart(bench, n, k, n_val):
    patients = [f"P{i:02d}" for i in range(n)]
    folds = bench.make_folds(patients + patients[:3], k, n_val, seed=1)  # repeated ids count once
    assert len(folds) == k
    tested = [p for f in folds for p in f["test"]]
    assert sorted(tested) == patients  # each patient tested exactly once
    assert {len(f["test"]) for f in folds} <= {n // k, -(-n // k)}
    for f in folds:
        assert len(f["val"]) == n_val and f["train"]
        assert sorted(f["test"] + f["val"] + f["train"]) == patients  # a partition of all patients
    assert bench.make_folds(patients, k, n_val, seed=1) == folds  # seeded
    if k < n:
        assert bench.make_folds(patients, k, n_val, seed=2) != folds


@pytest.mark.parametrize(("n", "k", "n_val"), [(5, 1, 1), (5, 6, 1), (6, 2, 3), (6, 3, 0)])
def test_folds_refuse_splits_that_leave_no_test_val_or_train_patient(bench, n, k, n_val):
    with pytest.raises(ValueError, match="patients|folds"):
        bench.make_folds([f"P{i}" for i in range(n)], k, n_val)


def test_paired_difference_is_the_mean_per_patient_gain_with_a_bootstrap_interval(bench):
    d = bench.paired([0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.7], n_boot=200)
    assert d["diff"] == pytest.approx(0.1) and d["low"] == pytest.approx(0.1) and d["p_not_better"] == 0.0
    worse = bench.paired([0.1, 0.2, 0.1], [0.3, 0.4, 0.2], n_boot=200)
    assert worse["diff"] < 0 and worse["high"] < 0 and worse["p_not_better"] == 1.0


@pytest.mark.realdata
def test_quick_run_tests_every_patient_once_and_reports_every_method(bench, lgg_dir, tmp_path, capsys):
    out = tmp_path / "bm"
    result = bench.main(["--quick", "--out", str(out), "--threads", "1"])
    methods = list(bench.METHODS)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["summary"] == json.loads(json.dumps(result["summary"]))
    folds = on_disk["folds"]
    assert sorted(folds) == ["0", "1"]
    tested = [p for f in folds.values() for p in f["patients"]["test"]]
    assert len(tested) == len(set(tested)) == 6  # 6 patients, each tested exactly once
    for f in folds.values():
        assert not set(f["patients"]["val"]) & set(f["patients"]["test"])
        assert set(f["methods"]) == set(methods)
        for m in f["methods"].values():  # every method scored every test patient of the fold
            assert len(m["per_patient"]) == len(f["patients"]["test"])
            assert m["threshold"] is not None
    summary = on_disk["summary"]
    assert list(summary) == methods
    for name, row in summary.items():
        assert row["n_patients"] == 6 and 0 <= row["dice_mean"] <= 1 and 0 <= row["voxel_auprc"] <= 1
        assert 0 < row["dice_best_optimistic"] <= 1
        assert 0 <= row["slice_auroc"] <= 1 and row["lesions_found"] <= row["lesions"] > 0
        if name != "intensity":
            d = row["dice_vs_intensity"]
            assert d["n"] == len(row["per_patient_dice"]) and d["low"] <= d["diff"] <= d["high"]
    from vaedx.anomaly.selection import CANDIDATE_SCORERS as bench_scorers

    for name in ("vae_defaults", "preset_brain_mri"):  # detect chose scorer and post-processing on val
        chosen = summary[name]["selections"]
        assert len(chosen) == 2 and {c["metric"] for c in chosen} == {"pixel_auprc"}
        assert all(c["n_images"] > 0 and c["scorer"] in bench_scorers for c in chosen)
    md = (out / "results.md").read_text()
    assert "⌈Dice⌉ (optimistic)" in md and all(f"| {m} |" in md for m in methods)
    assert "Chosen by `vaedx detect` on each fold's validation patients" in md
    assert "wall time" in capsys.readouterr().out

    # a rerun skips finished folds; --versus adds paired differences between two methods
    again = bench.main(
        ["--quick", "--out", str(out), "--threads", "1", "--versus", "vae_defaults:pca_defaults"]
    )
    assert capsys.readouterr().out.count("done before, skipped") == 2
    pair = again["pairs"]["vae_defaults − pca_defaults"]
    assert pair["dice"]["n"] == len(summary["vae_defaults"]["per_patient_dice"])
    assert pair["dice"]["low"] <= pair["dice"]["diff"] <= pair["dice"]["high"]
    assert "| vae_defaults − pca_defaults |" in (out / "results.md").read_text()
    with pytest.raises(SystemExit):  # a pair must name methods that were run
        bench.main(["--quick", "--out", str(out), "--versus", "vae_defaults:nothing"])

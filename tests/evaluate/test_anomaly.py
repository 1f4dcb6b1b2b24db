"""evaluate_anomaly on a hand-made prediction folder whose AUROC is known exactly, and the volume figures
on a store of real LGG slices with volume columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from detect_outputs import toy_detect_output as _toy
from vaedx.cli import main
from vaedx.data.store import TensorStore
from vaedx.errors import InputError
from vaedx.evaluate.anomaly import evaluate_anomaly
from volume_fixtures import STORE_CASES, lgg_volume_detect_output


def test_known_auroc_pixel_metrics_and_cis(tmp_path: Path) -> None:
    pred, store = _toy(tmp_path)
    res = evaluate_anomaly(pred, store, n_boot=200)
    m = res["scorers"]["toy"]["metrics"]
    assert m["auroc"].point == pytest.approx(14 / 16)
    assert m["auroc"].low <= 14 / 16 <= m["auroc"].high
    assert (
        m["pixel_auroc"] == 1.0 and m["dice_val_threshold"].point == 1.0 and m["best_dice_optimistic"] == 1.0
    )
    assert res["n_abnormal"] == 4


def test_one_class_is_na_with_reason_and_never_nan(tmp_path: Path, capsys) -> None:
    pred, store = _toy(tmp_path)
    lines = (pred / "scores.csv").read_text().splitlines()
    (pred / "scores.csv").write_text("\n".join(lines[:5]) + "\n")  # normals only
    np.save(pred / "maps" / "toy.npy", np.load(pred / "maps" / "toy.npy")[:4])
    assert main(["evaluate", "anomaly", "--pred", str(pred), "--store", str(store), "--n-boot", "50"]) == 0
    text = (pred / "evaluation.json").read_text()
    assert "NaN" not in text and "only one class present" in text
    assert "n/a" in capsys.readouterr().out


def test_maps_of_wrong_size_name_the_file(tmp_path: Path) -> None:
    pred, store = _toy(tmp_path)
    np.save(pred / "maps" / "toy.npy", np.zeros((8, 5, 5), np.float32))
    with pytest.raises(InputError, match=r"toy\.npy.*shape \(8, 5, 5\)"):
        evaluate_anomaly(pred, store, n_boot=10)


def test_pixel_cis_under_new_keys_in_json_and_table(tmp_path: Path) -> None:
    from rich.console import Console

    from vaedx.evaluate.anomaly import table_rows
    from vaedx.evaluate.tables import format_table

    pred, store = _toy(tmp_path)
    maps = np.load(pred / "maps" / "toy.npy")
    maps[4, 0, 0] = 0.0  # one lesion pixel scores like the normal ones: pixel AUROC drops below 1
    np.save(pred / "maps" / "toy.npy", maps)
    res = evaluate_anomaly(pred, store, n_boot=300)
    m = res["scorers"]["toy"]["metrics"]
    assert isinstance(m["pixel_auroc"], float) and isinstance(m["pixel_auprc"], float)  # unchanged keys
    ci = m["pixel_auroc_ci"]
    assert ci.point == m["pixel_auroc"] and ci.low < ci.point <= ci.high == 1.0
    assert res["bootstrap"]["unit"] == "image"
    assert table_rows(res)[0]["pixel AUROC"] is ci and "pixel_auroc_ci" not in table_rows(res)[0]
    assert main(["evaluate", "anomaly", "--pred", str(pred), "--store", str(store), "--n-boot", "50"]) == 0
    saved = json.loads((pred / "evaluation.json").read_text())["scorers"]["toy"]["metrics"]
    assert set(saved["pixel_auprc_ci"]) >= {"point", "low", "high"} and saved["pixel_auroc"] == ci.point
    wide = Console(width=400, record=True)
    wide.print(format_table(table_rows(res)))
    assert f"{ci.point:.3f} [{ci.low:.2f}, {ci.high:.2f}]" in wide.export_text()


def test_pixel_ci_resamples_patients(tmp_path: Path) -> None:
    # two patients, each with 2 normal + 2 abnormal images; only patient a's lesions are found
    pred, store = _toy(tmp_path, patients=["a", "a", "b", "b", "a", "a", "b", "b"])
    maps = np.load(pred / "maps" / "toy.npy")
    maps[6:, 0, 0] = 0.0
    np.save(pred / "maps" / "toy.npy", maps)
    res = evaluate_anomaly(pred, store, n_boot=400)
    ci = res["scorers"]["toy"]["metrics"]["pixel_auprc_ci"]
    assert res["bootstrap"]["unit"] == "patient"
    # {a,b}: 2 found lesion pixels (precision 1, recall 1/2), then 4 lesions among 128 tied pixels
    assert ci.point == pytest.approx(0.5 + 0.5 * 4 / 128)
    # resamples {a,a} -> AP 1; {b,b} -> nothing found, AP = lesion share 2/64
    assert ci.high == 1.0 and ci.low == pytest.approx(2 / 64)


# ------------------------------------------------------------------ volume metrics on real LGG slices
@pytest.mark.realdata
def test_volume_metrics_from_a_store_with_volume_columns(tmp_path: Path, lgg_dir: Path, capsys) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir)
    res = evaluate_anomaly(pred, store, n_boot=200)
    assert res["volumes"]["n_volumes"] == 3 and res["volumes"]["n_slices"] == 60
    assert res["volumes"]["n_absent_slices"] == 0 and "absent" in res["volumes"]["note"]
    entry = res["scorers"]["flair"]
    vol = entry["volume"]
    assert [r["volume"] for r in vol["per_volume"]] == sorted(STORE_CASES)
    assert vol["threshold"] == 0.45 and vol["bootstrap"]["unit"] == "volume"
    # same voxels as the pixel figure, which sklearn computes exactly
    assert vol["voxel_auprc"]["point"] == pytest.approx(entry["metrics"]["pixel_auprc"], abs=1e-4)
    for ci in (vol["dice_mean"], vol["voxel_auprc"], vol["lesions"]["sensitivity"]):
        assert ci["low"] <= ci["point"] <= ci["high"]
    assert vol["dice_best_threshold_optimistic"]["dice_mean"] >= vol["dice_mean"]["point"]

    assert main(["evaluate", "anomaly", "--pred", str(pred), "--store", str(store), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "3 volumes from 60 scored slices" in out and "per volume (patient)" in out
    saved = json.loads((pred / "evaluation.json").read_text())
    assert saved["scorers"]["flair"]["volume"]["lesions"]["n"] == vol["lesions"]["n"]
    assert "NaN" not in (pred / "evaluation.json").read_text()


@pytest.mark.realdata
def test_truth_as_maps_scores_one_and_counts_the_real_lesions(tmp_path: Path, lgg_dir: Path) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir, maps_from="truth", threshold=0.5)
    vol = evaluate_anomaly(pred, store, n_boot=50)["scorers"]["flair"]["volume"]
    s = TensorStore.open(store)
    expected = 0
    for case in STORE_CASES:  # rows were written in reverse slice order
        mask = np.asarray(s.masks[:, 0])[np.asarray(s.records["volume"]) == case][::-1]
        expected += ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
    assert vol["dice_mean"]["point"] == 1.0 and vol["lesions"]["n"] == expected
    assert vol["lesions"]["detected"] == expected and vol["lesions"]["false_positive_components"] == 0


@pytest.mark.realdata
def test_unscored_slices_are_absent_and_do_not_count(tmp_path: Path, lgg_dir: Path) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir, maps_from="truth", threshold=0.5)
    lines = (pred / "scores.csv").read_text().splitlines()
    drop = 1 + 10  # the header, then row 10: slice 9 of the first case, inside the volume
    (pred / "scores.csv").write_text("\n".join(lines[:drop] + lines[drop + 1 :]) + "\n")
    np.save(pred / "maps" / "flair.npy", np.delete(np.load(pred / "maps" / "flair.npy"), 10, axis=0))
    res = evaluate_anomaly(pred, store, n_boot=50)
    assert res["volumes"]["n_slices"] == 59 and res["volumes"]["n_absent_slices"] == 1
    row = res["scorers"]["flair"]["volume"]["per_volume"][0]
    assert row["slices"] == 20 and row["voxels"] == 19 * 64 * 64 and row["dice"] == 1.0


@pytest.mark.realdata
def test_no_volume_columns_no_volume_metrics(tmp_path: Path, lgg_dir: Path, capsys) -> None:
    pred, store = lgg_volume_detect_output(tmp_path, lgg_dir, volume_columns=False)
    res = evaluate_anomaly(pred, store, n_boot=20)
    assert "volume" not in res["scorers"]["flair"]
    assert "no volume or slice_index column" in res["volumes"]["absent"]
    assert main(["evaluate", "anomaly", "--pred", str(pred), "--store", str(store), "--n-boot", "20"]) == 0
    assert "no volume metrics: the store records have no volume" in capsys.readouterr().out

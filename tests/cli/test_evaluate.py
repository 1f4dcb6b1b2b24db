"""`vaedx diagnose fit` then `vaedx evaluate diagnosis` through the top-level CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect_outputs import second_scorer_output, toy_detect_output
from progress_spy import bars  # noqa: F401
from vaedx.cli import main


def test_fit_then_evaluate_with_bootstrap_cis(vae, store, tmp_path, capsys) -> None:
    diag = tmp_path / "diag"
    fit = ["diagnose", "fit", "--model", str(vae.path), "--store", str(store.root), "--out", str(diag)]
    assert main([*fit, "--classifiers", "logreg"]) == 0
    args = ["evaluate", "diagnosis", "--diagnosis", str(diag), "--store", str(store.root), "--n-boot", "200"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((diag / "evaluation_test.json").read_text())
    assert result["report"]["n"] == 24
    for name in ("auc", "accuracy", "sensitivity", "specificity", "f1", "ece"):
        point, low, high = result["ci"][name]
        assert 0.0 <= low <= point <= high <= 1.0, name
    assert result["ci"]["auc"][0] > 0.9  # blob vs noise is easy: the pipeline must actually work
    assert result["report"]["confusion_matrix"] is not None and "auc" in printed


def test_evaluate_diagnosis_on_a_missing_folder_is_one_line(tmp_path, capsys) -> None:
    code = main(["evaluate", "diagnosis", "--diagnosis", str(tmp_path / "nope"), "--store", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "nope" in err


def test_evaluate_anomaly_json_holds_the_table_figures(tmp_path, capsys, bars) -> None:  # noqa: F811
    pred, store = toy_detect_output(tmp_path)
    args = ["evaluate", "anomaly", "--pred", str(pred), "--store", str(store), "--n-boot", "50"]
    assert main([*args, "--out", str(tmp_path / "table.json")]) == 0
    table = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # one object, nothing else on stdout
    assert doc["written"] == str(pred / "evaluation.json") and f"wrote {pred}" in captured.err
    assert doc == {"written": doc["written"], **json.loads((pred / "evaluation.json").read_text())}
    auroc = doc["scorers"]["toy"]["metrics"]["auroc"]
    assert auroc["point"] == 14 / 16  # the CI is seeded, so the table run printed the same interval
    assert f"{auroc['point']:.3f}" in table and f"[{auroc['low']:.2f}," in table
    assert bars == [(1, 1), (1, 1)]  # one scorer bootstrapped, in each run
    assert main([*args, "--out", str(tmp_path / "q.json"), "--quiet"]) == 0 and len(bars) == 2


def test_evaluate_diagnosis_json_and_progress(fitted, store, tmp_path, capsys, bars) -> None:  # noqa: F811
    args = ["evaluate", "diagnosis", "--diagnosis", str(fitted), "--store", str(store.root), "--n-boot", "50"]
    assert main([*args, "--out", str(tmp_path / "e.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"]["n"] == 24 and doc["table"][0]["auc"] == doc["ci"]["auc"]
    assert json.loads((tmp_path / "e.json").read_text())["ci"] == doc["ci"]
    assert (24, 24) in bars and bars[-1] == (6, 6)  # 24 test images encoded, then 6 metrics bootstrapped
    del bars[:]
    assert main([*args, "--out", str(tmp_path / "q.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert bars == [] and f"{doc['ci']['auc'][0]:.3f}" in out  # the table shows the JSON's AUC


def test_three_tumour_types_print_per_class_and_confusion_tables(
    cheng_fitted, cheng_store, tmp_path, capsys
) -> None:
    """Real Cheng images (no patient ids: split and intervals by image, optimistic)."""
    out = tmp_path / "e.json"
    args = ["evaluate", "diagnosis", "--diagnosis", str(cheng_fitted), "--store", str(cheng_store.root)]
    assert main([*args, "--n-boot", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [r["class"] for r in result["per_class"]] == ["meningioma", "glioma", "pituitary"]
    assert "per class" in printed and "confusion matrix: count (share of the true class)" in printed
    cm, share = result["report"]["confusion_matrix"], result["report"]["confusion_matrix_normalised"]
    assert f"{cm[0][0]} ({share[0][0]:.2f})" in printed
    assert f"{result['per_class'][2]['auc'][0]:.3f}" in printed


def test_evaluate_compare_json_holds_the_table_figures(tmp_path, capsys, monkeypatch) -> None:
    from rich.console import Console

    monkeypatch.setattr("vaedx.cli.evaluate.console", Console(width=300))  # cells on one line each
    pred, store = toy_detect_output(tmp_path)  # scorer "toy": AUROC 14/16
    perfect = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    noisy = np.random.default_rng(2).uniform(0, 1, (8, 4, 4)).astype(np.float32)
    other = second_scorer_output(pred, tmp_path / "pred2", perfect, noisy)
    args = ["evaluate", "compare", "--a", f"{other}:other", "--b", f"{pred}:toy", "--store", str(store),
            "--n-boot", "100"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "cmp.json"), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is the one JSON object; notes went to stderr
    assert doc["written"] == str(tmp_path / "cmp.json") and "wrote" in captured.err
    (cmp,) = doc["comparisons"]
    assert cmp == json.loads((tmp_path / "cmp.json").read_text())[0]
    assert cmp["differences"]["auroc"]["point"] == pytest.approx(1 - 14 / 16)
    assert cmp["differences"]["dice_val_threshold"] is None and "no pixel threshold" in captured.err
    assert main(args) == 0
    table = " ".join(capsys.readouterr().out.split())
    for name, d in cmp["differences"].items():  # every JSON difference is the table's text for it
        if d is not None:
            cell = f"{d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_not_better']:.3f}"
            assert cell in table, name


@pytest.fixture(scope="module")
def three_class_diagnosis(tmp_path_factory, vae):
    """A diagnosis of three classes (noise, blob, bar) on the same VAE: images the binary store also fits,
    classes it does not."""
    from diag_helpers import make_store
    from vaedx.diagnose.fit import fit_diagnosis

    root = tmp_path_factory.mktemp("three")
    three = make_store(root / "store", {"train": 30, "val": 15, "test": 15}, n_classes=3)
    fit_diagnosis(vae, three, out=root / "diagnosis", candidates=("logreg",), tta="none")
    return root / "diagnosis"


def test_compare_diagnosis_json_holds_the_table_figures(
    fitted, fitted_knn, store, tmp_path, capsys, monkeypatch
):
    from rich.console import Console

    monkeypatch.setattr("vaedx.cli.evaluate.console", Console(width=300))  # cells on one line each
    out = tmp_path / "paired.json"
    args = ["evaluate", "compare-diagnosis", "--a", str(fitted), "--b", str(fitted_knn), "--store",
            str(store.root), "--n-boot", "100", "--threads", "1"]  # fmt: skip
    assert main([*args, "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is the one JSON object; "wrote" went to stderr
    assert doc["written"] == str(out) and f"wrote {out}" in captured.err
    (cmp,) = doc["comparisons"]
    assert cmp == json.loads(out.read_text())[0]
    assert (cmp["a"], cmp["b"], cmp["n_images"], cmp["unit"]) == (str(fitted), str(fitted_knn), 24, "image")
    for name in ("auc", "accuracy"):
        d, va, vb = cmp["differences"][name], cmp["values"]["a"][name], cmp["values"]["b"][name]
        assert d["point"] == pytest.approx(va - vb) and d["low"] <= d["point"] <= d["high"]
    assert main([*args, "--out", str(out)]) == 2  # earlier output is kept unless --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--quiet"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "by image" in table and "diagnosis_knn" in table
    for name, d in cmp["differences"].items():  # every JSON figure is in the table
        cell = f"{d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_not_better']:.3f}"
        assert cell in table and f"{cmp['values']['b'][name]:.3f}" in table, name


def test_compare_diagnosis_refuses_other_classes_in_one_line(fitted, three_class_diagnosis, store, capsys):
    args = ["evaluate", "compare-diagnosis", "--a", str(fitted), "--b", str(three_class_diagnosis),
            "--store", str(store.root), "--n-boot", "10"]  # fmt: skip
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and captured.out == ""
    assert err.startswith(f"error: {three_class_diagnosis}: predicts classes ['normal', 'blob', 'bar']")

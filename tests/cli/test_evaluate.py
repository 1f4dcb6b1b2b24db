"""`vaedx diagnose fit` then `vaedx evaluate diagnosis` through the top-level CLI."""

from __future__ import annotations

import json

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

"""The ``diagnose`` typer sub-app on its own (the lead registers it in vaedx.cli)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from progress_spy import bars  # noqa: F401
from vaedx.cli.diagnose import app
from vaedx.errors import ConfigError, InputError

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_fit(vae, store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "diag"
    args = [
        "fit",
        "--model",
        str(vae.path),
        "--store",
        str(store.root),
        "--out",
        str(out),
        "--classifiers",
        "logreg",
        "--calibration",
        "isotonic",
        "--threshold",
        "sens:0.9",
        "--labelled-fraction",
        "0.5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result, args


def test_fit_writes_a_diagnosis_folder_and_reports(cli_fit):
    out, result, _ = cli_fit
    doc = json.loads((out / "diagnosis.json").read_text())
    assert doc["classifier"] == {"kind": "logreg", "calibration": "isotonic", "file": "diagnosis.skops"}
    assert doc["threshold_rule"] == "sens:0.9" and doc["data"]["n_labelled"] == 20
    assert "chose logreg" in result.output and "optimistic" in result.output


def test_fit_refuses_to_overwrite_and_bad_options(cli_fit, tmp_path):
    _, _, args = cli_fit
    again = runner.invoke(app, args)
    assert isinstance(again.exception, ConfigError) and "--overwrite" in str(again.exception)
    bad = [a if a != "sens:0.9" else "sensitive" for a in args]
    bad[bad.index("--out") + 1] = str(tmp_path / "x")
    assert isinstance(runner.invoke(app, bad).exception, ConfigError)


def test_predict_a_store_split_to_csv(cli_fit, store, tmp_path):
    out, _, _ = cli_fit
    dest = tmp_path / "pred.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            "--diagnosis",
            str(out),
            "--store",
            str(store.root),
            "--split",
            "test",
            "-k",
            "2",
            "--out",
            str(dest),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(dest.open()))
    assert len(rows) == 24 and set(rows[0]) == {
        "image",
        "class",
        "probability",
        "p_normal",
        "p_blob",
        "neighbours",
    }
    assert all(r["class"] in ("normal", "blob") for r in rows) and rows[0]["neighbours"].count("train/") == 2
    p = np.array([[float(r["p_normal"]), float(r["p_blob"])] for r in rows])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_predict_image_files(cli_fit, store, tmp_path):
    out, _, _ = cli_fit
    files = []
    for i in store.select(split="test")[:3]:
        f = tmp_path / f"case{i}.png"
        Image.fromarray((np.asarray(store.images[i, 0]) * 255).astype(np.uint8)).save(f)
        files.append(str(f))
    result = runner.invoke(app, ["predict", "--diagnosis", str(out), *files])
    assert result.exit_code == 0, result.output
    assert "case" in result.output and "probability" in result.output
    dest = tmp_path / "pred.json"
    assert runner.invoke(app, ["predict", "--diagnosis", str(out), *files, "--out", str(dest)]).exit_code == 0
    preds = json.loads(dest.read_text())
    assert [p["image"] for p in preds] == files and len(preds[0]["neighbours"]) == 5


def test_predict_needs_files_or_a_store(cli_fit, store, tmp_path):
    out, _, _ = cli_fit
    assert isinstance(runner.invoke(app, ["predict", "--diagnosis", str(out)]).exception, ConfigError)
    both = runner.invoke(app, ["predict", "--diagnosis", str(out), "--store", str(store.root), "x.png"])
    assert isinstance(both.exception, ConfigError)
    missing = runner.invoke(app, ["predict", "--diagnosis", str(tmp_path), "--store", str(store.root)])
    assert isinstance(missing.exception, InputError)


def test_predict_attaches_the_anomaly_score_flag_and_heatmap_of_vaedx_detect(
    cli_fit, vae, store, tmp_path, bars  # noqa: F811
):
    import shutil

    from vaedx.anomaly.detect import detect
    from vaedx.anomaly.scoring import read_scores_csv

    out, _, _ = cli_fit
    anomaly_run = shutil.copytree(vae.path.parent, tmp_path / "anomaly_run")  # detect saves thresholds here
    det = detect(anomaly_run, tmp_path / "det", store=store.root, split="test", scorers=["residual"],
                 quiet=True, save_calibration=True)  # fmt: skip
    want, _ = read_scores_csv(det / "scores.csv")
    maps = np.load(det / "maps" / "residual.npy")
    dest, heat = tmp_path / "pred.json", tmp_path / "heat"
    args = ["predict", "--diagnosis", str(out), "--store", str(store.root), "--split", "test", "-k", "0",
            "--anomaly-model", str(anomaly_run), "--heatmaps", str(heat), "--out", str(dest)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(dest.read_text())
    assert len(rows) == len(want) == 24
    assert bars == [(24, 24), (24, 24)]  # 24 images encoded, then the same 24 scored by the anomaly model
    for i, (r, w) in enumerate(zip(rows, want, strict=True)):
        a = r["anomaly"]
        assert a["scorer"] == "residual" and a["score"] == pytest.approx(float(w["residual"]), rel=1e-5)
        assert a["flag"] == (a["score"] > a["threshold"]) == (w["residual_flag"] == "1")
        np.testing.assert_allclose(np.load(a["heatmap"]), maps[i], rtol=1e-5, atol=1e-7)
    csv_dest = tmp_path / "pred.csv"
    assert runner.invoke(app, [*args[:-2], "--out", str(csv_dest), "--overwrite", "--quiet"]).exit_code == 0
    assert len(bars) == 2  # --quiet: neither bar
    assert {"anomaly_score", "anomaly_flag", "heatmap"} <= set(next(csv.DictReader(csv_dest.open())))
    bad = runner.invoke(
        app, ["predict", "--diagnosis", str(out), "--store", str(store.root), "--heatmaps", "h"]
    )
    assert isinstance(bad.exception, ConfigError) and "--anomaly-model" in str(bad.exception)


def test_fit_json_holds_the_printed_figures_and_the_bar_follows_the_encoding(vae, store, tmp_path, bars):  # noqa: F811
    out = tmp_path / "diag"
    args = ["fit", "--model", str(vae.path), "--store", str(store.root), "--out", str(out),
            "--classifiers", "logreg", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout is the one JSON object; the sentences went to stderr
    saved = json.loads((out / "diagnosis.json").read_text())
    assert doc["chosen"]["classifier"] == "logreg" and doc["n_labelled"] == saved["data"]["n_labelled"] == 40
    assert doc["threshold"] == pytest.approx(saved["threshold"])
    said = " ".join(result.stderr.split())
    assert f"validation AUC {doc['validation']['auc']:.3f}, threshold {doc['threshold']:.3f}" in said
    assert bars == [(40, 64), (64, 64)]  # 40 training then 24 validation images encoded
    quiet = runner.invoke(app, [*args, "--overwrite", "--quiet"])
    assert quiet.exit_code == 0 and len(bars) == 2  # --quiet: no bar, whatever the terminal
    assert json.loads(quiet.stdout)["threshold"] == pytest.approx(doc["threshold"])


def test_predict_json_instead_of_the_table(cli_fit, store, bars):  # noqa: F811
    out, _, _ = cli_fit
    args = ["predict", "--diagnosis", str(out), "--store", str(store.root), "--split", "test", "-k", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    assert len(rows) == 24 and all(r["class"] in ("normal", "blob") for r in rows)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 and len(r["neighbours"]) == 1 for r in rows)
    assert bars == [(24, 24)]
    table = runner.invoke(app, [*args, "--quiet"], env={"COLUMNS": "300"})
    assert table.exit_code == 0 and bars == [(24, 24)]
    for r in rows[:3]:  # the table shows the same class and probability for the same image
        line = next(x for x in table.stdout.splitlines() if f"{r['image']} " in x)
        assert r["class"] in line and f"{r['probability']:.3f}" in line


def test_finetune_tracker_mlflow_logs_the_recipe_and_history(vae, store, tmp_path, monkeypatch, bars):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from vaedx.training.tracker import local_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    out = tmp_path / "tuned"
    args = ["finetune", "--model", str(vae.path), "--store", str(store.root), "--out", str(out),
            "--recipe", "fixed", "--epochs", "2", "--min-steps", "0", "--threads", "1",
            "--device", "cpu"]  # fmt: skip
    refused = runner.invoke(app, [*args, "--tracker", "wandb"])
    assert isinstance(refused.exception, ConfigError) and "--tracker must be one of" in str(refused.exception)
    assert not out.exists()  # refused before any training
    result = runner.invoke(app, [*args, "--tracker", "mlflow", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    history = json.loads((out / "finetune.json").read_text())["history"]
    assert doc["epochs"] == len(history) == 2 and doc["n_labelled"] == 40
    client = MlflowClient(local_uri(tmp_path / "mlruns")[0])
    (run,) = client.search_runs([client.get_experiment_by_name("vaedx").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tuned"
    assert run.data.params["finetune.n_labelled"] == "40" and run.data.params["finetune.epochs"] == "2"
    logged = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in logged] == [1, 2]
    assert [m.value for m in logged] == pytest.approx([h["loss"] for h in history], rel=1e-6)
    names = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/finetune.json", "run/best"} <= names
    assert bars == [(1, 2), (2, 2)]  # 40 labelled images are one batch: one optimiser step per epoch


def test_finetune_init_random_is_the_cnn_baseline_and_a_bad_init_is_refused(vae, store, tmp_path):  # noqa: F811
    """--init random trains the same network from random weights (recorded in the run), --init vae starts
    from the VAE's encoder, and an unknown value stops before any training."""
    common = ["finetune", "--model", str(vae.path), "--store", str(store.root), "--recipe", "fixed",
              "--epochs", "1", "--min-steps", "0", "--threads", "1", "--json"]  # fmt: skip
    docs = {}
    for init in ("random", "vae"):
        result = runner.invoke(app, [*common, "--out", str(tmp_path / init), "--init", init])
        assert result.exit_code == 0, result.output
        docs[init] = json.loads(result.stdout)
    assert docs["random"]["init"] == "random" and docs["vae"]["init"] == "vae"
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "bad"), "--init", "imagenet"])
    assert isinstance(bad.exception, ConfigError) and "init must be one of" in str(bad.exception)
    assert not (tmp_path / "bad").exists()

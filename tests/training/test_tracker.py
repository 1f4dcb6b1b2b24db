"""--tracker: MLflow (real, local store) gets the settings, one metric row per epoch and the run folder;
nothing is tracked unless asked; a missing package is one line naming the extra."""

from __future__ import annotations

import builtins
import csv
import sys

import pytest
from typer.testing import CliRunner

from train_helpers import FAST
from vaedx.cli import app
from vaedx.errors import ConfigError
from vaedx.training.engine import run_training
from vaedx.training.tracker import local_uri, open_tracker


def _client(root):
    from mlflow.tracking import MlflowClient

    return MlflowClient(local_uri(root)[0])


def _only_run(client):
    exp = client.get_experiment_by_name("vaedx")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_mlflow_store_holds_params_metrics_per_epoch_and_the_run_folder(tiny_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    out = tmp_path / "run"
    run_training(None, {**FAST, "store": tiny_store, "out": out, "epochs": 2}, quiet=True, tracker="mlflow")
    client = _client(tmp_path / "mlruns")
    run = _only_run(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["epochs"] == "2" and params["model.kind"] == "vae" and params["store"] == str(tiny_store)
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-5)
    names = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/metrics.csv", "run/config.json", "run/best", "run/last"} <= names
    assert not (out / "tensorboard").exists()


def test_the_cli_option_and_the_tracking_uri_are_honoured(tiny_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store_root = tmp_path / "elsewhere"
    store_root.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_uri(store_root)[0])
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "vaedx")
    args = ["train", "--store", str(tiny_store), "--out", str(tmp_path / "r"), "--epochs", "1", "--quiet"]
    args += ["--widths", "8,16", "--latent-dim", "4", "--batch-size", "32", "--tracker", "mlflow"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # the user's store, not the default
    run = _only_run(_client(store_root))
    assert run.data.params["epochs"] == "1"
    assert [m.step for m in _client(store_root).get_metric_history(run.info.run_id, "train_loss")] == [1]


def test_no_tracking_by_default_and_bad_names(tiny_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_training(None, {**FAST, "store": tiny_store, "out": tmp_path / "r", "epochs": 1}, quiet=True)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "r" / "tensorboard").exists()
    with pytest.raises(ConfigError, match="--tracker must be one of none, tensorboard, mlflow, not 'wandb'"):
        run_training(None, {**FAST, "store": tiny_store, "out": tmp_path / "x"}, quiet=True, tracker="wandb")
    assert not (tmp_path / "x").exists()  # refused before any work


MISSING = [("mlflow", "mlflow", "mlflow"), ("tensorboard", "torch.utils.tensorboard", "tensorboard")]


@pytest.mark.parametrize(("kind", "module", "extra"), MISSING)
def test_a_missing_package_names_the_extra(kind, module, extra, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_such(name, *a, **k):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(builtins, "__import__", no_such)
    with pytest.raises(ConfigError, match=rf"pip install 'vaedx\[{extra}\]'$"):
        open_tracker(kind, tmp_path, {})

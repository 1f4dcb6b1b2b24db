"""``vaedx diagnose study``: the label-fraction table from the command line, on the tiny shared store."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from progress_spy import bars  # noqa: F401
from vaedx.cli.diagnose import app
from vaedx.errors import ConfigError

runner = CliRunner()


def test_study_command_prints_one_table_and_writes_rows(store, vae, tmp_path):
    out = tmp_path / "study"
    args = ["study", "--store", str(store.root), "--out", str(out), "--fractions", "0.5,1", "--seeds", "0,1"]
    args += ["--model", str(vae.path), "--epochs", "1", "--latent-dim", "4", "--widths", "8,16"]
    args += ["--batch-size", "16", "--threads", "1"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})  # wide enough for unwrapped cells
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "study.json").read_text())
    assert len(doc["rows"]) == 4 * 2 * 2 and len(doc["summary"]) == 4 * 2
    assert {r["method"] for r in doc["rows"]} == {"vae_latent_lr", "m2", "vae_finetune", "supervised_cnn"}
    assert doc["recipe"] == {"augment": True, "schedule": "onecycle", "lr": 2e-3, "epochs": 1, "min_steps": 0}
    with open(out / "study.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 16
    assert "label-fraction study" in result.output and result.output.count("±") >= 8 * 4
    for s in doc["summary"]:  # every summary row is printed with its mean ± sd text
        assert s["auc"] in result.output
    again = runner.invoke(app, args)
    assert isinstance(again.exception, ConfigError) and "--overwrite" in str(again.exception)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--fractions", "0.1,abc"], "--fractions must be a comma-separated list"),
        (["--methods", "svm"], "unknown method"),
        (["--fractions", "0.01"], "labelled subset has only class"),
    ],
)
def test_study_command_bad_input(store, tmp_path, extra, match):
    args = ["study", "--store", str(store.root), "--out", str(tmp_path / "s"), "--seeds", "0", *extra]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError) and match in str(result.exception)


def test_study_json_and_one_step_per_run(store, vae, tmp_path, bars):  # noqa: F811
    args = ["study", "--store", str(store.root), "--out", str(tmp_path / "s"), "--fractions", "0.5,1",
            "--seeds", "0", "--methods", "vae_latent_lr", "--model", str(vae.path),
            "--threads", "1"]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # no table on stdout, only the object
    saved = json.loads((tmp_path / "s" / "study.json").read_text())
    assert doc["summary"] == saved["summary"] and len(doc["summary"]) == 2
    assert "vae_latent_lr 0.5 seed 0: test AUC" in result.stderr
    assert bars == [(None, None)] * 2  # one step per finished run (method x fraction x seed)
    quiet = runner.invoke(app, [*args, "--overwrite", "--quiet"])
    assert quiet.exit_code == 0 and len(bars) == 2 and "seed 0: test AUC" not in quiet.stderr


def test_study_without_a_model_shows_the_vae_epochs_then_the_runs(store, tmp_path, bars):  # noqa: F811
    out = tmp_path / "s"
    args = ["study", "--store", str(store.root), "--out", str(out), "--fractions", "1", "--seeds", "0",
            "--methods", "vae_latent_lr", "--vae-epochs", "2", "--latent-dim", "4", "--widths", "8,16",
            "--threads", "1", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "vae" / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]  # the VAE the bar followed
    assert bars == [(0, 2), (1, 2), (2, 2), (None, None)]  # its two epochs, then the one run


def test_fixmatch_is_a_study_method_with_its_paired_interval_against_the_cnn(store, vae, tmp_path):
    out = tmp_path / "s"
    args = ["study", "--store", str(store.root), "--out", str(out), "--fractions", "0.5", "--seeds", "0,1",
            "--methods", "vae_fixmatch,supervised_cnn", "--model", str(vae.path), "--epochs", "2",
            "--latent-dim", "4", "--widths", "8,16", "--batch-size", "16", "--threads", "1"]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "study.json").read_text())
    (p,) = doc["paired"]
    auc = {(r["method"], r["seed"]): r["auc"] for r in doc["rows"]}
    diffs = [auc[("vae_fixmatch", s)] - auc[("supervised_cnn", s)] for s in (0, 1)]
    assert p["method"] == "vae_fixmatch" and p["baseline"] == "supervised_cnn" and p["n_seeds"] == 2
    assert p["diff_mean"] == pytest.approx(sum(diffs) / 2)
    assert "test AUC minus supervised_cnn" in result.output
    assert f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]" in result.output

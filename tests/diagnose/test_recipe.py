"""The settings search of ``vaedx diagnose finetune --recipe auto`` on a real PneumoniaMNIST subset: it
records every trial, stays inside its budget (counted in trials), reads only training and validation
rows, keeps the better candidate on validation, and ``--recipe fixed`` is the fixed recipe unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vaedx.data.store import TensorStore
from vaedx.diagnose.recipe import RECIPE_FILE, auto_finetune, plan
from vaedx.errors import ConfigError

SUBSET = {"train": 96, "val": 48, "test": 40}  # first images of each official split (about 3:1 imbalanced)
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "num_threads": 1}
QUICK = {"max_epochs": 2, "patience": 1, "min_steps": 0, "batch_size": 32, "num_threads": 1}


@pytest.fixture(scope="module")
def pn(pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TensorStore, Path]:
    """A store of a real PneumoniaMNIST subset and a VAE trained on it for one epoch without labels."""
    import vaedx

    root = tmp_path_factory.mktemp("recipe")
    src = np.load(pneumonia_npz)
    arrays = {}
    for split, n in SUBSET.items():
        arrays[f"{split}_images"] = src[f"{split}_images"][:n]
        arrays[f"{split}_labels"] = src[f"{split}_labels"][:n]
    np.savez(root / "pneumoniamnist.npz", **arrays)
    store = vaedx.prepare(root / "pneumoniamnist.npz", root / "store")
    vaedx.train(root / "store", root / "vae", epochs=1, quiet=True, **FAST)
    return store, root / "vae"


class Spy(np.ndarray):
    """The store's images, recording every row any reader gathers."""

    rows: set[int]

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        first = key[0] if isinstance(key, tuple) else key
        self.rows.update(np.arange(self.shape[0])[first].ravel().tolist())
        return np.asarray(super().__getitem__(key))


def spied(store: TensorStore) -> TensorStore:
    images = np.asarray(store.images).view(Spy)
    images.rows = set()
    return dataclasses.replace(store, images=images)


def test_search_records_its_trials_and_reads_no_test_row(pn, tmp_path):
    store, vae = spied(pn[0]), pn[1]
    space = {"lr": [1e-3, 3e-3], "augment": ["standard", "none"], "class_weight": ["balanced", None]}
    run = auto_finetune(vae, store, tmp_path / "ft", space=space, **QUICK)
    doc = json.loads((tmp_path / "ft" / RECIPE_FILE).read_text())
    trials = doc["trials"]
    assert [t["encoder"] for t in trials] == ["frozen"] + ["finetune"] * 4  # start + one per other value
    assert [(t["lr"], t["augment"]) for t in trials[1:3]] == [(1e-3, "standard"), (3e-3, "standard")]
    assert all(t["status"] == "ok" and 0.5 < t["val_auc"] <= 1 for t in trials), trials
    assert doc["trials_run"] == 5 and doc["budget_minutes"] == 10.0 and doc["seconds_spent"] > 0
    best = max(t["val_auc"] for t in trials)
    assert trials[doc["winner"]]["val_auc"] == best == run.meta["finetune"]["final_val_auc"]
    assert run.meta["finetune"]["recipe"] == "auto"
    assert run.meta["finetune"]["encoder"] == trials[doc["winner"]]["encoder"]
    split = np.asarray(store.splits)
    read = np.array(sorted(store.images.rows))
    assert set(split[read]) == {"train", "val"}  # every train and val row, and not one test row
    assert len(read) == SUBSET["train"] + SUBSET["val"]
    assert doc["data"]["n_train"] == SUBSET["train"] and doc["data"]["n_val"] == SUBSET["val"]
    card = (tmp_path / "ft" / "MODEL_CARD.md").read_text()
    assert "## Recipe" in card and f"{best:.4g}" in card


def test_the_clearly_worse_candidate_loses_on_validation(pn, tmp_path):
    space = {"lr": [10.0, 1e-3], "augment": ["none"]}  # lr 10 wrecks the pretrained encoder
    run = auto_finetune(pn[1], pn[0], tmp_path / "ft", space=space, frozen=False, **QUICK)
    trials = json.loads((tmp_path / "ft" / RECIPE_FILE).read_text())["trials"]
    assert [t["lr"] for t in trials] == [10.0, 1e-3]
    bad, good = trials
    assert bad["val_auc"] is None or bad["val_auc"] < good["val_auc"] - 0.1, trials
    assert run.meta["finetune"]["lr"] == 1e-3 and run.meta["finetune"]["encoder"] == "finetune"


def test_budget_bounds_the_search(pn, tmp_path):
    """A budget that is spent before the first fine-tuning trial: that trial still runs (one step and one
    validation, so a model exists), and every later trial is recorded as skipped, none run."""
    auto_finetune(pn[1], pn[0], tmp_path / "ft", budget_minutes=1e-6, **{**QUICK, "max_epochs": 5})
    doc = json.loads((tmp_path / "ft" / RECIPE_FILE).read_text())
    ran = [t for t in doc["trials"] if t["status"] != "skipped (budget)"]
    assert [t["encoder"] for t in ran] == ["frozen", "finetune"] and doc["trials_run"] == 2
    assert ran[1]["epochs_run"] == 1 and ran[1]["best_epoch"] == 1  # stopped inside the first epoch
    assert len(doc["trials"]) == 1 + len(plan({k: v for k, v in doc["settings"]["space"].items()}))
    assert doc["planned_trials"] == 2


def test_random_init_is_the_same_search_without_the_pretrained_weights(pn, tmp_path):
    """init="random": no frozen candidate, the same fine-tuning trials from weights that are not the VAE's
    (the supervised CNN baseline at the same budget), recorded as such and read by diagnose fit alike."""
    from safetensors.numpy import load_file

    import vaedx

    space = {"lr": [1e-3], "augment": ["none"], "weight_decay": [1e-4], "class_weight": ["balanced"]}
    run = auto_finetune(pn[1], pn[0], tmp_path / "cnn", space=space, init="random", **QUICK)
    tuned = auto_finetune(pn[1], pn[0], tmp_path / "ft", space=space, frozen=False, **QUICK)
    doc = json.loads((tmp_path / "cnn" / RECIPE_FILE).read_text())
    assert [t["encoder"] for t in doc["trials"]] == ["finetune"]
    assert run.meta["finetune"]["init"] == "random" and tuned.meta["finetune"]["init"] == "vae"
    runs = (tmp_path / "cnn", tmp_path / "ft", pn[1])
    a, b, vae = (load_file(p / "best" / "model.safetensors") for p in runs)
    enc = [k for k in vae if k.startswith("encoder") and vae[k].ndim == 4]  # the encoder's conv kernels
    assert enc
    # two epochs of fine-tuning stay close to the VAE's weights; random init starts elsewhere entirely
    moved = {n: [np.abs(w[k] - vae[k]).mean() for k in enc] for n, w in (("cnn", a), ("ft", b))}
    dist = {n: float(np.mean(v)) for n, v in moved.items()}
    assert dist["cnn"] > 5 * dist["ft"], dist
    vaedx.fit_diagnosis(run, pn[0].root, tmp_path / "diag", features=["mu"], classifiers=["logreg"])
    assert (tmp_path / "diag" / "diagnosis.json").exists()
    with pytest.raises(ConfigError, match="init must be one of"):
        auto_finetune(pn[1], pn[0], tmp_path / "bad", init="imagenet")


def test_bad_settings_are_refused(pn, tmp_path):
    with pytest.raises(ConfigError, match="budget must be > 0"):
        auto_finetune(pn[1], pn[0], tmp_path / "a", budget_minutes=0)
    with pytest.raises(ConfigError, match="augment must be one of"):
        auto_finetune(pn[1], pn[0], tmp_path / "b", space={"augment": ["strong"]})
    with pytest.raises(ConfigError, match="unknown recipe setting"):
        auto_finetune(pn[1], pn[0], tmp_path / "c", space={"momentum": [0.9]})


def test_fixed_recipe_is_the_fixed_fine_tuning_unchanged(pn, tmp_path):
    """--recipe fixed gives exactly the weights and history of finetune_encoder with today's defaults."""
    from safetensors.numpy import load_file

    from vaedx.cli.diagnose import app
    from vaedx.diagnose.finetune import finetune_encoder

    store, vae = pn
    finetune_encoder(vae, store.root, tmp_path / "api", epochs=2, min_steps=4, num_threads=1)
    args = ["finetune", "--model", str(vae), "--store", str(store.root), "--out", str(tmp_path / "cli"),
            "--recipe", "fixed", "--epochs", "2", "--min-steps", "4", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    a, b = (load_file(tmp_path / d / "best" / "model.safetensors") for d in ("api", "cli"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    doc = json.loads((tmp_path / "cli" / "finetune.json").read_text())
    assert doc == json.loads((tmp_path / "api" / "finetune.json").read_text())
    assert doc["schedule"] == "onecycle" and doc["lr"] == 2e-3 and "recipe" not in doc
    assert not (tmp_path / "cli" / RECIPE_FILE).exists()
    bad = CliRunner().invoke(app, [*args[:-8], "--recipe", "best"])
    assert isinstance(bad.exception, ConfigError) and "--recipe must be auto or fixed" in str(bad.exception)


def test_auto_is_the_default_of_the_command(pn, tmp_path):
    from vaedx.cli.diagnose import app

    store, vae = pn
    args = ["finetune", "--model", str(vae), "--store", str(store.root), "--out", str(tmp_path / "ft"),
            "--epochs", "1", "--min-steps", "0", "--budget", "0.000001", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trial: frozen encoder" in result.output and "on validation (AUC" in result.output
    doc = json.loads((tmp_path / "ft" / RECIPE_FILE).read_text())
    assert doc["budget_minutes"] == 1e-6 and doc["trials_run"] == 2

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vaedx
from train_helpers import FAST
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError
from vaedx.models import ConvAE, ConvVAE, PCABaseline
from vaedx.runs.loaded import load_model
from vaedx.training.engine import run_training
from vaedx.training.loop import TrainingDivergedError


def _run(store, out, **kw):
    return run_training(None, {**FAST, "store": store, "out": out, **kw}, quiet=True)


def _metrics(out):
    with open(out / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_training_reduces_loss_and_writes_the_run_layout(tiny_store, tmp_path):
    out = _run(tiny_store, tmp_path / "run", epochs=3)
    rows = _metrics(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["val_loss"]) < 0.7 * float(rows[0]["val_loss"])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    for ck in ("last", "best"):
        names = {p.name for p in (out / ck).iterdir()}
        assert names == {"model.safetensors", "config.json", "state.json", "optimizer.safetensors"}
    meta = json.loads((out / "last" / "config.json").read_text())
    assert meta["train"]["model"]["in_channels"] == 1 and meta["train"]["model"]["image_size"] == [16, 16]
    assert meta["label_names"] == ["normal", "abnormal"] and meta["preprocess"]["size"] == [16, 16]
    assert meta["data"]["n_train"] == 36 and meta["data"]["n_val"] == 12
    assert "epoch 3/3" in (out / "train.log").read_text()
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary folders left behind


def test_checkpoint_round_trip_gives_identical_outputs(tiny_store, tmp_path):
    out = _run(tiny_store, tmp_path / "run", epochs=2)
    loaded = vaedx.load_model(out)
    assert loaded.path == out / "best" and isinstance(loaded.model, ConvVAE) and not loaded.model.training
    assert loaded.label_names == ["normal", "abnormal"] and loaded.preprocess.size == (16, 16)
    weights = load_file(out / "best" / "model.safetensors")
    assert all(torch.equal(v, weights[k]) for k, v in loaded.model.state_dict().items())
    x = torch.tensor(TensorStore.open(tiny_store).images[:8])
    again = load_model(out / "best").model
    with torch.no_grad():
        assert torch.equal(loaded.model.reconstruct(x), again.reconstruct(x))
        assert torch.equal(loaded.model(x).x_hat, loaded.model(x).x_hat)


def test_label_filter_trains_only_on_the_chosen_label(tiny_store, tmp_path):
    seen: list[np.ndarray] = []
    run_training(
        None, {**FAST, "store": tiny_store, "out": tmp_path / "r", "epochs": 2, "label_filter": ["normal"]},
        quiet=True, on_batch=lambda epoch, rows: seen.append(rows),
    )  # fmt: skip
    rows = np.concatenate(seen)
    store = TensorStore.open(tiny_store)
    normal_train = store.select(split="train", labels=["normal"])
    assert set(store.labels[rows]) == {0}
    assert len(rows) == 2 * len(normal_train) and set(rows) == set(normal_train)  # every image once per epoch
    meta = json.loads((tmp_path / "r" / "config.json").read_text())["data"]
    assert meta["train_labels"] == {"normal": 18} and meta["val_labels"] == {"normal": 6}


def test_max_images_caps_the_training_set(tiny_store, tmp_path):
    seen: list[np.ndarray] = []
    opts = {**FAST, "store": tiny_store, "out": tmp_path / "r", "epochs": 1, "max_images": 10}
    run_training(None, opts, quiet=True, on_batch=lambda e, rows: seen.append(rows))
    assert len(np.concatenate(seen)) == 10


def test_early_stopping_triggers(tiny_store, tmp_path):
    # a huge min_delta means no epoch after the first counts as an improvement
    out = _run(tiny_store, tmp_path / "r", epochs=10, patience=2, min_delta=1e9)
    state = json.loads((out / "last" / "state.json").read_text())["run"]
    assert state["epoch"] == 3 and state["stopped_early"] and state["best_epoch"] == 1
    assert len(_metrics(out)) == 3
    assert json.loads((out / "best" / "state.json").read_text())["run"]["epoch"] == 1
    card = (out / "MODEL_CARD.md").read_text()
    assert "3 of 10, best 1" in card and "stopped early after epoch 3" in card  # from last/, not best/


@pytest.fixture
def minute_epochs(monkeypatch):
    """Every training epoch takes exactly 60 s on a fake clock, so the budget arithmetic is exact."""
    from vaedx.training import loop

    clock = [0.0]
    original = loop.TorchTrainer._train_epoch

    def slow_epoch(self, epoch):
        row = original(self, epoch)
        clock[0] += 60.0
        return row

    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(loop.TorchTrainer, "_train_epoch", slow_epoch)


def test_time_budget_stops_before_an_epoch_that_would_pass_it(tiny_store, tmp_path, minute_epochs):
    # 60 s epochs, 3.5 minutes: after 3 epochs (180 s) a fourth would end at 240 s > 210 s
    out = _run(tiny_store, tmp_path / "r", epochs=10, budget=3.5)
    state = json.loads((out / "last" / "state.json").read_text())["run"]
    assert state["epoch"] == 3 and state["stopped_by"] == "budget" and not state["stopped_early"]
    assert state["seconds"] == pytest.approx(180.0) and len(_metrics(out)) == 3
    assert "time budget: 3 epochs in 180 s" in (out / "train.log").read_text()
    assert "passed the time budget of 3.5 minutes" in (out / "MODEL_CARD.md").read_text()


def test_time_budget_counts_every_resume(tiny_store, tmp_path, minute_epochs):
    out = _run(tiny_store, tmp_path / "r", epochs=10, budget=2)
    assert json.loads((out / "last" / "state.json").read_text())["run"]["epoch"] == 2
    _run_again = lambda **kw: run_training(  # noqa: E731
        None, {**FAST, "store": tiny_store, "out": out, "epochs": 10, **kw}, resume=True, quiet=True
    )
    _run_again(budget=2)  # the spent budget is remembered: nothing to do
    assert json.loads((out / "last" / "state.json").read_text())["run"]["epoch"] == 2
    _run_again(budget=4)  # a larger budget resumes up to it: 2 more epochs
    state = json.loads((out / "last" / "state.json").read_text())["run"]
    assert state["epoch"] == 4 and state["stopped_by"] == "budget"
    assert state["seconds"] == pytest.approx(240.0)


def test_a_run_that_finishes_its_epochs_says_so(tiny_store, tmp_path, minute_epochs):
    out = _run(tiny_store, tmp_path / "r", epochs=2, budget=60)
    state = json.loads((out / "last" / "state.json").read_text())["run"]
    assert state["epoch"] == 2 and state["stopped_by"] == "epochs"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_store, tmp_path, monkeypatch):
    original = ConvVAE.elbo_terms

    def poisoned(self, x, out):
        terms = original(self, x, out)
        if self.training:
            terms["recon_nll"] = terms["recon_nll"] * float("nan")
        return terms

    out = tmp_path / "r"
    _run(tiny_store, out, epochs=1)
    before = (out / "last" / "model.safetensors").read_bytes()
    monkeypatch.setattr(ConvVAE, "elbo_terms", poisoned)
    with pytest.raises(TrainingDivergedError) as e:
        run_training(None, {**FAST, "store": tiny_store, "out": out, "epochs": 3}, resume=True, quiet=True)
    msg = str(e.value)
    assert "loss became nan at epoch 2 step 1" in msg and "--lr" in msg
    assert str(out / "last") in msg and "(epoch 1)" in msg
    assert (out / "last" / "model.safetensors").read_bytes() == before
    assert json.loads((out / "last" / "state.json").read_text())["run"]["epoch"] == 1
    assert "loss became nan" in (out / "train.log").read_text()


def test_huge_learning_rate_diverges_with_a_clear_message(tiny_store, tmp_path):
    with pytest.raises(TrainingDivergedError, match="try a lower --lr"):
        _run(tiny_store, tmp_path / "r", epochs=5, lr=1e8, norm="none", likelihood="gaussian_learned")


def test_nan_pixels_are_named_as_the_cause(tmp_path):
    from train_helpers import make_store

    make_store(tmp_path / "s")
    images = np.load(tmp_path / "s" / "images.npy", mmap_mode="r+")
    images[0, 0, 3, 3] = np.nan
    images.flush()
    with pytest.raises(TrainingDivergedError, match="non-finite pixel values"):
        _run(tmp_path / "s", tmp_path / "r", epochs=1)


def test_ae_and_pca_share_the_command_and_layout(tiny_store, tmp_path):
    ae = vaedx.train(tiny_store, tmp_path / "ae", kind="ae", epochs=1, **FAST)
    assert isinstance(ae.model, ConvAE) and ae.kind == "ae"
    pca = vaedx.train(tiny_store, tmp_path / "pca", kind="pca", latent_dim=5)
    assert isinstance(pca.model, PCABaseline) and pca.model.components.shape == (5, 256)
    assert {p.name for p in (tmp_path / "pca" / "best").iterdir()} >= {"model.safetensors", "config.json"}
    x = np.asarray(TensorStore.open(tiny_store).images[:4])
    assert pca.model.reconstruct(x).shape == x.shape
    assert float(_metrics(tmp_path / "pca")[0]["val_mse"]) < float(np.var(x))


def test_existing_run_needs_resume_or_overwrite(tiny_store, tmp_path):
    out = _run(tiny_store, tmp_path / "r", epochs=1)
    with pytest.raises(ConfigError, match="--resume"):
        _run(tiny_store, out, epochs=1)
    opts = {**FAST, "store": tiny_store, "out": out, "epochs": 1, "latent_dim": 9}
    with pytest.raises(ConfigError, match="cannot change model.latent_dim"):
        run_training(None, opts, resume=True, quiet=True)
    (out / "thresholds.json").write_text("{}")  # a calibration saved for the old model
    run_training(None, opts, overwrite=True, quiet=True)
    assert load_model(out).config.model.latent_dim == 9
    assert not (out / "thresholds.json").exists()  # never flag the new model at the old one's thresholds


def test_damaged_checkpoints_are_clear_input_errors(tiny_store, tmp_path):
    out = _run(tiny_store, tmp_path / "r", epochs=1)
    weights = out / "best" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(out)
    weights.write_bytes(data[:-8] + bytes(8))  # same size, modified bytes
    with pytest.raises(InputError, match="checksum"):
        load_model(out)
    state = json.loads((out / "best" / "state.json").read_text())
    del state["sha256"]
    (out / "best" / "state.json").write_text(json.dumps(state))
    weights.write_bytes(b"garbage")
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(out)
    cfg = out / "last" / "config.json"
    meta = json.loads(cfg.read_text())
    meta["format_version"] = 99
    cfg.write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"last/config.json.*version"):
        load_model(out / "last")


@pytest.mark.parametrize(
    ("size", "network", "cls"), [(16, "conv", "ConvVAE"), (128, "conv-fast", "FastConvVAE")]
)
def test_the_default_arch_follows_the_image_size_and_the_run_records_it(tmp_path, size, network, cls):
    from train_helpers import make_store

    make_store(tmp_path / "store", n=16, size=size)
    out = _run(tmp_path / "store", tmp_path / "run", epochs=1)
    meta = json.loads((out / "last" / "config.json").read_text())
    assert meta["train"]["model"]["arch"] == network
    assert type(load_model(out).model).__name__ == cls

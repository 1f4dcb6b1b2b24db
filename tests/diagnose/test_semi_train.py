from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diag_helpers import ARCH, make_store
from vaedx.diagnose.semi_train import train_semi
from vaedx.diagnose.study import split_metrics
from vaedx.diagnose.supervised import train_supervised
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.models import ModelConfig, ReconstructionModel
from vaedx.models.cnn import SupervisedCNN
from vaedx.models.semi import SemiVAE
from vaedx.runs.networks import load_semi
from vaedx.training.batches import RowView


@pytest.fixture(scope="module")
def m2(store, tmp_path_factory):
    """M2 with a quarter of the labels. alpha is raised from the paper's 0.1 N / N_l (= 0.56 on a set this
    small) so the classifier head gets a usable signal within 18 steps (AUC 0.81-1.0 over 6 seeds)."""
    out = tmp_path_factory.mktemp("m2") / "m2"
    return train_semi(store, 0.25, seed=0, epochs=6, model=ARCH, batch_size=16, alpha=200.0, out=out), out


def test_m2_loss_decreases_and_its_classifier_beats_chance(m2, store):
    res, _ = m2
    first, last = np.mean(res.step_losses[:3]), np.mean(res.step_losses[-3:])
    assert len(res.step_losses) == 6 * math.ceil(46 / 16)  # 56 train images - 10 labelled, batches of 16
    assert np.isfinite(res.step_losses).all() and last < 0.7 * first
    assert res.history[-1]["ce"] < res.history[0]["ce"]
    test = store.select(split="test")
    metrics = split_metrics(
        store.labels[test], res.model.predict_proba(RowView(store.images, test)), res.classes
    )
    assert metrics["auc"] > 0.75
    assert res.labelled_rows.size == 10 and set(store.labels[res.labelled_rows]) == {0, 1}


def test_m2_save_load_round_trip(m2, store):
    res, out = m2
    loaded = load_semi(out)
    x = np.array(store.images[:6])
    np.testing.assert_array_equal(loaded.model.predict_proba(x), res.model.predict_proba(x))
    assert loaded.config.classes == [0, 1] and loaded.label_names == ["normal", "blob"]
    assert loaded.meta["n_labelled"] == 10 and loaded.meta["best_epoch"] == res.best_epoch


def test_default_alpha_follows_the_paper(store):
    res = train_semi(store, 0.5, seed=1, epochs=1, model=ARCH, batch_size=32, val_split=None)
    n_l = res.labelled_rows.size
    assert res.config.alpha == pytest.approx(0.1 * 56 / n_l) and len(res.history) == 1


def test_semi_vae_keeps_the_reconstruction_interface():
    net = SemiVAE(ModelConfig(in_channels=1, image_size=(12, 20), widths=[8, 16], latent_dim=3), 3).eval()
    x = torch.rand(5, 1, 12, 20)
    mu, logvar = net.encode(x)
    assert isinstance(net, ReconstructionModel) and mu.shape == logvar.shape == (5, 3)
    assert net.reconstruct(x).shape == x.shape and net.decode(mu).shape == x.shape
    assert net.sample(4, torch.Generator().manual_seed(0), y=2).shape == (4, 1, 12, 20)
    assert not torch.equal(
        net.encode(x, torch.zeros(5, dtype=torch.long))[0], net.encode(x, torch.full((5,), 2))[0]
    )
    loss, logs = net.loss(x[:2], torch.tensor([0, 2]), x[2:], alpha=1.0)
    assert loss.ndim == 0 and {"ce", "labelled_nelbo", "unlabelled"} <= set(logs)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        SemiVAE(ModelConfig(in_channels=1, image_size=12, widths=[8]), 1)


def test_semi_bad_inputs(tmp_path, store):
    with pytest.raises(ConfigError, match="labelled subset has only class"):
        train_semi(store, 0.01, epochs=1, model=ARCH)
    blank = make_store(tmp_path / "b", {"train": 8, "val": 4}, label_of={"train": [-1] * 8})
    with pytest.raises(InputError, match="no labelled images"):
        train_semi(blank, 0.5, epochs=1, model=ARCH)
    with pytest.raises(ModelMismatchError, match="the store has 1 x"):
        train_semi(store, 0.5, epochs=1, model={**ARCH, "image_size": 28})
    with pytest.raises(InputError, match="not an M2 model"):
        (tmp_path / "semi.json").write_text('{"format": "other"}')
        load_semi(tmp_path)


def test_supervised_baseline_trains_with_early_stopping(store):
    res = train_supervised(store, 0.5, seed=0, epochs=6, model=ARCH, batch_size=8, patience=2)
    assert isinstance(res.model, SupervisedCNN) and res.labelled_rows.size == 20
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert 1 <= res.best_epoch <= len(res.history) and "val_auc" in res.history[0]
    best = max(h["val_auc"] for h in res.history)
    assert res.history[res.best_epoch - 1]["val_auc"] == best
    test = store.select(split="test")
    metrics = split_metrics(
        store.labels[test], res.model.predict_proba(RowView(store.images, test)), res.classes
    )
    assert metrics["auc"] > 0.75


def test_m2_posterior_can_feed_the_latent_classifier(m2, store, tmp_path):
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.diagnose.model import DiagnosisModel

    res, out = m2
    diag = fit_diagnosis(out, store, candidates=("logreg",), out=tmp_path / "d")
    assert diag.encoder["kind"] == "m2" and len(diag.features.names) == 8
    loaded = load_encoder(DiagnosisModel.load(tmp_path / "d"))  # reloaded from the M2 folder, hash checked
    x = np.array(store.images[:4])
    np.testing.assert_array_equal(diag.features.compute(loaded, x), diag.features.compute(res.model, x))

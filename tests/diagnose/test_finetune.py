"""Fine-tuning a VAE encoder on labels: starts from the VAE, saves an encoder run the diagnosis pipeline
reads, keeps the decoder untouched, and is refused wherever a matching decoder is needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diag_helpers import ARCH, FAST
from vaedx.diagnose.finetune import finetune_encoder
from vaedx.diagnose.supervised import train_supervised
from vaedx.diagnose.torchfit import model_config_for
from vaedx.errors import ConfigError, InputError
from vaedx.models.cnn import SupervisedCNN
from vaedx.runs.networks import load_supervised


@pytest.fixture(scope="module")
def tuned(vae, store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "tuned"
    return finetune_encoder(vae, store, out, epochs=3, min_steps=20, batch_size=16, lr=3e-3, num_threads=1)


def test_load_encoder_copies_the_vae_encoder_and_posterior_mean(vae, store):
    cfg = model_config_for(store, vae.config.model)
    net = SupervisedCNN(cfg, 2)
    net.load_vae_encoder(vae.model)
    x = torch.from_numpy(np.array(store.images[:5]))
    with torch.no_grad():
        mu = vae.model.encode(x)[0]
        h = net.to_latent(net.encoder(x).flatten(1))
    torch.testing.assert_close(h, mu)


def test_train_supervised_from_a_vae_with_augmentation_and_one_cycle(vae, store, tmp_path):
    res = train_supervised(store, 1.0, seed=0, epochs=4, batch_size=16, augment=True, schedule="onecycle",
                           init_from=vae, out=tmp_path / "cnn", lr=3e-3)  # fmt: skip
    assert res.best_epoch == 4 == len(res.history)  # one-cycle keeps the final weights
    assert res.model.cfg.latent_dim == vae.config.model.latent_dim  # the VAE's architecture, not ARCH
    meta = load_supervised(tmp_path / "cnn").meta
    assert meta["schedule"] == "onecycle" and meta["augment"]["rotate_deg"] == 10.0
    assert meta["init_from"] == str(vae.path)
    with pytest.raises(ConfigError, match="unknown schedule"):
        train_supervised(store, 1.0, epochs=1, model=ARCH, schedule="cosine-ish")


def test_a_conv_fast_vae_is_fine_tuned_like_the_default_one(store, tmp_path):
    """--arch conv-fast runs fine-tune through the same route (their own encoder layout) and diagnose fit
    reads the result; the decoder stays the VAE's."""
    import vaedx
    from vaedx.diagnose.fit import fit_diagnosis

    fast = vaedx.train(store.root, tmp_path / "fast", epochs=2, arch="conv-fast", quiet=True, **FAST)
    tuned = finetune_encoder(fast, store, tmp_path / "ft", epochs=2, min_steps=10, batch_size=16)
    before, after = fast.model.state_dict(), tuned.model.state_dict()
    assert before.keys() == after.keys() and tuned.config.model.arch == "conv-fast"
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    diag = fit_diagnosis(tuned, store, include=("mu",), candidates=("logreg",), tta="none")
    assert diag.metrics["auc"] > 0.5


def test_init_from_needs_a_vae(pca, store):
    with pytest.raises(ConfigError, match="needs a VAE run"):
        train_supervised(store, 1.0, epochs=1, init_from=pca)


def test_finetuned_run_changes_the_encoder_only(tuned, vae, store):
    assert tuned.kind == "vae" and tuned.meta["finetune"]["n_labelled"] == 40
    before, after = vae.model.state_dict(), tuned.model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        same = torch.equal(before[k], after[k])
        if k.startswith(("decoder.", "from_latent.")):
            assert same, k  # the decoder is the VAE's
    first = next(k for k in before if k.startswith("encoder.") and k.endswith(".weight"))  # its first conv
    assert not torch.equal(before[first], after[first])
    d = vae.model.latent_dim  # log-variance rows of the projection are the VAE's
    torch.testing.assert_close(before["to_latent.weight"][d:], after["to_latent.weight"][d:])
    doc = json.loads((tuned.path.parent / "finetune.json").read_text())
    assert len(doc["history"]) == doc["epochs"] and "val_auc" in doc["history"][-1]


def test_diagnosis_on_the_finetuned_encoder(tuned, store, tmp_path):
    from vaedx.diagnose.fit import fit_diagnosis, split_probabilities

    diag = fit_diagnosis(tuned, store, include=("mu",), candidates=("logreg",), out=tmp_path / "d")
    _, y, p, _ = split_probabilities(diag, tuned, store, "test")
    from vaedx.metrics.measures import auroc

    assert auroc((y == 1).astype(np.int8), p[:, 1]) > 0.9


def test_finetuned_run_is_refused_for_anomaly_scoring(tuned, store, tmp_path):
    from vaedx.anomaly.detect import detect

    with pytest.raises(InputError, match="fine-tuned for diagnosis"):
        detect(tuned.path.parent, tmp_path / "det", store=store.root, scorers=["residual"], quiet=True)


def test_finetune_refuses_to_overwrite_or_to_tune_twice(tuned, vae, store):
    with pytest.raises(ConfigError, match="already holds a run"):
        finetune_encoder(vae, store, tuned.path.parent, epochs=1)
    with pytest.raises(InputError, match="already fine-tuned"):
        finetune_encoder(tuned, store, tuned.path.parent.parent / "again", epochs=1)


def test_finetune_command(vae, store, tmp_path):
    from vaedx.cli.diagnose import app

    out = tmp_path / "cli"
    args = ["finetune", "--model", str(vae.path), "--store", str(store.root), "--out", str(out),
            "--recipe", "fixed", "--epochs", "2", "--min-steps", "4", "--labelled-fraction", "0.5",
            "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fine-tuned encoder written" in result.output and "--features mu" in result.output
    meta = json.loads((out / "best" / "config.json").read_text())["finetune"]
    assert meta["n_labelled"] == 20 and meta["source"] == str(vae.path)


@pytest.mark.cuda
def test_finetune_on_cuda_then_diagnose_on_either_device(cuda_run, tmp_path):
    """Fine-tuning runs on the GPU and saves CPU-readable weights; the fitted diagnosis then gives the same
    probabilities whether its encoder is loaded on the GPU or the CPU (features are float32 on both)."""
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.fit import fit_diagnosis, split_probabilities
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.metrics.measures import auroc

    tuned = finetune_encoder(cuda_run.run, cuda_run.store, tmp_path / "tuned", epochs=3, min_steps=60,
                             device="cuda")  # fmt: skip
    assert next(tuned.model.parameters()).device.type == "cuda"
    diag = fit_diagnosis(tuned, cuda_run.store, include=("mu",), candidates=("logreg",), out=tmp_path / "d")
    _, y, p_gpu, _ = split_probabilities(diag, tuned, cuda_run.store, "test")
    on_cpu = load_encoder(DiagnosisModel.load(tmp_path / "d"), device="cpu")
    assert next(on_cpu.model.parameters()).device.type == "cpu"
    _, _, p_cpu, _ = split_probabilities(diag, on_cpu, cuda_run.store, "test")
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-2)
    assert auroc((y == 1).astype(np.int8), p_gpu[:, 1]) > 0.8  # pneumonia vs normal, real test images

from __future__ import annotations

import os
import subprocess
import sys

import vaedx
from diag_fixtures import cheng_pca, cheng_store  # noqa: F401
from diag_helpers import CHENG_CLASSES
from train_helpers import FAST
from vaedx.runs.loaded import LoadedModel


def test_import_vaedx_does_not_import_torch():
    code = "import sys, vaedx; assert 'torch' not in sys.modules; print(callable(vaedx.train))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


def test_train_then_resume_from_the_run_folder_alone(tiny_store, tmp_path):
    out = tmp_path / "run"
    first = vaedx.train(tiny_store, out, epochs=1, **FAST)
    assert isinstance(first, LoadedModel) and first.state["epoch"] == 1
    # resuming needs only the run folder: store and all options come from its config.json
    from vaedx.training.engine import run_training

    run_training(None, {"out": out, "epochs": 2}, resume=True, quiet=True)
    again = vaedx.load_model(out / "last")
    assert again.state["epoch"] == 2 and again.config.model.widths == FAST["widths"]
    mask = os.umask(0)
    os.umask(mask)
    for f in (out / "last" / "model.safetensors", out / "config.json", out / "metrics.csv"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask  # not owner-only like temp files


def test_volume_functions_are_public_with_real_signatures():
    """The volume route from a notebook: read, prepare, and the way back, on a real bundled NIfTI."""
    import inspect
    from pathlib import Path

    import nibabel as nib
    import numpy as np

    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    vol = vaedx.read_volume(path)
    assert isinstance(vol, vaedx.Volume) and vol.shape == (25, 41, 33)
    from vaedx.data.preprocess import PreprocessConfig

    prepared = vaedx.prepare_volume(vol, PreprocessConfig(size=(32, 32), normalize_scope="volume"))
    assert isinstance(prepared, vaedx.PreparedVolume) and prepared.slices.shape == (25, 1, 32, 32)
    back = prepared.to_original(prepared.slices[:, 0])
    assert back.shape == nib.load(path).shape and np.array_equal(back.affine, nib.load(path).affine)
    assert "inputs" in inspect.signature(vaedx.detect).parameters
    assert "threshold" in inspect.signature(vaedx.volume_metrics).parameters


def test_notebook_model_scores_like_detect(tiny_store, tmp_path):
    """m.score equals what vaedx detect writes for the same images, flags included after calibration."""
    import inspect

    import numpy as np

    from vaedx.anomaly.output import DetectOutput
    from vaedx.data.store import TensorStore

    run = tmp_path / "run"
    vaedx.train(tiny_store, run, epochs=1, **FAST)
    det = vaedx.detect(
        run,
        tmp_path / "det",
        store=tiny_store,
        split="val",
        quiet=True,
        max_overlays=0,
        scorers=["residual"],
        save_calibration=True,
    )
    out = DetectOutput.open(det)
    m = vaedx.load_model(run)
    assert isinstance(m, vaedx.Model) and m.state["epoch"] == 1  # LoadedModel attributes still there
    st = TensorStore.open(tiny_store)
    idx = out.index
    res = m.score(np.asarray(st.images[idx]), prepared=True)
    assert np.allclose(res.scores["residual"], out.scores("residual"), rtol=1e-5)
    assert np.array_equal(res.flags["residual"].astype(int), out.flags("residual"))
    assert res.maps["residual"].shape == (len(idx), *m.image_shape[1:])
    mu, _ = m.encode(st.images[idx[:2]])
    assert mu.shape == (2, FAST["latent_dim"])
    assert m.reconstruct(st.images[idx[:2]]).shape == (2, *m.image_shape)
    assert m.sample(3).shape == (3, *m.image_shape)
    assert m.interpolate(st.images[idx[0]], st.images[idx[1]], 4).shape == (4, *m.image_shape)
    for fn, name in ((m.score, "scorers"), (vaedx.prepare, "size"), (vaedx.api.evaluate, "diagnosis")):
        assert name in inspect.signature(fn).parameters
    result = vaedx.api.evaluate(det, tiny_store, n_boot=20)
    assert "residual" in result["scorers"] and (det / "evaluation.json").is_file()
    assert "| residual |" in (run / "MODEL_CARD.md").read_text(encoding="utf-8").split("## Test figures")[1]


def test_load_diagnosis_predicts_like_diagnose_predict(tiny_store, tmp_path):
    import numpy as np

    from vaedx.data.store import TensorStore
    from vaedx.diagnose.fit import fit_diagnosis

    run = tmp_path / "run"
    vaedx.train(tiny_store, run, epochs=1, **FAST)
    fit_diagnosis(run, tiny_store, out=tmp_path / "diag", candidates=("logreg",), n_splits=2)
    d = vaedx.load_diagnosis(tmp_path / "diag")
    st = TensorStore.open(tiny_store)
    x = np.asarray(st.images[:4])
    res = d.predict(x, neighbours=0)
    proba = d.diagnosis.predict_proba(d.diagnosis.features.compute(d.encoder, d.encoder_inputs(x)))
    assert res["probabilities"].shape == (4, len(d.class_names))
    assert np.allclose(res["probabilities"].sum(1), 1)
    assert set(res["labels"]) <= set(d.class_names) and np.allclose(proba, res["probabilities"])


def test_fit_diagnosis_mirrors_diagnose_fit_on_real_mri(cheng_pca, cheng_store, tmp_path, capsys):  # noqa: F811
    """Same options and defaults as the command, the same folder written, and the folder comes back loaded."""
    import inspect
    import json

    import numpy as np
    import pytest

    from vaedx.cli import main
    from vaedx.errors import ConfigError

    args = ["diagnose", "fit", "--model", str(cheng_pca.path), "--store", str(cheng_store.root),
            "--out", str(tmp_path / "cli"), "--classifiers", "logreg,knn", "--features", "mu",
            "--json"]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    d = vaedx.fit_diagnosis(cheng_pca.path, cheng_store.root, tmp_path / "api", classifiers=["logreg", "knn"],
                            features=["mu"], threads=1)  # fmt: skip
    assert isinstance(d, vaedx.Diagnosis) and d.class_names == list(CHENG_CLASSES)
    assert d.diagnosis.meta["chosen"] == printed["chosen"]  # the same classifier won, by the same CV AUC
    assert d.diagnosis.metrics["macro_auc"] == pytest.approx(printed["validation"]["macro_auc"])
    assert d.diagnosis.meta["data"]["n_labelled"] == printed["n_labelled"] == 3 * 36
    x = np.asarray(cheng_store.images[cheng_store.select(split="test")[:6]])
    cli = vaedx.load_diagnosis(tmp_path / "cli").predict(x, neighbours=0)["probabilities"]
    assert np.allclose(d.predict(x, neighbours=0)["probabilities"], cli, atol=1e-6)
    with pytest.raises(ConfigError, match="overwrite=True"):
        vaedx.fit_diagnosis(cheng_pca, cheng_store.root, tmp_path / "api", classifiers=["logreg"])
    defaults = {k: p.default for k, p in inspect.signature(vaedx.fit_diagnosis).parameters.items()}
    assert defaults["classifiers"] == ("logreg", "knn", "mlp", "hgb") and defaults["threshold"] == "youden"
    assert defaults["calibration"] == "sigmoid" and defaults["features"] == ("mu", "logvar")


def test_finetune_then_fit_diagnosis_on_its_latents(cheng_store, tmp_path):  # noqa: F811
    """``vaedx diagnose finetune --recipe fixed`` then ``fit --features mu``, from a notebook, on real MRI."""
    import pytest

    from vaedx.errors import ConfigError

    vae = vaedx.train(cheng_store.root, tmp_path / "vae", epochs=1, **FAST)
    with pytest.raises(ConfigError, match="recipe must be auto or fixed"):
        vaedx.finetune(vae, cheng_store.root, tmp_path / "tuned", recipe="grid")
    assert not (tmp_path / "tuned").exists()  # refused before anything was written
    tuned = vaedx.finetune(vaedx.load_model(vae.path), cheng_store.root, tmp_path / "tuned", recipe="fixed",
                           epochs=2, min_steps=0, threads=1)  # fmt: skip
    info = tuned.meta["finetune"]
    assert isinstance(tuned, vaedx.Model) and info["epochs"] == 2 and info["n_labelled"] == 3 * 36
    d = vaedx.fit_diagnosis(tuned, cheng_store.root, tmp_path / "diag", classifiers=["logreg"],
                            features=["mu"])  # fmt: skip
    assert d.encoder.path.resolve() == tuned.path.resolve()  # the fine-tuned encoder, not the VAE
    assert tuple(d.diagnosis.features.include) == ("mu",) and 0 <= d.diagnosis.metrics["macro_auc"] <= 1


def test_detect_without_scorers_chooses_on_val_like_the_command(tiny_store, tmp_path):
    """vaedx.detect() mirrors `vaedx detect`: no scorers means the scorer is chosen on the store's val
    split (recorded in detect.json), and a loaded Model is accepted where a run folder is."""
    import json

    run = tmp_path / "run"
    m = vaedx.train(tiny_store, run, epochs=1, **FAST)
    det = vaedx.detect(
        vaedx.load_model(run), tmp_path / "det", store=tiny_store, split="val", quiet=True, max_overlays=0
    )
    doc = json.loads((det / "detect.json").read_text())
    chosen = doc["selection"]["scorer"]
    assert doc["scorers"] == [chosen] and m.path == vaedx.load_model(run).path

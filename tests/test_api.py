from __future__ import annotations

import os
import subprocess
import sys

import vaedx
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
    det = vaedx.detect(run, tmp_path / "det", store=tiny_store, split="val", quiet=True, max_overlays=0,
                        save_calibration=True)
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

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

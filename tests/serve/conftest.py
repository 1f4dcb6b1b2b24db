"""Fixtures for the service tests: one tiny trained model per session, and a client of the real app.

The model is trained for one epoch on 16x16 blobs (about a second on two cores); the tests check the
service's behaviour, not the model's quality.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve_helpers import MAX_UPLOAD, make_store


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vaedx

    root = tmp_path_factory.mktemp("serve_model")
    store = make_store(root / "store")
    fast = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "lr": 3e-3, "num_threads": 1}
    vaedx.train(store, root / "run", epochs=1, **fast)
    return root / "run"


@pytest.fixture(scope="session")
def client(run_dir: Path):
    from vaedx.serve.app import create_app

    with TestClient(create_app(run_dir, max_upload_bytes=MAX_UPLOAD)) as c:
        yield c


@pytest.fixture(scope="session")
def lgg_run(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small VAE on three real LGG FLAIR volumes (32 px), calibrated on the third patient's slices."""
    import vaedx
    from lgg_volume_model import make_lgg_volume_store
    from vaedx.anomaly.calibration import calibrate_thresholds
    from vaedx.data.store import TensorStore
    from vaedx.runs.loaded import load_model

    root = tmp_path_factory.mktemp("serve_lgg")
    store = make_lgg_volume_store(lgg_dir, root / "store", n_patients=3)
    fast = {"widths": [8, 16], "latent_dim": 8, "batch_size": 32, "lr": 3e-3, "num_threads": 2}
    vaedx.train(store, root / "run", epochs=2, label_filter=["no_tumour"], **fast)
    calibrate_thresholds(load_model(root / "run"), TensorStore.open(store), ["residual"])
    return root / "run"


@pytest.fixture(scope="session")
def lgg_nifti_path(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A held-out LGG patient (not among the three the model saw) as a NIfTI named after the case."""
    from lgg_volume_model import lgg_cases
    from serve_helpers import lgg_nifti

    case = lgg_cases(lgg_dir, 6)[-1]
    return lgg_nifti(case, tmp_path_factory.mktemp("serve_lgg_case") / f"{case.name}.nii.gz")

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

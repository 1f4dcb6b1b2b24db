"""Session fixtures for the diagnosis tests (here and in tests/cli): a tiny store and a VAE trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag_helpers import FAST, make_store
from vaedx.data.store import TensorStore


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matrices gain nothing from BLAS/OpenMP threads; on a shared machine their spinning pools made
    single scikit-learn fits take seconds instead of milliseconds. Module scope, so tests outside this
    folder keep their own settings."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same reason: a second torch thread made a 0.2 s M2 run take 5-30 s
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> TensorStore:
    """Binary blob-vs-noise store: 40 train (+16 unlabelled), 24 val, 24 test images of 16x16."""
    counts = {"train": 40, "val": 24, "test": 24}
    return make_store(tmp_path_factory.mktemp("diag") / "store", counts, unlabelled=16)


@pytest.fixture(scope="session")
def vae(tmp_path_factory: pytest.TempPathFactory, store: TensorStore):
    """A VAE trained without labels on the store's training split (labels are never used)."""
    import vaedx

    return vaedx.train(store.root, tmp_path_factory.mktemp("diag") / "vae", epochs=15, quiet=True, **FAST)


@pytest.fixture(scope="session")
def pca(tmp_path_factory: pytest.TempPathFactory, store: TensorStore):
    import vaedx

    return vaedx.train(store.root, tmp_path_factory.mktemp("diag") / "pca", kind="pca", latent_dim=6)


@pytest.fixture(scope="session")
def fitted(tmp_path_factory: pytest.TempPathFactory, vae, store: TensorStore) -> Path:
    """A diagnosis model fitted and saved once (logistic regression + k-NN candidates, sigmoid, Youden)."""
    from vaedx.diagnose.fit import fit_diagnosis

    out = tmp_path_factory.mktemp("diag") / "diagnosis"
    fit_diagnosis(vae, store, out=out, candidates=("logreg", "knn"))
    return out

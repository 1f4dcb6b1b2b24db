"""Session fixtures for the diagnosis tests (here and in tests/cli): a tiny store and a VAE trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag_helpers import CHENG_CLASSES, FAST, cheng_manifest, make_store
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


@pytest.fixture(scope="session")
def cheng_store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TensorStore:
    """Real three-class store: 60 Cheng T1-CE images per tumour type at 32x32 (36 train, 12 val, 12 test
    each), split by image because the set has no patient ids."""
    import vaedx

    root = tmp_path_factory.mktemp("cheng")
    csv = cheng_manifest(data_dir, root / "manifest.csv")
    return vaedx.prepare(csv, root / "store", size=32, label_names=list(CHENG_CLASSES))


@pytest.fixture(scope="session")
def cheng_pca(tmp_path_factory: pytest.TempPathFactory, cheng_store: TensorStore):
    """PCA "encoder" on the Cheng training images: deterministic, fitted in well under a second."""
    import vaedx

    return vaedx.train(cheng_store.root, tmp_path_factory.mktemp("cheng") / "pca", kind="pca", latent_dim=12)


@pytest.fixture(scope="session")
def cheng_fitted(tmp_path_factory: pytest.TempPathFactory, cheng_pca, cheng_store: TensorStore) -> Path:
    """A three-class diagnosis model on the PCA features (logistic regression, default calibration)."""
    from vaedx.diagnose.fit import fit_diagnosis

    out = tmp_path_factory.mktemp("cheng") / "diagnosis"
    fit_diagnosis(cheng_pca, cheng_store, out=out, candidates=("logreg",), include=("mu",))
    return out


@pytest.fixture(scope="session")
def fitted_knn(tmp_path_factory: pytest.TempPathFactory, vae, store: TensorStore) -> Path:
    """A second diagnosis on the same VAE and store (k-NN only, no test-time augmentation search): the
    other side of the paired comparisons."""
    from vaedx.diagnose.fit import fit_diagnosis

    out = tmp_path_factory.mktemp("diag") / "diagnosis_knn"
    fit_diagnosis(vae, store, out=out, candidates=("knn",), tta="none")
    return out


@pytest.fixture(scope="session")
def cheng_fitted_knn(tmp_path_factory: pytest.TempPathFactory, cheng_pca, cheng_store: TensorStore) -> Path:
    """A second three-class diagnosis on the same PCA features (k-NN), to compare with ``cheng_fitted``."""
    from vaedx.diagnose.fit import fit_diagnosis

    out = tmp_path_factory.mktemp("cheng") / "diagnosis_knn"
    fit_diagnosis(cheng_pca, cheng_store, out=out, candidates=("knn",), include=("mu",), tta="none")
    return out

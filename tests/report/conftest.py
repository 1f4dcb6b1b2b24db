"""Session fixtures: one small pipeline folder (about 20-30 s on a shared machine) and its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag_fixtures import cheng_fitted, cheng_pca, cheng_store, fitted, store, vae  # noqa: F401
from report_helpers import make_pipeline


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models and 100-row bootstraps gain nothing from thread pools, which only contend on 2 cores."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return make_pipeline(tmp_path_factory.mktemp("report") / "pipe")


@pytest.fixture(scope="session")
def report(pipeline: Path) -> Path:
    """report.html of the whole pipeline, built once with the Python entry point."""
    from threadpoolctl import threadpool_limits

    from vaedx.report import build_report

    with threadpool_limits(limits=1):
        return build_report(pipeline, n_boot=50)

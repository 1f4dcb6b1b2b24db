"""Shared fixtures. Real data comes from VAEDX_DATA_DIR (default ../shared/data).

When CI is set, missing real data is a failure, not a skip: a green CI must mean the real-data tests ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cuda_fixtures import cuda_run  # noqa: F401  (the tests marked cuda)
from train_fixtures import tiny_store  # noqa: F401  (tests/test_api.py)

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip on machines without a CUDA GPU (benchmarks/gpu_check.sh runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def _data_root() -> Path:
    env = os.environ.get("VAEDX_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_root()
    if not (root / "SOURCES.md").exists():
        msg = f"real data not found at {root} (set VAEDX_DATA_DIR)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def pneumonia_npz(data_dir: Path) -> Path:
    return data_dir / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="session")
def lgg_dir(data_dir: Path) -> Path:
    return data_dir / "brain_lgg"

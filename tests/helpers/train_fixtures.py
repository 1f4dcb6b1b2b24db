"""Training fixtures: tiny stores, so every run takes about a second on two CPU cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from train_helpers import make_store


@pytest.fixture
def tiny_store(tmp_path: Path) -> Path:
    make_store(tmp_path / "store")
    return tmp_path / "store"

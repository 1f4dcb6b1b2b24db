"""channels_last on CPU: default for images >= 96 px, and it trains to the same losses as NCHW."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import vaedx
from train_helpers import FAST, make_store
from vaedx.training.loop import use_channels_last


def test_default_rule():
    assert use_channels_last(None, cuda=False, image_size=(96, 128))
    assert not use_channels_last(None, cuda=False, image_size=(64, 128))
    assert not use_channels_last(None, cuda=False, image_size=None)
    assert use_channels_last(None, cuda=True, image_size=(28, 28))
    assert not use_channels_last(False, cuda=False, image_size=(128, 128))
    assert use_channels_last(True, cuda=False, image_size=(16, 16))


def _losses(run: Path) -> list[float]:
    with (run / "metrics.csv").open() as fh:
        return [float(r["train_loss"]) for r in csv.DictReader(fh)]


def test_channels_last_trains_like_nchw(tmp_path: Path):
    store = tmp_path / "store"
    make_store(store, n=12, size=96)
    runs = {}
    for cl in (True, False):
        runs[cl] = tmp_path / f"run_{cl}"
        vaedx.train(store, runs[cl], epochs=2, channels_last=cl, **FAST)
    a, b = _losses(runs[True]), _losses(runs[False])
    assert a[0] == pytest.approx(b[0], rel=1e-4)  # other conv kernels: rounding differs, and grows with steps
    assert a[1] == pytest.approx(b[1], rel=1e-2)

"""Supervised CNN baseline: saved as safetensors + JSON and read back identically; min_steps; bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diag_helpers import ARCH
from vaedx.diagnose.supervised import train_supervised
from vaedx.errors import InputError
from vaedx.runs.networks import SUPERVISED_JSON, load_supervised


@pytest.fixture(scope="module")
def saved(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "cnn"
    res = train_supervised(store, 0.5, seed=3, epochs=2, model=ARCH, batch_size=8, out=out)
    return res, out


def test_supervised_save_load_round_trip(saved, store):
    res, out = saved
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))
    loaded = load_supervised(out)
    x = np.array(store.images[:7])
    np.testing.assert_array_equal(loaded.model.predict_proba(x), res.model.predict_proba(x))
    assert loaded.classes.tolist() == [0, 1] and loaded.label_names == ["normal", "blob"]
    assert loaded.image_shape == (1, 16, 16) and loaded.kind == "supervised_cnn"
    assert loaded.meta["n_labelled"] == 20 and loaded.meta["best_epoch"] == res.best_epoch
    assert len(loaded.meta["history"]) == len(res.history)
    store.check_compatible(loaded.preprocess, loaded.image_shape)  # same preprocessing as the store


def test_min_steps_raises_the_epoch_count(store):
    # 10 labelled images in batches of 8: 2 steps per epoch, so 9 steps need 5 epochs
    res = train_supervised(store, 0.25, epochs=1, model=ARCH, batch_size=8, patience=0, min_steps=9)
    assert len(res.history) == 5


def test_supervised_load_errors(saved, tmp_path):
    _, out = saved
    with pytest.raises(InputError, match="file missing"):
        load_supervised(tmp_path)
    (tmp_path / SUPERVISED_JSON).write_text('{"format": "vaedx-semi-1"}')
    with pytest.raises(InputError, match="not a supervised CNN"):
        load_supervised(tmp_path)
    doc = json.loads((out / SUPERVISED_JSON).read_text())
    (tmp_path / SUPERVISED_JSON).write_text(json.dumps({**doc, "classes": [0]}))
    (tmp_path / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="at least two classes"):
        load_supervised(tmp_path)
    (tmp_path / SUPERVISED_JSON).write_text(json.dumps({**doc, "model": {"latent_dim": -1}}))
    with pytest.raises(InputError, match="invalid supervised CNN config"):
        load_supervised(tmp_path)
    (tmp_path / SUPERVISED_JSON).write_text(json.dumps(doc))
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError):
        load_supervised(tmp_path)

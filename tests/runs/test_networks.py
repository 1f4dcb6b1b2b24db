"""Saved classifier networks (M2 and the supervised CNN): one writer, one reader, one loaded type."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diag_helpers import ARCH, make_store
from vaedx.diagnose.semi_train import train_semi
from vaedx.diagnose.supervised import train_supervised
from vaedx.errors import InputError
from vaedx.runs.networks import (
    SEMI_JSON,
    SUPERVISED_JSON,
    WEIGHTS,
    LoadedNetwork,
    load_semi,
    load_supervised,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("nets") / "store", {"train": 16, "val": 8, "test": 4})


def test_both_networks_load_as_one_type_with_the_same_fields(store, tmp_path):
    train_semi(store, 0.5, seed=0, epochs=1, model=ARCH, batch_size=8, out=tmp_path / "m2")
    train_supervised(store, 0.5, seed=0, epochs=1, model=ARCH, batch_size=8, out=tmp_path / "cnn")
    m2, cnn = load_semi(tmp_path / "m2"), load_supervised(tmp_path / "cnn")
    for loaded, kind, doc in ((m2, "m2", SEMI_JSON), (cnn, "supervised_cnn", SUPERVISED_JSON)):
        assert isinstance(loaded, LoadedNetwork) and loaded.kind == kind
        assert loaded.image_shape == store.image_shape and list(loaded.classes) == [0, 1]
        assert loaded.label_names == list(store.label_names) and not loaded.model.training
        assert (loaded.path / WEIGHTS).is_file() and "sha256" in json.loads((loaded.path / doc).read_text())
    assert np.asarray(m2.config.classes).tolist() == [0, 1]


def test_one_format_is_not_read_as_the_other(store, tmp_path):
    train_semi(store, 0.5, seed=0, epochs=1, model=ARCH, batch_size=8, out=tmp_path / "m2")
    (tmp_path / "m2" / SUPERVISED_JSON).write_text((tmp_path / "m2" / SEMI_JSON).read_text())
    with pytest.raises(InputError, match="not a supervised CNN of format vaedx-supervised-1"):
        load_supervised(tmp_path / "m2")

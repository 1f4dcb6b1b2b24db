from __future__ import annotations

import numpy as np
import pytest

from diag_helpers import make_store
from vaedx.diagnose.labels import labelled_rows, labelled_subset
from vaedx.errors import ConfigError, InputError


def test_labelled_subset_is_stratified_seeded_and_skips_unlabelled():
    labels = np.array([0] * 60 + [1] * 30 + [-1] * 10 + [2] * 20)
    pick = labelled_subset(labels, 0.1, seed=3)
    assert np.all(np.diff(pick) > 0)  # sorted, no repeats
    assert np.bincount(labels[pick]).tolist() == [6, 3, 2]  # 10 % of every class
    assert (labels[pick] >= 0).all()
    assert np.array_equal(pick, labelled_subset(labels, 0.1, seed=3))
    assert not np.array_equal(pick, labelled_subset(labels, 0.1, seed=4))
    assert labelled_subset(labels, 1.0).size == 110  # all labelled images


def test_labelled_subset_order_of_rows_does_not_change_the_class_counts():
    labels = np.array([1, 0] * 50)
    assert np.bincount(labels[labelled_subset(labels, 0.05, seed=0)]).tolist() == [3, 3]  # 2.5 rounds up


def test_fraction_too_small_for_a_class_is_a_config_error():
    labels = np.array([0] * 200 + [1] * 20)
    message = (
        r"labelled subset has only class normal; need at least one image of each class — raise --labelled"
    )
    with pytest.raises(ConfigError, match=message):
        labelled_subset(labels, 0.01, label_names=["normal", "pneumonia"])
    labels3 = np.array([0] * 200 + [1] * 200 + [2] * 10)
    with pytest.raises(ConfigError, match="no image of class 2"):
        labelled_subset(labels3, 0.02)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([-1, -1, -1], InputError, "all labels are -1"),
        ([1, 1, 1, -1], InputError, "all labelled images are of class 1"),
    ],
)
def test_unusable_labels(labels, error, message):
    with pytest.raises(error, match=message):
        labelled_subset(np.array(labels), 0.5)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fraction_out_of_range(fraction):
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        labelled_subset(np.array([0, 1]), fraction)


def test_labelled_rows_explains_missing_or_single_class_labels(tmp_path, store):
    assert set(store.labels[labelled_rows(store, "train")]) == {0, 1}
    with pytest.raises(InputError, match="split 'nope' is empty"):
        labelled_rows(store, "nope")
    blank = make_store(tmp_path / "blank", {"train": 6, "val": 4}, label_of={"val": [-1, -1, -1, -1]})
    with pytest.raises(InputError, match="split 'val' has no labelled images"):
        labelled_rows(blank, "val")
    one = make_store(tmp_path / "one", {"train": 4, "val": 4}, label_of={"train": [1, 1, 1, 1]})
    with pytest.raises(InputError, match="split 'train' has labels of class blob only"):
        labelled_rows(one, "train")

"""MedMNIST-style npz archives."""

from __future__ import annotations

import numpy as np
import pytest

from vaedx.errors import InputError
from vaedx.io import NpzData, read_npz


def images(n: int, *extra: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 4, 4, *extra), dtype=np.uint8)


def test_round_trip_with_column_labels(tmp_path):
    train, test = images(5), images(3, 3)
    path = tmp_path / "set.npz"
    np.savez_compressed(
        path,
        train_images=train,
        train_labels=np.array([[0], [1], [1], [0], [1]], np.uint8),
        test_images=test,
        test_labels=np.array([2, 0, 1]),
    )
    data = read_npz(path)
    assert isinstance(data, NpzData) and data.path == path and set(data.splits) == {"train", "test"}
    got_images, got_labels = data.splits["train"]
    np.testing.assert_array_equal(got_images, train)
    assert got_labels.dtype == np.int64 and got_labels.shape == (5,)
    np.testing.assert_array_equal(got_labels, [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(data.splits["test"][0], test)  # (N, H, W, C) kept as it is


@pytest.mark.parametrize(
    "arrays,key",
    [
        ({"train_images": images(2)}, "train_labels"),
        ({"train_images": images(2), "train_labels": np.zeros(2), "val_labels": np.zeros(3)}, "val_images"),
        ({"train_images": images(3), "train_labels": np.zeros(2, np.int64)}, "train_labels"),
        ({"val_images": images(2), "val_labels": np.zeros((2, 3), np.int64)}, "val_labels"),
        ({"test_images": images(2), "test_labels": np.array([0.5, 1.0])}, "test_labels"),
        ({"x": images(2), "y": np.zeros(2)}, "found: x, y"),
    ],
    ids=["no-labels", "no-images", "length-mismatch", "multi-label", "fractional-labels", "wrong-keys"],
)
def test_bad_archives_name_the_key(tmp_path, arrays, key):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=key) as e:
        read_npz(path)
    assert "bad.npz" in str(e.value)


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, train_images=np.array([{"a": 1}, None], dtype=object), train_labels=np.zeros(2))
    with pytest.raises(InputError, match="obj.npz"):
        read_npz(path)

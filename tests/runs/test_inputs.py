"""ModelInputs: files, arrays and store rows become the tensors the model was trained on, or one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from lesion_stores import make_lesion_store
from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.data.store import TensorStore
from vaedx.errors import InputError, ModelMismatchError
from vaedx.runs.inputs import ModelInputs


def _png(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    arr = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    PILImage.fromarray(arr, mode="RGB" if len(shape) == 3 else "L").save(path)
    return path


def test_files_are_preprocessed_like_training_and_named_by_file_and_frame(tmp_path: Path) -> None:
    pre = PreprocessConfig(size=(16, 16))
    files = [_png(tmp_path / f"a{k}.png", (20, 24), k) for k in range(2)]
    images, refs = ModelInputs(pre, (1, 16, 16)).files(files)
    assert images.shape == (2, 1, 16, 16) and images.dtype == np.float32
    assert refs == [(files[0], 0), (files[1], 0)]
    from vaedx.io.dispatch import read_any

    np.testing.assert_array_equal(images[1], apply(read_any(files[1])[0].array, pre)[0])


def test_a_file_that_does_not_fit_is_refused_naming_it(tmp_path: Path) -> None:
    rgb = _png(tmp_path / "rgb.png", (16, 16, 3))
    with pytest.raises(ModelMismatchError, match=r"rgb\.png.*3 channels but the model expects 1"):
        ModelInputs(PreprocessConfig(size=(16, 16)), (1, 16, 16)).files([rgb])
    with pytest.raises(ModelMismatchError, match="size 16x16 but the model expects 8x8"):
        ModelInputs(PreprocessConfig(), (1, 8, 8)).array(np.zeros((16, 16), np.float32), "x.npy")


def test_any_shape_without_a_model_but_one_shape_per_batch(tmp_path: Path) -> None:
    files = [_png(tmp_path / "a.png", (10, 10)), _png(tmp_path / "b.png", (12, 12))]
    with pytest.raises(InputError, match="different shapes after preprocessing"):
        ModelInputs(PreprocessConfig()).files(files)
    assert ModelInputs(PreprocessConfig()).files(files[:1])[0].shape == (1, 1, 10, 10)


def test_fill_size_resizes_to_the_training_size_of_a_model_without_one() -> None:
    class Loaded:
        preprocess = PreprocessConfig()
        image_shape = (1, 12, 12)

    assert ModelInputs.for_model(Loaded()).preprocess.size is None
    reader = ModelInputs.for_model(Loaded(), fill_size=True)
    assert reader.array(np.zeros((30, 20), np.float32)).shape == (1, 12, 12)


def test_store_rows_are_checked_against_the_model(tmp_path: Path) -> None:
    store = TensorStore.open(make_lesion_store(tmp_path / "s", 8, 16))
    images, idx = ModelInputs(store.preprocess, (1, 16, 16)).store(store, "val")
    assert idx.tolist() == store.select(split="val").tolist() and images.shape == (idx.size, 1, 16, 16)
    with pytest.raises(ModelMismatchError, match=r"image shape \(1, 12, 12\) \(model\)"):
        ModelInputs(store.preprocess, (1, 12, 12)).store(store, "val")
    with pytest.raises(InputError, match="split 'nope' has no images"):
        ModelInputs(store.preprocess, (1, 16, 16)).store(store, "nope")

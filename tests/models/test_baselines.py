from __future__ import annotations

import numpy as np
import pytest
import torch

from vaedx.errors import InputError, ModelMismatchError
from vaedx.models import PCABaseline, ReconstructionModel


def _data(n: int = 60) -> np.ndarray:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 1 * 8 * 8))
    x = rng.normal(size=(n, 6)) @ basis + 0.05 * rng.normal(size=(n, 64))
    return x.astype(np.float32).reshape(n, 1, 8, 8)


def test_error_decreases_with_more_components():
    x = _data()
    errs = [float(((PCABaseline(k).fit(x).reconstruct(x) - x) ** 2).mean()) for k in (1, 3, 6)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01  # six components span the data up to the small noise


def test_same_interface_as_the_vaes():
    x = _data()
    m = PCABaseline(4).fit(x)
    assert isinstance(m, ReconstructionModel)
    z, logvar = m.encode(x)
    assert z.shape == (60, 4) and logvar is None
    assert m.decode(z).shape == x.shape
    t = m.reconstruct(torch.from_numpy(x))  # torch in -> torch out
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), m.reconstruct(x))
    with pytest.raises(ModelMismatchError):
        m.encode(np.zeros((2, 1, 9, 9), np.float32))


def test_save_load_round_trip(tmp_path):
    x = _data()
    m = PCABaseline(5).fit(x)
    m.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "pca.json"]
    back = PCABaseline.load(tmp_path)
    assert np.array_equal(back.reconstruct(x), m.reconstruct(x))
    assert back.image_shape == (1, 8, 8) and back.latent_dim == 5


def test_truncated_file_is_a_clear_error(tmp_path):
    PCABaseline(3).fit(_data()).save(tmp_path)
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(InputError, match="model.safetensors"):
        PCABaseline.load(tmp_path)


def test_large_inputs_are_fitted_in_chunks(monkeypatch):
    import vaedx.models.baselines as b

    monkeypatch.setattr(b, "_INCREMENTAL_BYTES", 1000)  # force the IncrementalPCA path
    x = _data(130)
    m = PCABaseline(6).fit(x, batch_size=50)
    assert float(((m.reconstruct(x) - x) ** 2).mean()) < 0.01

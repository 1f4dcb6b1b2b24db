"""Real-data runs of the MONAI adapters, trained once per test session through the real CLI.

PneumoniaMNIST (28 px) from VAEDX_DATA_DIR, 64 training images, two epochs: a few optimiser steps, enough
to check that training, saving, loading and every scorer work, not to make a good detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TRAIN_ARGS = ["--epochs", "2", "--max-images", "64", "--batch-size", "32", "--latent-dim", "4",
              "--widths", "16,32", "--threads", "1", "--quiet"]  # fmt: skip


@pytest.fixture(scope="session")
def pneumonia_store(tmp_path_factory: pytest.TempPathFactory, pneumonia_npz: Path) -> Path:
    from vaedx.cli import main

    out = tmp_path_factory.mktemp("pneumonia") / "store"
    assert main(["data", "prepare", str(pneumonia_npz), "--out", str(out)]) == 0
    return out


def train_run(store: Path, out: Path, arch: str, *extra: str) -> Path:
    """``vaedx train --arch ARCH`` on the store; returns the run folder."""
    from vaedx.cli import main

    args = ["train", "--store", str(store), "--out", str(out), "--arch", arch, *TRAIN_ARGS, *extra]
    assert main(args) == 0
    return out


def seeded_model(arch: str, latent_dim: int, **kw: object) -> Any:
    """A freshly initialised 28x28 one-channel ``arch`` model (widths 8,16), the same weights every call."""
    import torch

    from vaedx.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, in_channels=1, image_size=28, latent_dim=latent_dim, widths=[8, 16], **kw)
    return build_model(cfg)


def check_trained_run_scores(run: Path, store: Path, scorer: str) -> None:
    """The trained run offers ``scorer`` and scores six real test images with it as :func:`check_scorer`
    demands."""
    import numpy as np
    import torch

    from vaedx.anomaly.registry import available_scorers
    from vaedx.data.store import TensorStore
    from vaedx.runs.loaded import load_model

    loaded = load_model(run)
    assert scorer in available_scorers(loaded.model)
    opened = TensorStore.open(store)
    x = torch.from_numpy(np.asarray(opened.images[opened.select("test")[:6]]))
    check_scorer(loaded.model, scorer, x)


def check_scorer(model: object, name: str, x: object) -> None:
    """Score ``x`` with scorer ``name`` twice: finite, one map per image, the same both times (eval mode
    decodes the posterior mean), and the reconstruction-based maps are |x - decode(mu)| itself."""
    import numpy as np
    import torch

    from vaedx.anomaly.registry import build_scorer

    opts = {"steps": 3} if name == "restoration" else {"m": 3} if name == "uncertainty" else {}
    first = build_scorer(name, model, **opts).score(x)
    again = build_scorer(name, model, **opts).score(x)
    n, _, h, w = x.shape  # type: ignore[attr-defined]
    assert first.maps.shape == (n, h, w) and first.scores.shape == (n,)
    assert np.isfinite(first.maps).all() and np.isfinite(first.scores).all()
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.maps, again.maps)
    model.eval()  # type: ignore[attr-defined]  # the scorers' mode: z = mu
    if name == "residual":
        with torch.no_grad():
            expected = (x - model.decode(model.encode(x)[0])).abs().mean(1)  # type: ignore[attr-defined]
        np.testing.assert_allclose(first.maps, expected.numpy(), atol=1e-5)
    if name == "elbo":
        with torch.no_grad():
            terms = model.elbo_terms(x, model(x))  # type: ignore[attr-defined, operator]
        np.testing.assert_allclose(first.scores, terms["neg_elbo"].double().numpy(), rtol=1e-5)

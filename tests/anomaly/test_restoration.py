"""Restoration scorer on real LGG FLAIR slices: the fast implementation against the reference one, the
per-image early stop, and frozen weights shared safely between threads.

The reference implementation lives in ``benchmarks/restoration_speed.py`` only (one copy, the one the speed
figures are measured against); it is loaded from there.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from vaedx.anomaly.restoration import RestorationScorer, frozen_weights
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.volume_prep import prepare_volume
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.models import ModelConfig, build_model

SIZE = 32
ROOT = Path(__file__).resolve().parents[2]


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "restoration_speed", ROOT / "benchmarks" / "restoration_speed.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def slices(lgg_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(12,1,32,32) brain slices of two real patients, evenly spaced; the first patient's lesion-free ones
    trained the model below, so these mix seen-healthy, unseen and lesioned tissue."""
    cases = sorted(p for p in lgg_dir.iterdir() if p.is_dir() and p.name.startswith("TCGA"))[:2]
    cfg = PreprocessConfig(size=(SIZE, SIZE), channels=[1], normalize_scope="volume")
    xs, ms = [], []
    for case in cases:
        vol, mask = read_lgg_patient(case)
        p = prepare_volume(vol, cfg, mask)
        keep = p.slices.reshape(len(p.slices), -1).mean(1) > 0.05
        xs.append(p.slices[keep]), ms.append(p.masks[keep])
    x, m = np.concatenate(xs).astype(np.float32), np.concatenate(ms).astype(bool)
    pick = np.linspace(0, len(x) - 1, 12).round().astype(int)
    return x[pick], m[pick]


@pytest.fixture(scope="module")
def vae(slices: tuple[np.ndarray, np.ndarray]) -> torch.nn.Module:
    """A small ConvVAE given 60 Adam steps on the lesion-free slices: enough for a prior that pulls."""
    x, m = slices
    healthy = torch.from_numpy(x[~m.reshape(len(x), -1).any(1)])
    torch.manual_seed(0)
    model = build_model(ModelConfig(in_channels=1, image_size=SIZE, widths=[8, 16], latent_dim=8, sigma=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        terms = model.elbo_terms(healthy, model(healthy))
        opt.zero_grad()
        (terms["recon_nll"] + terms["kl"]).mean().backward()
        opt.step()
    opt.zero_grad(set_to_none=True)  # scoring must leave .grad as it finds it: None
    return model.eval()


def test_matches_the_reference_implementation_with_the_early_stop_off(vae, slices):
    x, _ = slices
    ref = _reference_module().ReferenceRestoration(vae, steps=20, lam=1.0).score(x)
    new = RestorationScorer(vae, steps=20, lam=1.0, tol=0.0).score(x)
    assert (new.extra["steps"] == 20).all()
    np.testing.assert_allclose(new.extra["restored"], ref.extra["restored"], atol=1e-3)
    np.testing.assert_allclose(new.maps, ref.maps, atol=1e-3)
    np.testing.assert_allclose(new.scores, ref.scores, rtol=1e-3, atol=1e-5)


def test_channels_last_gives_the_same_maps_up_to_adams_sign_noise(vae, slices):
    """NHWC convolutions round differently; Adam turns a near-zero gradient's sign into a full lr step, so
    such pixels differ by a few lr while the maps as a whole agree."""
    x, _ = slices
    plain = RestorationScorer(vae, steps=10, tol=0.0).score(x)
    nhwc = RestorationScorer(vae, steps=10, tol=0.0, channels_last=True).score(x)
    assert np.abs(nhwc.maps - plain.maps).max() <= 10 * 5e-3
    assert np.corrcoef(nhwc.maps.ravel(), plain.maps.ravel())[0, 1] > 0.95
    np.testing.assert_allclose(nhwc.scores, plain.scores, rtol=0.05)


def test_early_stop_stops_converged_images_and_keeps_their_best_iterate(vae, slices):
    x, _ = slices
    full = RestorationScorer(vae, steps=60, lr=1e-2, lam=1.0, tol=0.0).score(x)
    # restored images are (near) optimal for the prior: restarting from them, nothing is left to move
    converged = full.extra["restored"]
    again = RestorationScorer(vae, steps=60, lr=1e-2, lam=1.0, tol=2e-3).score(converged)
    taken = again.extra["steps"]
    assert (taken < 60).all() and taken.mean() < 30
    obj = again.extra["objective"]
    for i, t in enumerate(taken.astype(int)):  # a frozen image's trace stops changing after its last step
        assert (obj[i, t:] == obj[i, t]).all()
    np.testing.assert_allclose(again.extra["best_objective"], obj.min(1), rtol=1e-6)
    # and from the raw slices, the early stop saves steps while the maps stay close to the full run
    early = RestorationScorer(vae, steps=60, lr=1e-2, lam=1.0, tol=2e-3).score(x)
    assert early.extra["steps"].mean() < 60
    assert np.corrcoef(early.scores, full.scores)[0, 1] > 0.9


def test_weights_are_frozen_while_scoring_and_restored_after_concurrent_scorers(vae, slices):
    x, _ = slices
    seen = []
    hook = vae.register_forward_pre_hook(
        lambda mod, args: seen.append(any(p.requires_grad for p in mod.parameters()))
    )
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda _: RestorationScorer(vae, steps=3).score(x[:4]).maps, range(3)))
    finally:
        hook.remove()
    assert seen and not any(seen)  # no forward pass saw a weight that wants a gradient
    assert all(p.requires_grad for p in vae.parameters()) and all(p.grad is None for p in vae.parameters())
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
    with frozen_weights(vae), frozen_weights(vae):  # nested: only the outermost exit unfreezes
        pass
    assert all(p.requires_grad for p in vae.parameters())

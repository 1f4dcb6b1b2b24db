"""FixMatch on a VAE encoder, on a small real PneumoniaMNIST subset: the unlabelled term is what changes
the result, only confident pseudo-labels count, a seeded run repeats, and bad settings are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vaedx.data.store import TensorStore
from vaedx.diagnose.fixmatch import StrongAugment, consistency_loss, strong_augment, train_fixmatch
from vaedx.diagnose.supervised import train_supervised
from vaedx.errors import ConfigError
from vaedx.runs.networks import load_supervised

SUBSET = {"train": 400, "val": 120, "test": 40}  # first images of each official split
ARCH = {"widths": [8, 16], "latent_dim": 8}
# 5 % of 400 = 20 labelled images, 380 unlabelled ones; one-cycle over 60 steps, final weights kept
RUN = {"batch_size": 20, "epochs": 60, "lr": 3e-3, "augment": True, "schedule": "onecycle", "num_threads": 1}


@pytest.fixture(scope="module")
def pneu(pneumonia_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TensorStore, Path]:
    """(store, VAE run): the subset prepared at 28 px and a VAE trained on its training images, no labels."""
    import vaedx

    root = tmp_path_factory.mktemp("fixmatch")
    src = np.load(pneumonia_npz)
    arrays = {}
    for split, n in SUBSET.items():
        arrays[f"{split}_images"] = src[f"{split}_images"][:n]
        arrays[f"{split}_labels"] = src[f"{split}_labels"][:n]
    np.savez(root / "pneumoniamnist.npz", **arrays)
    store = vaedx.prepare(root / "pneumoniamnist.npz", root / "store")
    vaedx.train(store.root, root / "vae", epochs=8, batch_size=32, lr=3e-3, num_threads=1, quiet=True, **ARCH)
    return store, root / "vae"


def _weights(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.state_dict().values() if p.is_floating_point()])


def test_consistency_loss_counts_only_confident_pseudo_labels():
    weak = torch.tensor([[4.0, -4.0], [0.2, 0.0], [-3.0, 3.0]], requires_grad=True)  # p_max .9997 .55 .9975
    strong = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.0]], requires_grad=True)
    loss, mask = consistency_loss(weak, strong, threshold=0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    ce = torch.nn.functional.cross_entropy(strong.detach(), torch.tensor([0, 0, 1]), reduction="none")
    assert loss.item() == pytest.approx((ce[0] + ce[2]).item() / 3)  # mean over all unlabelled images
    loss.backward()
    assert weak.grad is None or not weak.grad.any()  # the pseudo-label is a target, not trained
    assert not strong.grad[1].any() and strong.grad[0].any() and strong.grad[2].any()
    loss, mask = consistency_loss(weak.detach(), strong.detach(), threshold=1.0)
    assert not mask.any() and loss.item() == 0.0


def test_strong_view_changes_real_images_within_range_and_repeats_with_its_seed(pneu):
    store, _ = pneu
    x = torch.from_numpy(np.array(store.images[:16]))
    a = strong_augment(x, StrongAugment(), torch.Generator().manual_seed(1))
    b = strong_augment(x, StrongAugment(), torch.Generator().manual_seed(1))
    c = strong_augment(x, StrongAugment(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert (a - c).abs().mean() > 0.02 and (a - x).abs().mean() > 0.02
    only_cutout = StrongAugment(
        rotate_deg=0, scale=0, translate=0, contrast=0, brightness=0, gamma=0, cutout=1
    )
    cut = strong_augment(x, only_cutout, torch.Generator().manual_seed(3))
    changed = (cut != x).flatten(1).float().mean(1)
    assert (changed > 0).any() and (changed < 1).all()  # a square is filled, never the whole image


def test_without_unlabelled_images_it_is_the_supervised_fine_tuning_step_for_step(pneu):
    store, vae = pneu
    fm = train_fixmatch(store, 0.05, 3, unlabelled_ratio=0, init_from=vae, **RUN)
    ft = train_supervised(store, 0.05, 3, init_from=vae, **RUN)
    np.testing.assert_array_equal(fm.labelled_rows, ft.labelled_rows)
    torch.testing.assert_close(_weights(fm.model), _weights(ft.model))


def test_unlabelled_images_change_the_result_and_a_seeded_run_repeats(pneu, tmp_path):
    store, vae = pneu
    base = train_fixmatch(store, 0.05, 0, unlabelled_ratio=0, init_from=vae, **RUN)
    runs = [
        train_fixmatch(store, 0.05, 0, unlabelled_ratio=2, threshold=0.9, init_from=vae, **RUN, out=out)
        for out in (tmp_path / "a", None)
    ]
    fm = runs[0]
    np.testing.assert_array_equal(fm.labelled_rows, base.labelled_rows)  # the same 20 labelled images
    assert len(fm.labelled_rows) == 20
    rates = [r["mask_rate"] for r in fm.history]
    assert max(rates) > 0.2 and all(0 <= r <= 1 for r in rates)  # pseudo-labels were used
    assert any(r["loss_u"] > 0 for r in fm.history)
    assert (_weights(fm.model) - _weights(base.model)).abs().max() > 1e-3
    assert fm.history[-1]["val_auc"] != base.history[-1]["val_auc"]
    torch.testing.assert_close(_weights(fm.model), _weights(runs[1].model))  # same seed, same weights
    assert [r["loss"] for r in fm.history] == [r["loss"] for r in runs[1].history]
    meta = load_supervised(tmp_path / "a").meta
    assert meta["method"] == "fixmatch" and meta["n_unlabelled"] == 380 and meta["threshold"] == 0.9
    assert Path(meta["init_from"]).parent == vae and meta["strong"]["cutout"] == 0.5


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"unlabelled_ratio": -1}, "unlabelled_ratio must be >= 0"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
        ({"lambda_u": -0.5}, "lambda_u must be >= 0"),
        ({"strong": {"cutout": 2}}, "invalid strong augmentation"),
        ({"strong": {"blur": 1}}, "invalid strong augmentation"),
        ({"schedule": "cosine-ish"}, "unknown schedule"),
    ],
)
def test_bad_settings_are_one_line_errors(pneu, options, match):
    store, _ = pneu
    with pytest.raises(ConfigError, match=match) as info:
        train_fixmatch(store, 0.05, 0, 1, model=ARCH, **options)
    assert "\n" not in str(info.value)


def test_all_labels_leave_nothing_to_pseudo_label(pneu):
    store, _ = pneu
    with pytest.raises(ConfigError, match="no unlabelled training images"):
        train_fixmatch(store, 1.0, 0, 1, model=ARCH)

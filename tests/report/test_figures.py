"""Figure functions and curve bands on plain arrays: the expected artists, bands that contain the curve."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.contour import ContourSet
from sklearn.metrics import roc_auc_score, roc_curve

from vaedx.metrics.curves import GRID, pr_band, precision_on_grid, resample_indices, roc_band, tpr_on_grid
from vaedx.report.figures import (
    class_reliability_figure,
    confusion_figure,
    curve_figure,
    image_strip,
    latent_figure,
    overlay_grid,
    reconstruction_grid,
    reliability_figure,
    to_png,
    training_curves,
)


def _scores(n: int = 80, shift: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return y, rng.normal(size=n) + shift * y


def test_roc_band_brackets_a_separable_and_a_random_scorer():
    y, s = _scores(shift=0.0)
    band = roc_band(y, s, n_boot=100, seed=1)
    assert band.area == pytest.approx(roc_auc_score(y, s))
    assert np.all(band.low <= band.high + 1e-12)
    assert np.all(band.high - band.low >= 0) and (band.high - band.low).max() > 0.2  # chance: wide band
    perfect = roc_band(y, y * 10.0 + 0.1 * s, n_boot=50)
    assert perfect.area == 1.0 and np.allclose(perfect.low[1:], 1.0)


def test_grid_readings_follow_the_sklearn_curves():
    y, s = _scores()
    fpr, tpr, _ = roc_curve(y, s)
    expected = [tpr[fpr <= g].max() for g in GRID]  # best TPR at FPR <= each grid value
    assert np.array_equal(tpr_on_grid(y, s), expected)
    prec = precision_on_grid(y, s)
    assert np.all(np.diff(prec) <= 1e-12)  # interpolated precision never rises with recall
    band = pr_band(y, s, n_boot=50)
    assert band.low.shape == GRID.shape and 0 < band.area <= 1


def test_resampling_by_patient_draws_whole_patients():
    groups = np.repeat(np.arange(10), 3)
    for idx in resample_indices(30, groups, n_boot=20, seed=0):
        assert len(idx) == 30
        counts = np.bincount(idx, minlength=30).reshape(10, 3)
        assert np.all(counts == counts[:, :1])  # the three rows of a patient come together


def test_curve_figure_has_one_curve_and_one_band_per_scorer():
    bands = {}
    for k, name in enumerate(("vae/residual", "vae/ssim", "pca/residual")):
        y, s = _scores(shift=k * 0.7, seed=k)
        bands[name] = roc_band(y, s, n_boot=30)
    fig = curve_figure("roc", bands)
    ax = fig.axes[0]
    labelled = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert len(labelled) == 3
    # fill_between's bands (a FillBetweenPolyCollection from matplotlib 3.10 on, a subclass)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all("AUROC" in t for t in legend) and legend[0].startswith("vae/residual")
    assert to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_plot_train_and_val_per_logged_term():
    m = {"epoch": np.arange(1, 6.0)}
    for split in ("train", "val"):
        m[f"{split}_recon"], m[f"{split}_kl"] = np.linspace(5, 1, 5), np.linspace(0.1, 0.5, 5)
        m[f"{split}_loss"] = m[f"{split}_recon"] + m[f"{split}_kl"]
    fig = training_curves("vae", m)
    assert len(fig.axes) == 3
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    one = np.array([2.0])
    pca = {"epoch": np.array([1.0]), "train_loss": one, "val_loss": one + 1, "train_recon": one,
           "train_kl": np.array([0.0])}  # fmt: skip
    assert len(training_curves("pca", pca).axes) == 1  # recon == loss and KL == 0: only the loss panel


def test_overlay_grid_draws_threshold_contour_and_mask_outline():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 16, 16)).astype(np.float32)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[:, 4:8, 4:8] = 1
    cases = {"true positives": [0, 1], "false positives": [2], "false negatives": []}
    fig = overlay_grid(images, maps, masks, cases, 0.8, "vae/residual")
    assert len(fig.axes) == 3  # one row per case
    contours = [[c for c in ax.collections if isinstance(c, ContourSet)] for ax in fig.axes]
    assert [len(c) for c in contours] == [2, 2, 0]  # threshold contour + mask outline where images are shown
    assert [len(ax.images) for ax in fig.axes] == [2, 2, 1]  # image + heatmap; the empty row a blank
    assert any(t.get_text() == "none" for ax in fig.axes for t in ax.texts)  # the empty row says so


def test_latent_figure_colours_each_label_in_each_panel():
    xy = np.random.default_rng(0).normal(size=(20, 2))
    labels = ["lesion", "normal"] * 10
    fig = latent_figure({"PCA": xy, "t-SNE": xy}, labels, "latent", order=["normal", "lesion"])
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert sum(isinstance(c, PathCollection) for c in ax.collections) == 2
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["normal", "lesion"]


def test_confusion_reliability_and_image_figures():
    fig = confusion_figure([[11, 1], [5, 7]], ["normal", "lesion"], "cm")
    numbers = sorted(t.get_text() for t in fig.axes[0].texts)
    assert numbers == ["1", "11", "5", "7"]
    y, s = _scores()
    p = 1 / (1 + np.exp(-s))
    rel = reliability_figure(y, p, "reliability")
    assert any(ln.get_label() == "model" and len(ln.get_xdata()) >= 2 for ln in rel.axes[0].get_lines())
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    grid = reconstruction_grid(x, x * 0.9, list("abcd"), "vae")
    assert [len(ax.images) for ax in grid.axes] == [1, 1, 1]  # input / reconstruction / residual rows
    assert [t.get_text() for t in grid.axes[0].texts] == list("abcd")
    strip = image_strip(np.concatenate([x, x, x]), [], "samples", per_row=8)
    assert len(strip.axes) == 2 and strip.axes[0].images[0].get_array().shape == (8, 8 * 9 - 1)


def test_class_reliability_figure_has_a_curve_per_class_that_follows_the_frequencies():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(600, 3)) * 2
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in prob])  # drawn from prob: calibrated by construction
    fig = class_reliability_figure(y, prob, ["meningioma", "glioma", "pituitary"], "per class")
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert set(lines) == {"perfectly calibrated", "meningioma", "glioma", "pituitary"}
    for name in ("meningioma", "glioma", "pituitary"):
        mean, frac = lines[name].get_xdata(), lines[name].get_ydata()
        assert len(mean) >= 5 and np.abs(frac - mean).max() < 0.2

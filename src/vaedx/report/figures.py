"""The report's figures: one function per figure, each returning a matplotlib Figure.

Why ``matplotlib.figure.Figure`` rather than pyplot: figures made this way are not registered in pyplot's
global state, so nothing leaks between reports or threads and no backend has to be chosen (saving uses
Agg). The functions take plain arrays, so they are tested without any trained model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import ConfusionMatrixDisplay

from vaedx.metrics.curves import CurveBand

CASE_ROWS = ("true positives", "false positives", "false negatives")
LOSS_TERMS = (("loss", "loss"), ("recon", "reconstruction term"), ("kl", "KL term"))


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of the figure (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # constrained layout already fits the figure
    return buf.getvalue()


def _grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) for display (mean over channels)."""
    a = np.asarray(image, dtype=np.float32)
    return a.mean(axis=0) if a.ndim == 3 else a


def _informative(metrics: Mapping[str, np.ndarray], term: str) -> bool:
    """A logged term worth a panel: some finite value, not all zero (AE/PCA KL), not a copy of the loss."""
    v = metrics.get(f"train_{term}")
    if v is None or not np.isfinite(v).any():
        return False
    if term == "loss":
        return True
    return bool(np.nanmax(np.abs(v)) > 0) and not np.allclose(v, metrics["train_loss"], equal_nan=True)


def training_curves(name: str, metrics: Mapping[str, np.ndarray]) -> Figure:
    """Loss terms per epoch, train (solid) vs validation (dashed), one panel per informative term.

    For a VAE the loss is the negative ELBO (reconstruction NLL + beta * KL); AE and PCA log only a loss.
    """
    terms = [(k, t) for k, t in LOSS_TERMS if _informative(metrics, k)]
    fig = Figure(figsize=(4 * max(1, len(terms)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(terms)), squeeze=False)[0]
    epoch = metrics["epoch"]
    marker = "o" if len(epoch) < 15 else None
    for ax, (key, title) in zip(axes, terms, strict=False):
        for split, style in (("train", "-"), ("val", "--")):
            values = metrics.get(f"{split}_{key}")
            if values is not None and np.isfinite(values).any():
                ax.plot(epoch, values, style, marker=marker, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(f"training curves: {name}")
    return fig


def tile(images: np.ndarray | Sequence[np.ndarray], n: int | None = None) -> np.ndarray:
    """(H, n*(W+1)-1) mosaic of (H, W) or (C, H, W) images side by side, NaN in the gaps and empty slots.

    Why mosaics: one axes per row instead of one per image makes the image grids ~10x faster to draw.
    """
    arrays = [_grey(a) for a in images]
    n = max(n or len(arrays), 1)
    h, w = arrays[0].shape if arrays else (1, 1)
    out = np.full((h, n * (w + 1) - 1), np.nan, dtype=np.float32)
    for k, a in enumerate(arrays[:n]):
        out[:, k * (w + 1) : k * (w + 1) + w] = a
    return out


def _row_axes(fig: Figure, rows: int) -> list[Any]:
    axes = list(fig.subplots(rows, 1, squeeze=False)[:, 0])
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return axes


def _column_titles(ax: Any, titles: Sequence[str], width: int) -> None:
    for k, t in enumerate(titles):
        ax.text(k * (width + 1) + (width - 1) / 2, -1, t, ha="center", va="bottom", fontsize=7)


def reconstruction_grid(images: np.ndarray, recons: np.ndarray, titles: Sequence[str], name: str) -> Figure:
    """Rows input / reconstruction / |residual|, one column per image."""
    n = len(images)
    w = images.shape[-1]
    fig = Figure(figsize=(1.2 * n + 0.8, 4.4), layout="constrained")
    axes = _row_axes(fig, 3)
    resid = np.abs(images - recons)
    vmax = float(np.percentile(resid, 99.5)) or 1.0
    axes[0].imshow(tile(images), cmap="gray", vmin=0, vmax=1)
    axes[1].imshow(tile(recons), cmap="gray", vmin=0, vmax=1)
    axes[2].imshow(tile(resid), cmap="magma", vmin=0, vmax=vmax)
    _column_titles(axes[0], titles, w)
    for ax, label in zip(axes, ("input", "reconstruction", "|residual|"), strict=True):
        ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"reconstructions: {name}")
    return fig


def overlay_grid(
    images: np.ndarray,
    maps: np.ndarray,
    masks: np.ndarray | None,
    cases: Mapping[str, Sequence[int]],
    pixel_threshold: float | None,
    title: str,
    per_row: int = 4,
) -> Figure:
    """Heatmap over the image, cyan contour at the calibrated pixel threshold, green ground-truth outline.

    ``cases`` maps a row name (true positives, ...) to positions in ``images``/``maps``; one row each.
    """
    fig = Figure(figsize=(1.7 * per_row + 0.8, 1.8 * len(cases) + 0.5), layout="constrained")
    axes = _row_axes(fig, len(cases))
    maps = np.asarray(maps, dtype=np.float32)
    lo, hi = np.percentile(maps, [1, 99.5])
    for ax, (row_name, picks) in zip(axes, cases.items(), strict=True):
        ax.set_ylabel(row_name, fontsize=8)
        if not picks:
            ax.imshow(np.full_like(tile(images[:1], per_row), np.nan))  # keeps the row's size
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            continue
        m = tile([maps[i] for i in picks], per_row)
        ax.imshow(tile([images[i] for i in picks], per_row), cmap="gray")
        ax.imshow(m, cmap="inferno", alpha=0.45, vmin=lo, vmax=max(hi, lo + 1e-8))
        above = np.nan_to_num(m, nan=-np.inf) > pixel_threshold if pixel_threshold is not None else None
        if above is not None and above.any() and not above[np.isfinite(m)].all():
            ax.contour(above, levels=[0.5], colors="cyan", linewidths=0.9)
        if masks is not None and any(masks[i].any() for i in picks):
            outline = np.nan_to_num(tile([masks[i] for i in picks], per_row), nan=0.0) > 0
            ax.contour(outline, levels=[0.5], colors="lime", linewidths=0.9)
    calibrated = pixel_threshold is not None
    keys = ["cyan: calibrated pixel threshold" if calibrated else "no pixel threshold calibrated"]
    keys += ["green: ground-truth mask"] if masks is not None else []
    fig.suptitle(f"{title}  ({', '.join(keys)})", fontsize=9)
    return fig


def curve_figure(kind: str, bands: Mapping[str, CurveBand], prevalence: float | None = None) -> Figure:
    """All scorers on one ROC (kind="roc") or PR (kind="pr") plot, each with its 95 % bootstrap band."""
    fig = Figure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.subplots()
    metric = "AUROC" if kind == "roc" else "AP"
    for label, b in bands.items():
        (line,) = ax.plot(b.x, b.y, drawstyle="steps-post", label=f"{label} ({metric} {b.area:.3f})")
        step = "post" if kind == "roc" else None  # TPR on the FPR grid is a step function; precision is not
        ax.fill_between(b.grid, b.low, b.high, step=step, color=line.get_color(), alpha=0.18)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC (bands: 95 % bootstrap)")
    else:
        if prevalence is not None:
            ax.axhline(prevalence, linestyle=":", color="grey", linewidth=0.8)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("precision-recall (bands: 95 % bootstrap)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
    return fig


def confusion_figure(
    cm: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> Figure:
    """Confusion matrix (rows true, columns predicted) via sklearn's ConfusionMatrixDisplay."""
    fig = Figure(figsize=(3.8, 3.4), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=list(class_names)).plot(
        ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title, fontsize=9)
    return fig


def reliability_figure(y: np.ndarray, prob: np.ndarray, title: str, n_bins: int = 10) -> Figure:
    """Reliability curve (sklearn ``calibration_curve``, quantile bins) over a histogram of probabilities."""
    fig = Figure(figsize=(4.2, 4.4), layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    bins = max(2, min(n_bins, len(np.unique(prob))))
    frac, mean = calibration_curve(y, prob, n_bins=bins, strategy="quantile")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(mean, frac, "o-", label="model")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    hist.hist(prob, bins=20, range=(0, 1), color="grey")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("images")
    return fig


def class_reliability_figure(
    y: np.ndarray, prob: np.ndarray, class_names: Sequence[str], title: str, n_bins: int = 10
) -> Figure:
    """One reliability curve of P(class) per class (one-vs-rest, quantile bins), as the classwise ECE sees
    it: the top-class curve alone cannot show that one tumour type's probability is off."""
    fig = Figure(figsize=(4.2, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    for c, name in enumerate(class_names):
        p = prob[:, c]
        frac, mean = calibration_curve(
            y == c, p, n_bins=max(2, min(n_bins, len(np.unique(p)))), strategy="quantile"
        )
        ax.plot(mean, frac, "o-", color=f"C{c}", label=name, markersize=3)
    ax.set_xlabel("predicted probability of the class")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def latent_figure(
    embeddings: Mapping[str, np.ndarray], labels: Sequence[str], title: str, order: Sequence[str] = ()
) -> Figure:
    """One scatter panel per 2-D embedding (PCA, t-SNE, UMAP), points coloured by label name.

    ``order`` (e.g. the store's label names) fixes the colours: the first label is always C0.
    """
    fig = Figure(figsize=(3.8 * len(embeddings) + 0.4, 3.8), layout="constrained")
    axes = fig.subplots(1, len(embeddings), squeeze=False)[0]
    present = set(labels)
    names = [n for n in order if n in present] + sorted(present - set(order))
    lab = np.asarray(labels)
    for ax, (method, xy) in zip(axes, embeddings.items(), strict=True):
        for k, name in enumerate(names):
            sel = lab == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=9, alpha=0.75, color=f"C{k}", label=name)
        ax.set_title(method)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=7, markerscale=1.5)
    fig.suptitle(title)
    return fig


def image_strip(images: np.ndarray, titles: Sequence[str], title: str, per_row: int = 8) -> Figure:
    """A grid of grey images (prior samples, an interpolation), ``per_row`` per row, one axes per row."""
    n = len(images)
    rows = -(-n // per_row)
    w = images.shape[-1]
    fig = Figure(figsize=(1.1 * per_row + 0.4, 1.25 * rows + 0.5), layout="constrained")
    axes = _row_axes(fig, rows)
    for r, ax in enumerate(axes):
        ax.imshow(tile(images[r * per_row : (r + 1) * per_row], per_row), cmap="gray", vmin=0, vmax=1)
        if titles:
            _column_titles(ax, titles[r * per_row : (r + 1) * per_row], w)
    fig.suptitle(title)
    return fig

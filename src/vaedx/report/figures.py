"""The report's figures: one function per figure, each returning a matplotlib Figure.

Why ``matplotlib.figure.Figure`` rather than pyplot: figures made this way are not registered in pyplot's
global state, so nothing leaks between reports or threads and no backend has to be chosen (saving uses
Agg). The functions take plain arrays, so they are tested without any trained model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import ConfusionMatrixDisplay

from vaedx.report.curves import CurveBand

CASE_ROWS = ("true positives", "false positives", "false negatives")
LOSS_TERMS = (("loss", "loss (neg. ELBO)"), ("recon", "reconstruction"), ("kl", "KL"))


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of the figure (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # constrained layout already fits the figure
    return buf.getvalue()


def _grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) for display (mean over channels)."""
    a = np.asarray(image, dtype=np.float32)
    return a.mean(axis=0) if a.ndim == 3 else a


def training_curves(name: str, metrics: Mapping[str, np.ndarray]) -> Figure:
    """Loss terms per epoch, train (solid) vs validation (dashed), one panel per term that was logged."""
    terms = [(k, t) for k, t in LOSS_TERMS if np.isfinite(metrics.get(f"train_{k}", np.array([np.nan]))).any()]
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


def reconstruction_grid(images: np.ndarray, recons: np.ndarray, titles: Sequence[str], name: str) -> Figure:
    """Rows input / reconstruction / |residual|, one column per image."""
    n = len(images)
    fig = Figure(figsize=(1.3 * n + 1, 4.3), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    resid = np.abs(images - recons)
    vmax = float(np.percentile(resid, 99.5)) or 1.0
    for j in range(n):
        axes[0, j].imshow(_grey(images[j]), cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(_grey(recons[j]), cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(_grey(resid[j]), cmap="magma", vmin=0, vmax=vmax)
        axes[0, j].set_title(titles[j], fontsize=8)
    for i, label in enumerate(("input", "reconstruction", "|residual|")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
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

    ``cases`` maps a row name (true positives, ...) to positions in ``images``/``maps``.
    """
    fig = Figure(figsize=(1.6 * per_row + 1.2, 1.75 * len(cases) + 0.6), layout="constrained")
    axes = fig.subplots(len(cases), per_row, squeeze=False)
    lo, hi = np.percentile(np.asarray(maps), [1, 99.5])
    for r, (row_name, picks) in enumerate(cases.items()):
        axes[r, 0].set_ylabel(row_name, fontsize=8)
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(picks):
                ax.set_frame_on(False)
                if c == 0:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
                continue
            i = picks[c]
            m = np.asarray(maps[i], dtype=np.float32)
            ax.imshow(_grey(images[i]), cmap="gray")
            ax.imshow(m, cmap="inferno", alpha=0.45, vmin=lo, vmax=max(hi, lo + 1e-8))
            if pixel_threshold is not None and (m > pixel_threshold).any() and not (m > pixel_threshold).all():
                ax.contour(m > pixel_threshold, levels=[0.5], colors="cyan", linewidths=0.9)
            if masks is not None and masks[i].any():
                ax.contour(np.asarray(masks[i]) > 0, levels=[0.5], colors="lime", linewidths=0.9)
    fig.suptitle(f"{title}  (cyan: calibrated pixel threshold, green: ground-truth mask)", fontsize=9)
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


def confusion_figure(cm: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Figure:
    """Confusion matrix (rows true, columns predicted) via sklearn's ConfusionMatrixDisplay."""
    fig = Figure(figsize=(3.8, 3.4), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=list(class_names)).plot(
        ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(title, fontsize=9)
    return fig


def reliability_figure(y: np.ndarray, prob: np.ndarray, title: str, n_bins: int = 10) -> Figure:
    """Reliability curve (sklearn ``calibration_curve``, quantile bins) with the histogram of probabilities."""
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


def latent_figure(embeddings: Mapping[str, np.ndarray], labels: Sequence[str], title: str) -> Figure:
    """One scatter panel per 2-D embedding (PCA, t-SNE, UMAP), points coloured by label name."""
    fig = Figure(figsize=(3.8 * len(embeddings) + 0.4, 3.8), layout="constrained")
    axes = fig.subplots(1, len(embeddings), squeeze=False)[0]
    names = list(dict.fromkeys(labels))
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
    """A grid of grey images (prior samples, an interpolation), ``per_row`` per row."""
    n = len(images)
    rows = -(-n // per_row)
    fig = Figure(figsize=(1.2 * per_row, 1.35 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, per_row, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k < n:
            ax.imshow(_grey(images[k]), cmap="gray", vmin=0, vmax=1)
            if titles:
                ax.set_title(titles[k], fontsize=7)
    fig.suptitle(title)
    return fig

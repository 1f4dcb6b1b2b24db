"""Report sections that run the trained models: reconstructions, latent-space maps, prior samples.

Why they run on the store's test split (else val): these figures illustrate what the model does on images
it was not fitted on. Subsets are drawn with the report's seed, so rebuilding gives the same figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaedx.anomaly.calibration import default_normal_label
from vaedx.data.store import TensorStore
from vaedx.errors import VaedxError
from vaedx.models.config import KIND_NAMES
from vaedx.models.device import model_device
from vaedx.report.collect import RunInfo
from vaedx.report.context import Context
from vaedx.report.figures import image_strip, latent_figure, reconstruction_grid
from vaedx.report.html import Section

PER_CLASS = 4
MAX_LATENT_POINTS = 1000
NO_STORE = "no tensor store: pass --store (or put it in <pipeline>/store) to get {what}"


def eval_rows(store: TensorStore) -> tuple[np.ndarray, str]:
    """Rows of the test split, else val, else all rows, and the split's name."""
    for split in ("test", "val"):
        rows = store.select(split=split)
        if rows.size:
            return rows, split
    return np.arange(len(store)), "all"


def label_names(store: TensorStore, rows: np.ndarray) -> list[str]:
    names = [*store.label_names, "unlabelled"]
    return [names[c] if c >= 0 else "unlabelled" for c in store.labels[rows]]


def usable(run: RunInfo, store: TensorStore, sec: Section) -> Any | None:
    """The run's loaded model when it loads and fits the store; otherwise a note and None."""
    try:
        loaded = run.loaded
        store.check_compatible(loaded.preprocess, loaded.image_shape)
    except VaedxError as e:
        sec.note(f"{run.name}: skipped ({e})")
        return None
    return loaded


def reconstruct(model: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            return model.reconstruct(torch.from_numpy(x).to(model_device(model))).float().cpu().numpy()
    return np.asarray(model.reconstruct(x), dtype=np.float32)


def pick_examples(
    store: TensorStore, rows: np.ndarray, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """Up to PER_CLASS normal and PER_CLASS abnormal rows (seeded draw, in store order)."""
    normal = store.label_index(default_normal_label(store.label_names))
    labels = store.labels[rows]
    picks = []
    for sel in (labels == normal, (labels >= 0) & (labels != normal)):
        cand = rows[sel]
        k = min(PER_CLASS, cand.size)
        picks.append(sorted(rng.choice(cand, size=k, replace=False).tolist()) if k else [])
    return picks[0], picks[1]


def reconstruction_section(ctx: Context) -> Section:
    sec = Section("reconstructions", "Reconstructions")
    store = ctx.pipe.store
    if store is None:
        sec.note(NO_STORE.format(what="reconstructions"))
        return sec
    rows, split = eval_rows(store)
    normal, abnormal = pick_examples(store, rows, ctx.rng())
    chosen = np.array(normal + abnormal, dtype=int)
    if not chosen.size:
        sec.note(f"the {split} split has no labelled images to reconstruct")
        return sec
    x = np.asarray(store.images[chosen], dtype=np.float32)
    titles = [f"{n} #{i}" for n, i in zip(label_names(store, chosen), chosen, strict=True)]
    for run in ctx.pipe.runs.values():
        loaded = usable(run, store, sec)
        if loaded is None:
            continue
        fig = reconstruction_grid(x, reconstruct(loaded.model, x), titles, f"{run.name} ({split} split)")
        caption = (
            f"{run.name}: input / reconstruction / absolute residual, normal then abnormal {split} images"
        )
        ctx.add_figure(sec, fig, f"reconstructions_{run.name}", caption)
    if not abnormal:
        sec.note(f"the {split} split has no abnormal images: only normal ones are shown")
    return sec


def embeddings(z: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """2-D PCA and t-SNE (sklearn) of latent codes, and UMAP when the umap package is installed."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    out: dict[str, np.ndarray] = {}
    if z.shape[1] >= 2:
        pca = PCA(n_components=2, random_state=seed).fit(z)
        share = pca.explained_variance_ratio_.sum()
        out[f"PCA ({100 * share:.0f} % of variance)"] = pca.transform(z)
    else:
        out["latent dim 1 (vs index)"] = np.column_stack([z[:, 0], np.arange(len(z))])
    if len(z) > 5:
        perplexity = float(min(30.0, (len(z) - 1) / 3))
        tsne = TSNE(2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed)
        out["t-SNE"] = tsne.fit_transform(z)
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        return out
    out["UMAP"] = umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    return out


def latent_section(ctx: Context) -> Section:
    from vaedx.diagnose.features import latent_features

    sec = Section("latent", "Latent space")
    store = ctx.pipe.store
    if store is None:
        sec.note(NO_STORE.format(what="the latent-space map"))
        return sec
    rows, split = eval_rows(store)
    if rows.size > MAX_LATENT_POINTS:
        rows = np.sort(ctx.rng().choice(rows, size=MAX_LATENT_POINTS, replace=False))
    labels = label_names(store, rows)
    runs = [r for r in ctx.pipe.runs.values() if r.name == ctx.pipe.main or r.kind == "pca"]
    for run in runs:
        loaded = usable(run, store, sec)
        if loaded is None:
            continue
        z = latent_features(loaded, store.images[rows], include=("mu",))
        title = f"latent means: {run.name}, {len(rows)} {split} images"
        order = [*store.label_names, "unlabelled"]
        fig = latent_figure(embeddings(z, ctx.seed), labels, title, order)
        ctx.add_figure(
            sec, fig, f"latent_{run.name}", f"{run.name}: posterior means in 2-D, coloured by label"
        )
    try:
        import umap  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        sec.note("UMAP not shown: install the umap-learn package to add it")
    return sec


def generative_section(ctx: Context) -> Section:
    sec = Section("generative", "Prior samples and interpolation")
    run = ctx.pipe.main_run
    if run.kind != "vae":
        kind = KIND_NAMES.get(run.kind, run.kind)
        sec.note(f"the main model {run.name} is a {kind}, not a VAE: it has no prior to sample from")
        return sec
    try:
        model = run.loaded.model
    except VaedxError as e:
        sec.note(f"{run.name}: skipped ({e})")
        return sec
    gen = torch.Generator().manual_seed(ctx.seed)
    samples = model.sample(16, generator=gen).float().cpu().numpy()
    ctx.add_figure(
        sec, image_strip(samples, [], f"16 samples from the prior: {run.name}"), "prior_samples",
        f"{run.name}: decoded z ~ N(0, I), seed {ctx.seed}",
    )  # fmt: skip
    store = ctx.pipe.store
    if store is None:
        sec.note(NO_STORE.format(what="an interpolation between a normal and an abnormal image"))
        return sec
    rows, split = eval_rows(store)
    normal, abnormal = pick_examples(store, rows, ctx.rng())
    if not normal or not abnormal or usable(run, store, sec) is None:
        sec.note(f"the {split} split lacks a normal or an abnormal image: no interpolation")
        return sec
    a, b = (torch.from_numpy(np.array(store.images[i], dtype=np.float32)) for i in (normal[0], abnormal[0]))
    path = model.interpolate(a, b, steps=8).float().cpu().numpy()
    strip = np.concatenate([a.numpy()[None], path, b.numpy()[None]])
    titles = [f"normal #{normal[0]}", *[f"{t:.2f}" for t in np.linspace(0, 1, 8)], f"abnormal #{abnormal[0]}"]
    fig = image_strip(strip, titles, f"latent interpolation: {run.name}", per_row=len(strip))
    caption = "decoded points on the line between the posterior means of a normal and an abnormal image"
    ctx.add_figure(sec, fig, "interpolation", caption)
    return sec

"""Choose the scorer and post-processing on the validation split when the user names no scorer.

Why: which residual works depends on the data (bright lesions in FLAIR favour the signed residual, other
findings the unsigned one or SSIM) and so does the smoothing, so a fixed default loses on data it was not
tuned on. ``vaedx detect`` without ``--scorer`` therefore scores the store's **val** split - never test,
which would leak into every figure reported on it - with each cheap scorer the model allows (one forward
pass per image, no optimisation or sampling) under each post-processing of a small grid, and keeps the best:
by pixel AUPRC inside the head (best Dice breaks ties) when val has lesion masks, else by image AUROC of
normal vs the rest when val has both, else the model's recorded default (``TrainConfig.detect``, set by a
preset; plain ``residual`` without one). Without a store (files, volumes) a choice saved earlier with the
run's calibration (``--save-calibration``) applies, since the thresholds saved with it fit only it.
Candidates are tried recorded default first and stop when the time budget is spent; every candidate, its
figure and what was left out are recorded (``ScoringChoice``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from vaedx.anomaly.calibration import CalibrationFile, ScoringChoice, choose_normal_label
from vaedx.anomaly.registry import available_scorers
from vaedx.anomaly.scoring import PostSpec, run_scorers, store_inputs
from vaedx.data.store import TensorStore
from vaedx.metrics.measures import auprc, auroc, best_dice
from vaedx.runs.presets import DetectDefaults

# cheap: one forward pass per image; the likelihood, gradient, sampling and restoration scorers cost 2-100x
CANDIDATE_SCORERS: tuple[str, ...] = ("residual_signed", "residual", "residual_intensity", "ssim")
# every entry masks to the head, so each is scored on the same pixels and the figures compare
CANDIDATE_POSTS: tuple[str, ...] = (
    "foreground", "foreground,median=3", "foreground,median=5", "foreground,gaussian=1",
)  # fmt: skip
FALLBACK = DetectDefaults(scorer="residual", postprocess="", options={})
SPLIT = "val"
DEFAULT_BUDGET_S = 300.0


def post_text(post: PostSpec) -> str:
    """PostSpec back to its --postprocess spelling ('' = none)."""
    parts = ["foreground"] if post.foreground else []
    parts += [f"median={post.median}"] if post.median else []
    parts += [f"gaussian={post.gaussian:g}"] if post.gaussian else []
    return ",".join(parts)


def recorded_default(loaded: Any) -> DetectDefaults:
    """The model's own scoring default (set by a preset), else plain residual with no post-processing."""
    rec = getattr(loaded.config, "detect", None)
    return rec if rec is not None else FALLBACK


def _unique(items: Sequence[str], key: Any = lambda x: x) -> list[str]:
    seen, out = set(), []
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            out.append(item)
    return out


def _rank(c: dict[str, Any]) -> tuple[float, float, int]:
    """Best figure, then best Dice, then earlier candidate (the recorded default comes first)."""
    value = -1.0 if c["value"] is None else c["value"]
    return -value, -(c.get("dice") or 0.0), c["order"]


def choose_scoring(
    loaded: Any,
    store: TensorStore | None,
    *,
    post: PostSpec | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
    normal_label: str | None = None,
) -> ScoringChoice:
    """Pick a scorer (and, unless ``post`` is given, a post-processing) on the store's val split.

    ``loaded`` is a :class:`vaedx.runs.loaded.LoadedModel`; ``options`` are the user's scorer options, which
    win over the recorded default's. Without a store the choice saved with the run's calibration is
    returned; without that, val rows, masks or labels the recorded default, with the reason.
    """
    t0 = time.perf_counter()
    rec = recorded_default(loaded)
    options = options or {}

    def opts_for(name: str) -> dict[str, Any]:
        return {**rec.options, **options.get(name, {})}

    def default(reason: str, **extra: Any) -> ScoringChoice:
        chosen_post = post_text(post) if post is not None else rec.postprocess
        return ScoringChoice(
            scorer=rec.scorer, postprocess=chosen_post, options=opts_for(rec.scorer),
            metric="recorded_default", reason=reason, budget_s=budget_s,
            seconds=round(time.perf_counter() - t0, 2), **extra,
        )  # fmt: skip

    if store is None:
        saved = CalibrationFile.load(loaded.path).selection
        if saved is not None and (post is None or saved.postprocess == post_text(post)):
            return saved.model_copy(update={"options": {**saved.options, **options.get(saved.scorer, {})}})
        return default("no store to choose on: the model's recorded default")
    inputs = store_inputs(store, loaded.preprocess, loaded.image_shape, SPLIT)
    where = {"store": str(store.root), "n_images": len(inputs.rows)}
    if not inputs.rows:
        return default(f"the store has no '{SPLIT}' rows: the model's recorded default", **where)
    masks = inputs.masks if inputs.masks is not None and bool(inputs.masks.any()) else None
    labels = None
    if masks is None:
        names = store.label_names
        normal = choose_normal_label(names, normal_label) if names else ""
        labels = np.array([r["label"] != normal for r in inputs.rows])
        if not names or labels.all() or not labels.any():
            why = "no lesion masks and not both normal and abnormal images on val"
            return default(f"{why}: the model's recorded default", **where)
    metric = "pixel_auprc" if masks is not None else "image_auroc"
    offered = set(available_scorers(loaded.model))
    scorers = [s for s in _unique([rec.scorer, *CANDIDATE_SCORERS]) if s in offered]
    if post is not None:
        posts = [post_text(post)]
    else:
        first = [rec.postprocess] if PostSpec.parse(rec.postprocess).foreground else []
        posts = _unique([*first, *CANDIDATE_POSTS], key=lambda t: PostSpec.parse(t))
    tried: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name in scorers:
        for text in posts:
            if tried and time.perf_counter() - t0 > budget_s:
                skipped.append({"scorer": name, "postprocess": text})
                continue
            spec = PostSpec.parse(text)
            scored = run_scorers(loaded.model, inputs.images, [name], {name: opts_for(name)}, spec)
            entry: dict[str, Any] = {"order": len(tried), "scorer": name, "postprocess": text}
            if masks is not None:
                maps, valid = scored.maps[name], scored.valid
                keep = np.ones(masks.shape, dtype=bool) if valid is None else valid
                entry["value"] = auprc(masks[keep].astype(bool), maps[keep])
                entry["dice"] = float(best_dice(maps, masks, valid=valid)[0])
            else:
                entry["value"] = auroc(labels, scored.scores[name])
            tried.append(entry)
    best = min(tried, key=_rank)
    return ScoringChoice(
        scorer=best["scorer"], postprocess=best["postprocess"], options=opts_for(best["scorer"]),
        metric=metric, value=best["value"], dice=best.get("dice"), split=SPLIT,
        reason=f"best {metric} on the '{SPLIT}' split of {len(tried)} candidates",
        seconds=round(time.perf_counter() - t0, 2), budget_s=budget_s, candidates=tried, skipped=skipped,
        **where,
    )  # fmt: skip

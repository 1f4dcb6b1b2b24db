"""Apply a saved diagnosis model to new images: class, calibrated probability and nearest training cases.

Why files are preprocessed here with the *encoder's* PreprocessConfig: the classifier only understands the
latent space of images prepared exactly like its training data, so new files go through the same
transform, and a store prepared differently is refused (ModelMismatchError).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.preprocess import PreprocessConfig
from vaedx.diagnose.explain import LatentNeighbours, describe_neighbours
from vaedx.diagnose.model import DiagnosisModel
from vaedx.errors import InputError, ModelMismatchError
from vaedx.runs.inputs import ModelInputs


def read_image_files(
    files: Sequence[str | Path], preprocess: PreprocessConfig
) -> tuple[np.ndarray, list[str]]:
    """(N, C, H, W) float32 images from files (a multi-frame file gives several), and a name for each."""
    if not files:
        raise InputError("no images to diagnose")
    images, refs = ModelInputs(preprocess).files(files)
    return images, [str(f) if k == 0 else f"{f}#{k}" for f, k in refs]


def diagnose_images(
    diag: DiagnosisModel,
    loaded: Any,
    images: Any,
    refs: Sequence[str] | None = None,
    k: int = 5,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One JSON-ready dict per image: class name, its calibrated probability, all class probabilities and
    the ``k`` nearest training images (k = 0: none). ``progress(done, total)`` follows the encoding."""
    feats = diag.features.compute(loaded, images, batch_size, progress)
    proba = diag.predict_proba(feats)
    codes = diag.decide(proba)
    neighbours: list[list[dict[str, Any]]] = [[] for _ in range(len(feats))]
    if k > 0 and diag.train_features is not None:
        idx, dist = LatentNeighbours(diag.train_features).query(feats, k)
        neighbours = describe_neighbours(idx, dist, diag.train_refs, diag.train_labels, diag.label_names)
    names = diag.class_names
    rows = []
    for i, code in enumerate(codes):
        col = int(np.flatnonzero(diag.classes == code)[0])
        rows.append(
            {
                "image": refs[i] if refs is not None else str(i),
                "class": names[col],
                "probability": float(proba[i, col]),
                "probabilities": {n: float(p) for n, p in zip(names, proba[i], strict=True)},
                "neighbours": neighbours[i],
            }
        )
    return rows


def attach_anomaly(
    rows: list[dict[str, Any]],
    images: Any,
    anomaly_model: str | Path,
    encoder: Any,
    scorer: str | None = None,
    heatmaps: str | Path | None = None,
    chunk: int = 1024,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Add ``row["anomaly"] = {scorer, score, threshold, flag, heatmap}`` to every row of diagnose_images.

    The anomaly model (a VAE/AE/PCA run trained on healthy images) scores with the scorer, options and
    post-processing its ``thresholds.json`` was calibrated with (as ``vaedx detect`` and the service do),
    so the flag means the same everywhere. It must take images prepared exactly like the diagnosis
    encoder's. Heatmaps are written as ``<heatmaps>/<row>.npy`` when a folder is given. Returns the set-up.
    ``progress(scored, total)`` follows the chunks, since scoring (a decoder pass per image) can take as
    long as the encoding.
    """
    from vaedx.anomaly.calibrated import resolve_scoring
    from vaedx.anomaly.registry import available_scorers
    from vaedx.anomaly.scoring import run_scorers
    from vaedx.runs.loaded import load_model

    model = load_model(anomaly_model, device=device)
    model.require_decoder()
    diffs = model.preprocess.describe_difference(encoder.preprocess)
    if diffs or model.image_shape != encoder.image_shape:
        why = "; ".join(diffs) or f"image shape {model.image_shape} vs {encoder.image_shape}"
        raise ModelMismatchError(f"the anomaly model was trained on other inputs than the encoder: {why}",
                                 model.path)  # fmt: skip
    cal = resolve_scoring(model.path, available_scorers(model.model), scorer)
    folder = Path(heatmaps) if heatmaps is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    thr = cal.image_threshold
    for start in range(0, len(rows), chunk):
        xb = np.array(images[start : start + chunk], dtype=np.float32)
        scored = run_scorers(model.model, xb, [cal.scorer], {cal.scorer: cal.options}, cal.post)
        maps, scores = scored.maps[cal.scorer], scored.scores[cal.scorer]
        for j, (amap, score) in enumerate(zip(maps, scores, strict=True)):
            i = start + j
            path = None
            if folder is not None:
                path = folder / f"{i:05d}.npy"
                np.save(path, np.asarray(amap, dtype=np.float32))
            rows[i]["anomaly"] = {
                "scorer": cal.scorer,
                "score": float(score),
                "threshold": thr,
                "flag": None if thr is None else bool(score > thr),
                "heatmap": None if path is None else str(path),
            }
        if progress is not None:
            progress(min(start + chunk, len(rows)), len(rows))
    return {"scorer": cal.scorer, "threshold": thr, "problem": cal.problem, "model": str(model.path)}

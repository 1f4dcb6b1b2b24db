"""Detection building blocks: load inputs (store rows or raw files), score them, shard/merge, write outputs.

Why separate from the CLI: calibration, detection, the benchmark and torchrun ranks all run the same
``run_scorers`` on the same inputs, so a threshold chosen on validation maps means exactly the same thing
on test maps. Maps and image scores are per image (eval mode, GroupNorm), so scoring in chunks or in
shards gives the single-process result; only the sampling scorers (uncertainty, elbo with k > 1) draw
seeded noise per chunk and so depend on the chunking.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.postprocess import foreground_mask, gaussian_filter, image_score, median_filter
from vaedx.anomaly.registry import build_scorer
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError
from vaedx.io.formats import detect_format
from vaedx.runs.inputs import ModelInputs

# Scorers whose image score is a likelihood quantity, not a summary of the map (kept after postprocess).
LIKELIHOOD_SCORES = ("elbo", "kl")
CHUNK = 256  # images per scorer call: bounds memory and drives the progress bar


@dataclass(frozen=True)
class PostSpec:
    """Map post-processing: ``foreground`` restricts maps and image scores to the body/brain; filters smooth.

    Parsed from ``--postprocess foreground,median=3,gaussian=1``; saved with thresholds, because a
    threshold chosen on filtered maps is meaningless on unfiltered ones.
    """

    foreground: bool = False
    median: int = 0
    gaussian: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> PostSpec:
        opts: dict[str, Any] = {}
        for item in (text or "").replace(" ", "").split(","):
            if not item or item == "none":
                continue
            key, _, value = item.partition("=")
            try:
                if key == "foreground":
                    opts["foreground"] = True
                elif key == "median":
                    opts["median"] = int(value or 3)
                elif key == "gaussian":
                    opts["gaussian"] = float(value or 1.0)
                else:
                    raise ConfigError(f"unknown postprocess step '{key}' (foreground, median=N, gaussian=S)")
            except ValueError:
                raise ConfigError(f"postprocess step '{item}' needs a number after '='") from None
        return cls(**opts)

    def as_dict(self) -> dict[str, Any]:
        return {"foreground": self.foreground, "median": self.median, "gaussian": self.gaussian}


@dataclass
class Inputs:
    """Preprocessed images (N,C,H,W) and one record per image (index, path, split, label, patient_id)."""

    images: np.ndarray
    rows: list[dict[str, Any]]
    masks: np.ndarray | None = None  # (N, H, W) uint8 ground truth, only from a store
    source: str = ""
    notes: list[str] = field(default_factory=list)  # facts about how inputs were read (channel mapping)


@dataclass
class Scored:
    """Per scorer: maps (N,H,W) float32 after post-processing and image scores (N,); valid (N,H,W) or None."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    valid: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------ inputs
def store_inputs(
    store: TensorStore, preprocess: PreprocessConfig, image_shape: Sequence[int], split: str | None
) -> Inputs:
    """Rows of one split (all rows when None), after checking the store was prepared like the model's data."""
    images, idx = ModelInputs(preprocess, tuple(image_shape)).store(store, split)  # type: ignore[arg-type]
    names, pids, splits, paths = [*store.label_names], store.patient_ids, store.splits, store.paths
    rows = [
        {
            "index": int(i),
            "path": file_name(str(paths[i])),
            "split": str(splits[i] or ""),
            "label": names[store.labels[i]] if store.labels[i] >= 0 else "",
            "patient_id": str(pids[i] or ""),
        }
        for i in idx
    ]
    masks = None if store.masks is None else np.asarray(store.masks[idx, 0])
    return Inputs(images, rows, masks, str(store.root))


def file_name(path: str) -> str:
    """File name only (no folders, which can carry patient names); keeps an ``npz#split/i`` row reference."""
    base, sep, ref = path.partition("#")
    return Path(base).name + sep + ref


def is_image_file(f: Path) -> bool:
    """A file in a folder that the 2-D reader takes: not hidden, not a ``_mask``, an image by content."""
    if f.name.startswith(".") or f.stem.endswith("_mask"):
        return False
    try:
        return detect_format(f) not in ("npz", None, "unknown")
    except InputError:
        return False


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, plus readable image files below each folder (mask and hidden files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [f for f in sorted(q for q in p.rglob("*") if q.is_file()) if is_image_file(f)]
        elif p.is_file():
            out.append(p)
        else:
            raise InputError("no such file or folder", p)
    if not out:
        raise InputError("no readable image files found", paths[0] if paths else ".")
    return out


def file_inputs(
    paths: Sequence[str | Path], preprocess: PreprocessConfig, image_shape: Sequence[int]
) -> Inputs:
    """Read DICOM/NIfTI/PNG files or folders, preprocess with the MODEL's config, check the shape per file."""
    reader = ModelInputs(preprocess, tuple(image_shape))  # type: ignore[arg-type]
    images, refs, notes = reader.read_files(_expand(paths))
    rows = [
        {"index": i, "path": f.name + (f"#{k}" if k else ""), "split": "", "label": "", "patient_id": ""}
        for i, (f, k) in enumerate(refs)
    ]
    return Inputs(images, rows, None, "files", notes=notes)


# ----------------------------------------------------------------------------------------------- scoring
def run_scorers(
    model: Any,
    images: np.ndarray,
    scorers: Sequence[str],
    options: dict[str, dict[str, Any]] | None = None,
    post: PostSpec = PostSpec(),
    advance: Callable[[int], None] | None = None,
) -> Scored:
    """Score every image with every scorer in chunks of CHUNK; ``advance(n)`` reports progress."""
    options = options or {}
    built = {name: build_scorer(name, model, **options.get(name, {})) for name in scorers}
    out = Scored(valid=foreground_mask(images) if post.foreground else None)
    if out.valid is not None and not out.valid.reshape(len(images), -1).any(axis=1).all():
        out.valid[~out.valid.reshape(len(images), -1).any(axis=1)] = True  # blank image: score all pixels
    for name, scorer in built.items():
        maps, scores = [], []
        for start in range(0, len(images), CHUNK):
            sl = slice(start, start + CHUNK)
            valid = None if out.valid is None else out.valid[sl]
            res = scorer.score(images[sl], valid=valid)
            m = _postprocess(res.maps, post, valid)
            s = res.scores
            if name not in LIKELIHOOD_SCORES and (post.median or post.gaussian):
                method = getattr(scorer, "image_method", "mean")
                s = image_score(m, method=method, topk_percent=scorer.topk_percent, valid=valid)
            maps.append(m.astype(np.float32))
            scores.append(np.asarray(s, dtype=np.float64))
            if advance:
                advance(len(m))
        out.maps[name], out.scores[name] = np.concatenate(maps), np.concatenate(scores)
    return out


def _postprocess(maps: np.ndarray, post: PostSpec, valid: np.ndarray | None) -> np.ndarray:
    if post.median:
        maps = median_filter(maps, post.median)
    if post.gaussian:
        maps = gaussian_filter(maps, post.gaussian)
    if valid is not None:
        maps = np.where(valid, maps, np.float32(maps.min()) if maps.size else 0).astype(np.float32)
    return maps


# ------------------------------------------------------------------------------------------ shard / merge
def shard_slice(n: int, rank: int, world: int) -> slice:
    """Contiguous block of rows for ``rank``: concatenating the blocks in rank order restores the order."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} outside world size {world}")
    bounds = np.linspace(0, n, world + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def save_shard(out: Path, rank: int, scored: Scored) -> Path:
    path = out / "shards" / f"rank{rank}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"map__{k}": v for k, v in scored.maps.items()} | {
        f"score__{k}": v for k, v in scored.scores.items()
    }
    if scored.valid is not None:
        arrays["valid"] = scored.valid
    np.savez(path, **arrays)
    return path


def merge_shards(out: Path, world: int) -> Scored:
    """Concatenate rank0..rank{world-1} shards (contiguous blocks) back into the original order."""
    parts = []
    for r in range(world):
        path = out / "shards" / f"rank{r}.npz"
        if not path.is_file():
            raise InputError("shard missing: a rank failed before writing it", path)
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    merged = Scored()
    for key in parts[0]:
        value = np.concatenate([p[key] for p in parts])
        if key == "valid":
            merged.valid = value
        elif key.startswith("map__"):
            merged.maps[key[5:]] = value
        else:
            merged.scores[key[7:]] = value
    return merged


# ----------------------------------------------------------------------------------------------- outputs
def write_scores_csv(
    path: Path, rows: Sequence[dict[str, Any]], scored: Scored, thresholds: dict[str, Any]
) -> None:
    """One row per image: record columns, then per scorer ``<name>`` score and ``<name>_flag`` (1/0/blank)."""
    base = ["index", "path", "split", "label", "patient_id"]
    if any("volume" in r for r in rows):
        base += ["volume", "slice_index"]  # rows of input volumes: which volume, which slice
    cols = list(base)
    for name in scored.scores:
        cols += [name, f"{name}_flag"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, row in enumerate(rows):
            vals = [row.get(c, "") for c in base]
            for name, s in scored.scores.items():
                thr = thresholds.get(name)
                vals += [repr(float(s[i])), "" if thr is None else int(s[i] > thr)]
            w.writerow(vals)


def read_scores_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows and scorer names (columns with a matching ``_flag`` column) of a scores.csv."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, cols = list(reader), list(reader.fieldnames or [])
    except FileNotFoundError:
        raise InputError("scores.csv not found; run `vaedx detect` first", path) from None
    names = [c for c in cols if f"{c}_flag" in cols]
    if "index" not in cols or not names:
        raise InputError("not a vaedx scores.csv (needs index and <scorer>/<scorer>_flag columns)", path)
    return rows, names


def write_overlays(
    out: Path,
    images: np.ndarray,
    rows: Sequence[dict[str, Any]],
    scored: Scored,
    pixel_thresholds: dict[str, float | None],
    limit: int,
) -> int:
    """Grey image + heatmap (alpha) + contour of the calibrated pixel threshold, for the first ``limit``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(limit, len(images))
    for name, maps in scored.maps.items():
        folder = out / "overlays" / name
        folder.mkdir(parents=True, exist_ok=True)
        lo, hi = np.percentile(maps[:n], [1, 99.5]) if n else (0, 1)
        for i in range(n):
            fig, ax = plt.subplots(figsize=(3, 3), dpi=80)
            ax.imshow(images[i].mean(axis=0), cmap="gray")
            ax.imshow(maps[i], cmap="inferno", alpha=0.45, vmin=lo, vmax=max(hi, lo + 1e-8))
            thr = pixel_thresholds.get(name)
            if thr is not None and (maps[i] > thr).any() and not (maps[i] > thr).all():
                ax.contour(maps[i] > thr, levels=[0.5], colors="cyan", linewidths=0.8)
            ax.set_axis_off()
            ax.set_title(f"{name} {scored.scores[name][i]:.3g}", fontsize=7)
            fig.savefig(folder / f"{rows[i]['index']:05d}.png", bbox_inches="tight")
            plt.close(fig)
    return n

"""``detect()``: score a store split or raw files with a trained model; maps, flags, overlays.

This is the Python entry point behind ``vaedx detect``, also called by the demo, the benchmarks and tests.
Why thresholds are calibrated here on demand: a flag is only meaningful at a threshold chosen on held-out
normals, so when thresholds for the requested scorer are missing and a store with a val split is given,
detection calibrates first (rank 0 under torchrun); otherwise flags stay empty with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vaedx.anomaly.calibration import CalibrationFile, calibrate, default_normal_label, thresholds_path
from vaedx.anomaly.scoring import (
    Inputs,
    PostSpec,
    file_inputs,
    merge_shards,
    run_scorers,
    save_shard,
    shard_slice,
    store_inputs,
    write_overlays,
    write_scores_csv,
)
from vaedx.atomic import atomic_write_json
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError
from vaedx.training.distributed import setup_runtime

console = Console(stderr=True)


def parse_options(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``--option restoration.steps=20`` -> {"restoration": {"steps": 20}} (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        scorer, dot, opt = key.partition(".")
        if not (eq and dot and scorer and opt):
            raise ConfigError(f"--option takes SCORER.NAME=VALUE, e.g. restoration.steps=20, not {item!r}")
        out.setdefault(scorer, {})[opt] = yaml.safe_load(value)
    return out


def _thresholds(
    loaded: Any, store: TensorStore | None, scorers: Sequence[str], opts: dict, post: PostSpec, is_main: bool
) -> CalibrationFile:
    """Thresholds from the run, calibrating the missing ones on the store's val split when possible."""
    cal = CalibrationFile.load(loaded.path)
    missing = [s for s in scorers if cal.lookup(s, opts.get(s, {}), post) is None]
    can = store is not None and store.select(split="val").size > 0
    if missing and can and is_main:
        console.print(f"calibrating {', '.join(missing)} on the val split of {store.root}")
        cal = calibrate(loaded, store, missing, options=opts, post=post)
    elif missing and is_main:
        console.print(
            f"[yellow]warning:[/] no thresholds for {', '.join(missing)} in {thresholds_path(loaded.path)} "
            "and no store with a val split to calibrate on: their flags are left empty"
        )
    return cal


def detect(
    model_dir: str | Path,
    out: str | Path,
    *,
    store: str | Path | None = None,
    split: str | None = "test",
    inputs: Sequence[str | Path] | None = None,
    scorers: Sequence[str] = ("residual",),
    options: dict[str, dict[str, Any]] | None = None,
    postprocess: str | PostSpec | None = None,
    max_overlays: int = 50,
    quiet: bool = False,
) -> Path:
    """Score a store split or files; write scores.csv, maps/<scorer>.npy, overlays/, detect.json into out.

    Under torchrun (WORLD_SIZE > 1) each rank scores a contiguous shard and rank 0 merges them in order.
    """
    from vaedx.runs.loaded import load_model

    if (store is None) == (not inputs):
        raise ConfigError("give either --store or --input (one of them)")
    opts = options or {}
    post = postprocess if isinstance(postprocess, PostSpec) else PostSpec.parse(postprocess)
    out = Path(out)
    rt = setup_runtime("cpu")
    try:
        loaded = load_model(model_dir)
        loaded.require_decoder()
        ts = TensorStore.open(store) if store is not None else None
        data: Inputs = (
            store_inputs(ts, loaded.preprocess, loaded.image_shape, split)
            if ts is not None
            else file_inputs(inputs or [], loaded.preprocess, loaded.image_shape)
        )
        cal = _thresholds(loaded, ts, scorers, opts, post, rt.is_main)
        rt.barrier()
        cal = CalibrationFile.load(loaded.path)
        part = shard_slice(len(data.images), rt.rank, rt.world_size)
        scored = _score(loaded.model, data.images[part], scorers, opts, post, quiet or not rt.is_main)
        if rt.distributed:
            save_shard(out, rt.rank, scored)
            rt.barrier()
            if not rt.is_main:
                return out
            scored = merge_shards(out, rt.world_size)
        _write(out, loaded, data, scored, cal, scorers, opts, post, split, max_overlays, store)
        return out
    finally:
        rt.close()


def _score(model: Any, images: Any, scorers: Sequence[str], opts: dict, post: PostSpec, quiet: bool) -> Any:
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet, transient=True) as bar:
        task = bar.add_task("scoring", total=len(images) * len(scorers))
        return run_scorers(model, images, scorers, opts, post, lambda n: bar.advance(task, n))


def _write(
    out: Path,
    loaded: Any,
    data: Inputs,
    scored: Any,
    cal: CalibrationFile,
    scorers: Sequence[str],
    opts: dict,
    post: PostSpec,
    split: str | None,
    max_overlays: int,
    store: Any,
) -> None:
    import numpy as np

    (out / "maps").mkdir(parents=True, exist_ok=True)
    found = {s: cal.lookup(s, opts.get(s, {}), post) for s in scorers}
    image_thr = {s: t.image_threshold for s, t in found.items() if t is not None}
    pixel_thr = {s: t.pixel_threshold for s, t in found.items() if t is not None}
    write_scores_csv(out / "scores.csv", data.rows, scored, image_thr)
    for name, maps in scored.maps.items():
        np.save(out / "maps" / f"{name}.npy", maps.astype(np.float32))
    if scored.valid is not None:
        np.save(out / "maps" / "valid.npy", scored.valid)
    n_over = (
        write_overlays(out, data.images, data.rows, scored, pixel_thr, max_overlays) if max_overlays else 0
    )
    labels = loaded.label_names
    atomic_write_json(
        out / "detect.json",
        {
            "model": str(loaded.path),
            "kind": loaded.kind,
            "source": "store" if store is not None else "files",
            "store": str(store) if store is not None else None,
            "split": split if store is not None else None,
            "n_images": len(data.rows),
            "scorers": list(scorers),
            "options": {s: opts.get(s, {}) for s in scorers},
            "postprocess": post.as_dict(),
            "thresholds": {s: (t.model_dump() if t is not None else None) for s, t in found.items()},
            "normal_label": default_normal_label(labels) if labels else "",
            "preprocess": loaded.preprocess.model_dump(mode="json"),
            "overlays": n_over,
        },
    )

"""``detect()``: score a store split, raw files or volumes with a trained model; maps, flags, overlays.

This is the Python entry point behind ``vaedx detect``, also called by the demo, the benchmarks and tests.
Why thresholds are calibrated here on demand: a flag is only meaningful at a threshold chosen on held-out
normals, so when the run folder holds no thresholds for the requested scorer (with the same options,
post-processing, target specificity and normal label) and a store with a val split is given, detection
calibrates first (rank 0 under torchrun); otherwise flags stay empty with a warning. The calibration used is
always written to ``<out>/thresholds.json``; it goes into the model's run folder, where ``vaedx serve`` and
``vaedx diagnose predict --anomaly-model`` read it, only with ``save_calibration=True``, so scoring a model
never changes it behind the user's back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vaedx.anomaly.calibration import (
    CalibrationFile,
    calibrate_thresholds,
    choose_normal_label,
    default_normal_label,
    thresholds_path,
)
from vaedx.anomaly.output import DetectOutput
from vaedx.anomaly.restoration_tuning import restoration_options
from vaedx.anomaly.scoring import (
    Inputs,
    PostSpec,
    merge_shards,
    run_scorers,
    save_shard,
    shard_slice,
    store_inputs,
    write_overlays,
)
from vaedx.anomaly.selection import DEFAULT_BUDGET_S, choose_scoring
from vaedx.anomaly.volumes import VOLUMES_FILE, ScoredVolume, detect_inputs, write_volume_outputs
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError
from vaedx.runs.model_card import write_run_card
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


def _normal_label(names: Sequence[str], requested: str | None) -> str:
    """The normal class calibration uses: the requested one (checked) or the guess; "" without labels."""
    if requested is None:
        return default_normal_label(names) if names else ""
    return choose_normal_label(names, requested)


def _thresholds(
    loaded: Any,
    store: TensorStore | None,
    scorers: Sequence[str],
    opts: dict,
    post: PostSpec,
    spec: float,
    normal_label: str | None,
    normal: str,
    save: bool,
) -> tuple[CalibrationFile, list[str]]:
    """The thresholds for ``scorers`` that fit the request: the run's, calibrating the missing ones on the
    store's val split when possible; also returns the names calibrated now. Only ``save`` writes into the
    run folder."""
    saved_cal = CalibrationFile.load(loaded.path)
    fits = {s for s in scorers if saved_cal.lookup(s, opts.get(s, {}), post, spec, normal_label) is not None}
    cal = saved_cal.subset(sorted(fits))
    missing = [s for s in scorers if s not in fits]
    can = store is not None and store.select(split="val").size > 0
    if missing and can and store is not None:
        console.print(
            f"calibrating {', '.join(missing)} on the val split of {store.root} "
            f"(normal label '{normal}', target specificity {spec:g})",
            soft_wrap=True,
        )
        fresh = calibrate_thresholds(
            loaded, store, missing, normal_label=normal or None, target_specificity=spec, options=opts,
            post=post, save=False,
        )  # fmt: skip
        cal.scorers.update({s: fresh.scorers[s] for s in missing})
        if save:
            saved = CalibrationFile.load(loaded.path)
            saved.scorers.update({s: fresh.scorers[s] for s in missing})
            where = saved.save(loaded.path)
            write_run_card(loaded.path)  # the run's MODEL_CARD.md lists its calibrated thresholds
            console.print(f"saved the calibration of {', '.join(missing)} to {where}", soft_wrap=True)
        return cal, missing
    if save and fits:
        where = thresholds_path(loaded.path)
        done = ", ".join(sorted(fits))
        console.print(f"the calibration of {done} is already saved in {where}", soft_wrap=True)
    if missing:
        console.print(
            f"[yellow]warning:[/] no thresholds for {', '.join(missing)} in {thresholds_path(loaded.path)} "
            "and no store with a val split to calibrate on: their flags are left empty"
        )
    return cal, []


def detect(
    model_dir: str | Path,
    out: str | Path,
    *,
    store: str | Path | None = None,
    split: str | None = "test",
    inputs: Sequence[str | Path] | None = None,
    scorers: Sequence[str] | None = ("residual",),
    options: dict[str, dict[str, Any]] | None = None,
    postprocess: str | PostSpec | None = None,
    max_overlays: int = 50,
    quiet: bool = False,
    device: str = "cpu",
    target_specificity: float = 0.95,
    normal_label: str | None = None,
    save_calibration: bool = False,
    dicom_seg: bool = False,
    tune_restoration: bool = False,
    selection_budget: float = DEFAULT_BUDGET_S,
) -> Path:
    """Score a store split or files; write scores.csv, maps/<scorer>.npy, overlays/, thresholds.json and
    detect.json into out. Input volumes (3-D NIfTI, DICOM series folders or zips, numbered slice folders)
    also get ``volumes/<id>/<scorer>_map.nii.gz`` and ``_mask.nii.gz`` in their own space and
    ``volumes.json`` (lesion volume in mm³, 3-D components): see :mod:`vaedx.anomaly.volumes`;
    ``dicom_seg`` adds a DICOM SEG per DICOM series input (the only output with patient identifiers).
    ``tune_restoration`` picks the restoration scorer's lam and steps on the store's val split first
    (:mod:`vaedx.anomaly.restoration_tuning`); without it a tuning saved with the run's calibration applies.
    Options given explicitly win over either.

    ``scorers=None`` (``vaedx detect`` without ``--scorer``): the scorer, and unless ``postprocess`` is
    given the post-processing, are chosen on the store's val split within ``selection_budget`` seconds
    (:mod:`vaedx.anomaly.selection`); the choice and its validation figures go into detect.json
    (``selection``) and thresholds.json.

    ``target_specificity`` and ``normal_label`` (None: the store's 'normal'/'no_tumour'/'healthy' label,
    else label code 0; the choice is printed and recorded) set how missing thresholds are calibrated;
    ``save_calibration`` also writes them into the model's run folder. Under torchrun (WORLD_SIZE > 1) each
    rank scores a contiguous shard and rank 0 merges them in order.
    """
    from vaedx.runs.loaded import load_model

    if (store is None) == (not inputs):
        raise ConfigError("give either --store or --input (one of them)")
    if not 0 < target_specificity <= 1:
        raise ConfigError(f"target specificity must be in (0, 1], got {target_specificity}")
    opts = options or {}
    post = postprocess if isinstance(postprocess, PostSpec) else PostSpec.parse(postprocess)
    if selection_budget < 0:
        raise ConfigError(f"the selection budget must be >= 0 seconds, got {selection_budget}")
    out = Path(out)
    rt = setup_runtime(device)
    try:
        loaded = load_model(model_dir, device=rt.device)
        loaded.require_decoder()
        ts = TensorStore.open(store) if store is not None else None
        volumes: list[ScoredVolume] = []
        if ts is not None:
            data: Inputs = store_inputs(ts, loaded.preprocess, loaded.image_shape, split)
        else:
            data, volumes = detect_inputs(inputs or [], loaded.preprocess, loaded.image_shape)
        names = ts.label_names if ts is not None else (loaded.label_names or [])
        normal = _normal_label(names, normal_label)
        choice = None
        if scorers is None:
            if tune_restoration:
                raise ConfigError("--tune-restoration tunes the restoration scorer: add --scorer restoration")
            given_post = None if postprocess is None else post
            choice = choose_scoring(
                loaded, ts, post=given_post, options=opts, budget_s=selection_budget,
                normal_label=normal or None,
            )  # fmt: skip
            scorers, post = [choice.scorer], PostSpec.parse(choice.postprocess)
            opts = {**opts, choice.scorer: choice.options}
            if rt.is_main and not quiet:
                figure = "" if choice.value is None else f" {choice.value:.3f}"
                console.print(
                    f"chose scorer {choice.scorer} with postprocess '{choice.postprocess or 'none'}': "
                    f"{choice.metric}{figure} ({choice.reason}, {choice.seconds:.0f} s)",
                    soft_wrap=True,
                )
        if tune_restoration and "restoration" not in scorers:
            raise ConfigError("--tune-restoration tunes the restoration scorer: add --scorer restoration")
        tuning = None
        if "restoration" in scorers:
            restored, tuning = restoration_options(
                loaded, ts, opts.get("restoration", {}), tune=tune_restoration, post=post,
                normal_label=normal or None,
            )  # fmt: skip
            opts = {**opts, "restoration": restored}
        if rt.is_main:
            cal, fresh = _thresholds(
                loaded, ts, scorers, opts, post, target_specificity, normal_label, normal, save_calibration
            )
            cal.restoration = tuning
            cal.selection = choice
            if choice is not None and save_calibration:  # the run keeps the choice beside its thresholds
                saved = CalibrationFile.load(loaded.path)
                saved.selection = choice
                saved.save(loaded.path)
                write_run_card(loaded.path)  # the card names the choice beside the thresholds
            if tune_restoration and save_calibration:
                saved = CalibrationFile.load(loaded.path)
                saved.restoration = tuning
                saved.save(loaded.path)
            written = DetectOutput(out).start().write_calibration(cal, scorers)
            if fresh and not save_calibration:
                console.print(
                    f"calibration written to {written} only; to let `vaedx serve` and `vaedx diagnose "
                    "predict --anomaly-model` use it, rerun with --save-calibration",
                    soft_wrap=True,
                )
        rt.barrier()
        cal = CalibrationFile.load(out)
        for note in data.notes if rt.is_main and not quiet else []:
            console.print(f"note: {note}", soft_wrap=True)
        part = shard_slice(len(data.images), rt.rank, rt.world_size)
        scored = _score(loaded.model, data.images[part], scorers, opts, post, quiet or not rt.is_main)
        if rt.distributed:
            save_shard(out, rt.rank, scored)
            rt.barrier()
            if not rt.is_main:
                return out
            scored = merge_shards(out, rt.world_size)
        calib = {"normal_label": normal, "target_specificity": target_specificity, "saved": save_calibration}
        calib["dicom_seg"] = dicom_seg
        calib["selection"] = None if choice is None else choice.model_dump(mode="json")
        args = (scorers, opts, post, split, max_overlays, store, calib, volumes)
        _write(out, loaded, data, scored, cal, *args)
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
    calib: dict[str, Any],
    volumes: Sequence[ScoredVolume] = (),
) -> None:
    target = DetectOutput.create(out)
    found = {s: cal.lookup(s, opts.get(s, {}), post) for s in scorers}
    image_thr = {s: t.image_threshold for s, t in found.items() if t is not None}
    pixel_thr = {s: t.pixel_threshold for s, t in found.items() if t is not None}
    target.write_scores(data.rows, scored, image_thr)
    n_over = (
        write_overlays(out, data.images, data.rows, scored, pixel_thr, max_overlays) if max_overlays else 0
    )
    seg = calib["dicom_seg"]
    described = write_volume_outputs(out, volumes, scored.maps, pixel_thr, seg) if volumes else []
    target.write_meta(
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
            "normal_label": calib["normal_label"],
            "target_specificity": calib["target_specificity"],
            "calibration": {"file": "thresholds.json", "saved_in_run": calib["saved"]},
            "preprocess": loaded.preprocess.model_dump(mode="json"),
            "overlays": n_over,
            "volumes": {"n": len(described), "file": VOLUMES_FILE if described else None},
            "notes": list(data.notes),
            "selection": calib.get("selection"),
        },
    )

"""``vaedx detect``: the command-line face of :func:`vaedx.anomaly.detect.detect`.

Kept free of heavy imports (torch, the scorers) so that every ``vaedx`` command starts quickly; the work is
imported when the command runs. Settings may come from ``--config`` (YAML); typed options win over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vaedx.cli.options import (
    DEVICE_HELP,
    OVERWRITE_HELP,
    THREADS_HELP,
    JsonOpt,
    QuietOpt,
    check_device,
    pick,
    print_json,
    refuse_existing,
    required,
    set_threads,
    split_list,
    with_config,
)
from vaedx.cli.options import print_config as show_config

console = Console(stderr=True)


def detect_command(
    ctx: typer.Context,
    model: Path | None = typer.Option(None, "--model", "-m", help="Trained run folder (vaedx train --out)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Tensor store to score."),
    split: str = typer.Option("test", help="Store split to score ('all' for every row)."),
    inputs: list[Path] | None = typer.Option(
        None,
        "--input",
        "-i",
        help="Image files or folders, or volumes: 3-D NIfTI, DICOM series folder or .zip, folder of "
        "numbered slices (repeat). Volumes also get NIfTI maps and lesion masks in their own space.",
    ),
    scorer: list[str] | None = typer.Option(
        None,
        "--scorer",
        help="Scorer names (repeat or comma-separate). Default: chosen on the store's val split among "
        "the cheap scorers the model allows (with the post-processing, unless --postprocess is given), by "
        "pixel AUPRC with lesion masks, else image AUROC; else the model's recorded default (its preset's, "
        "or residual). The choice is recorded in detect.json and thresholds.json.",
    ),
    option: list[str] | None = typer.Option(
        None, "--option", help="SCORER.NAME=VALUE, e.g. restoration.steps=20"
    ),
    postprocess: str | None = typer.Option(None, help="e.g. foreground,median=3,gaussian=1"),
    max_overlays: int = typer.Option(50, help="Overlay PNGs per scorer (0 = none)."),
    target_specificity: float = typer.Option(
        0.95,
        "--target-specificity",
        min=0.0,
        max=1.0,
        help="Specificity on normal validation images that sets the calibrated threshold.",
    ),  # fmt: skip
    normal_label: str | None = typer.Option(
        None,
        "--normal-label",
        help="Label of the normal class (default: normal, no_tumour or healthy if present, else label 0).",
    ),
    save_calibration: bool = typer.Option(
        False, "--save-calibration", help="Also write the calibration into the model's run folder."
    ),
    dicom_seg: bool = typer.Option(
        False,
        "--dicom-seg",
        help="For DICOM series inputs, also write a DICOM SEG of each lesion mask that references the "
        "source images; that file (only) carries the source's patient and study modules, as SEG requires.",
    ),
    tune_restoration: bool = typer.Option(
        False,
        "--tune-restoration",
        help="Pick the restoration scorer's lam and steps on the store's val split (a small grid, by pixel "
        "AUPRC with masks, else image AUROC) and record the choice with the calibration.",
    ),
    tune_budget: float = typer.Option(
        300.0,
        "--tune-budget",
        min=0.0,
        help="Seconds the scorer choice (no --scorer) may spend on the val split; candidates left when it "
        "runs out are recorded as skipped.",
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML of these options (typed ones win)."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the settings as YAML and exit."),
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    scorers: list[str] | None = typer.Option(
        None, "--scorers", hidden=True, help="Old spelling of --scorer."
    ),
) -> None:
    """Detect anomalies: anomaly maps, image scores and flags at calibrated thresholds."""
    s = with_config(ctx, config, dict(locals()), hidden=("ctx", "scorers"))
    s["scorer"] = split_list(pick(s["scorer"], scorers, "--scorers", "--scorer")) or None
    if print_config:
        show_config(s, skip=("ctx", "scorers"))
    from vaedx.anomaly.detect import detect, parse_options

    out_dir = required(s["out"], "--out")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun one check is enough, and rank 0 writes
        refuse_existing(out_dir, s["overwrite"])
    set_threads(s["threads"])
    path = detect(
        required(s["model"], "--model"),
        out_dir,
        store=s["store"],
        split=None if s["split"] == "all" else s["split"],
        inputs=s["inputs"],
        scorers=s["scorer"],
        options=parse_options(s["option"]),
        postprocess=s["postprocess"],
        max_overlays=s["max_overlays"],
        quiet=s["quiet"],
        device=check_device(s["device"]),
        target_specificity=s["target_specificity"],
        normal_label=s["normal_label"],
        save_calibration=s["save_calibration"],
        dicom_seg=s["dicom_seg"],
        tune_restoration=s["tune_restoration"],
        selection_budget=s["tune_budget"],
    )
    if s["as_json"]:
        print_json(_summary(path))
    if not s["quiet"]:
        extra = ", volumes/ (NIfTI maps and masks), volumes.json" if (path / "volumes.json").is_file() else ""
        console.print(f"wrote {path / 'scores.csv'}, maps/, overlays/{extra} and detect.json")
        if s["save_calibration"]:
            console.print(f"calibration also saved in the model's run folder {s['model']}")


def _summary(path: Path) -> dict[str, Any]:
    """--json: what was scored and, per scorer, the threshold applied and how many images it flagged."""
    from vaedx.anomaly.output import DetectOutput

    done = DetectOutput.open(path)
    scorers = {}
    for name in done.scorers:
        flags, scores = done.flags(name), done.scores(name)
        scorers[name] = {
            "threshold": done.thresholds(name).get("image_threshold"),
            "flagged": None if flags is None else int(flags.sum()),
            "mean_score": float(scores.mean()) if len(scores) else None,
        }
    files = {"scores": path / "scores.csv", "meta": path / "detect.json"}
    return {"out": path, "n_images": len(done.rows), "scorers": scorers, "files": files}

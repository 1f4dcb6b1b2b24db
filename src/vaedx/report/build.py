"""``build_report``: collect a pipeline folder, make every section that has its inputs, write HTML + PNGs.

Why sections are independent functions of one :class:`Context`: each part of a pipeline is optional, so a
section whose inputs are absent becomes a one-line note saying what would enable it, and the rest of the
report is still written. Figures are saved as PNG files beside the HTML and embedded in it, so the page
stays self-contained and the figures can be reused in papers.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.atomic import atomic_write_text
from vaedx.errors import ConfigError
from vaedx.models.config import KIND_NAMES
from vaedx.report.collect import collect
from vaedx.report.context import Context
from vaedx.report.figures import training_curves
from vaedx.report.html import Section, render_page
from vaedx.runs.model_card import CARD_FILE, key_facts


def overview_section(ctx: Context) -> Section:
    sec = Section("overview", "Overview")
    rows = []
    for run in ctx.pipe.runs.values():
        train = run.config.get("train", {})
        model = train.get("model", {})
        m = run.metrics or {}
        val = m.get("val_loss")
        best = float(np.nanmin(val)) if val is not None and np.isfinite(val).any() else None
        epochs = int(m["epoch"][-1]) if m and len(m["epoch"]) else None
        filt = ", ".join(train.get("label_filter") or []) or "all"
        role = "main" if run.name == ctx.pipe.main else ""
        kind = KIND_NAMES.get(run.kind, run.kind)
        rows.append([run.name, kind, role, model.get("latent_dim"), epochs, best, filt])
    sec.table(
        "models",
        ["model", "kind", "role", "latent dim", "epochs", "best val loss", "trained on labels"],
        rows,
    )
    _model_cards(ctx, sec)
    if ctx.pipe.summary:
        flat = _flatten(ctx.pipe.summary)
        facts = [[k, v] for k, v in flat.items() if not _is_records(v)]
        sec.table("summary.json (headline figures of the run)", ["figure", "value"], facts)
        for key, records in flat.items():
            if _is_records(records):
                header = list(dict.fromkeys(k for r in records for k in r))
                sec.table(f"summary.json: {key}", header, [[r.get(k) for k in header] for r in records])
    return sec


def _model_cards(ctx: Context, sec: Section) -> None:
    """A relative link to each model's MODEL_CARD.md and the card's key facts (vaedx.runs.model_card)."""
    here = ctx.figure_dir.parent
    folders = [(run.name, run.path) for run in ctx.pipe.runs.values()]
    if ctx.pipe.diagnosis is not None:
        folders.append(("diagnosis", ctx.pipe.diagnosis.path))
    for name, folder in folders:
        card = folder / CARD_FILE
        if not card.is_file():
            sec.note(f"{name}: no {CARD_FILE} (written by `vaedx train` and `vaedx diagnose fit`)")
            continue
        sec.link(Path(os.path.relpath(card, here)).as_posix(), f"{name}: model card ({CARD_FILE})")
        facts = [list(f) for f in key_facts(folder)]
        sec.table(f"{name}: key facts of the model card", ["fact", "value"], facts)


def _is_records(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys; {point, low, high} dicts and lists of records are kept whole."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not {"point", "low", "high"} <= set(v):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list) and not _is_records(v):  # e.g. widths: never shown as an interval
            out[f"{prefix}{k}"] = ", ".join(map(str, v))
        else:
            out[f"{prefix}{k}"] = v
    return out


def training_section(ctx: Context) -> Section:
    sec = Section("training", "Training curves")
    for run in ctx.pipe.runs.values():
        if run.metrics is None or not len(run.metrics["epoch"]):
            sec.note(f"{run.name}: no metrics.csv rows (train it with `vaedx train --out {run.path}`)")
            continue
        fig = training_curves(run.name, run.metrics)
        ctx.add_figure(
            sec, fig, f"training_{run.name}", f"{run.name}: loss terms per epoch, train vs validation"
        )
    return sec


def reproducibility_section(ctx: Context) -> Section:
    import matplotlib
    import sklearn
    import torch

    from vaedx.version import __version__

    sec = Section("repro", "Reproducibility")
    run = ctx.pipe.main_run
    train = run.config.get("train", {})
    versions = [
        ["python", platform.python_version()],
        ["torch", torch.__version__],
        ["numpy", np.__version__],
        ["scikit-learn", sklearn.__version__],
        ["matplotlib", matplotlib.__version__],
        ["vaedx (report)", __version__],
        ["vaedx (training run)", run.config.get("vaedx_version", "n/a")],
        ["torch (training run)", run.config.get("torch_version", "n/a")],
    ]
    sec.table("software versions", ["package", "version"], versions)
    seeds = [[name, r.config.get("train", {}).get("seed", "n/a")] for name, r in ctx.pipe.runs.items()]
    seeds.append(["report (bootstrap, sampling, t-SNE)", ctx.seed])
    sec.table("seeds", ["what", "seed"], seeds)
    _data_summary(ctx, sec)
    if train:
        sec.text(f"Training config of the main model ({run.name}, {run.path / 'config.json'}):")
        sec.pre(train)
        sec.text("Preprocessing the model was trained with:")
        sec.pre(run.config.get("preprocess", {}))
    else:
        sec.note(f"{run.name}: no config.json found in the run folder")
    return sec


def _data_summary(ctx: Context, sec: Section) -> None:
    if ctx.pipe.store_path is None:
        sec.note("no tensor store: pass --store (the store the models were trained on) for the data summary")
        return
    from vaedx.data.inspect import summarize

    info = summarize(ctx.pipe.store_path, seed=ctx.seed)
    counts = ctx.pipe.store.counts() if ctx.pipe.store is not None else {}
    labels = sorted({lab for c in counts.values() for lab in c})
    rows = [[split, *[c.get(lab, 0) for lab in labels], sum(c.values())] for split, c in counts.items()]
    sec.table(f"data: {info['n']} images in {ctx.pipe.store_path.name}", ["split", *labels, "total"], rows)
    masks = info.get("masks") or {}
    problems = [re.sub(r",? e\.g\. .*$", "", p) for p in info.get("problems") or []]  # no patient ids
    facts = [
        ["image sizes", ", ".join(info["image"]["sizes"])],
        ["channels", info["image"]["channels"]],
        ["masks", "yes" if masks else "no"],
        ["patients", (info.get("patients") or {}).get("total", "n/a")],
        ["problems found by `vaedx data inspect`", "; ".join(problems) or "none"],
    ]
    sec.table("data summary", ["fact", "value"], facts)
    sec.text("Store preprocessing:")
    sec.pre(info.get("preprocess", {}))


def _sections() -> list[Callable[[Context], Section]]:
    from vaedx.report.eval_sections import detection_section, diagnosis_section
    from vaedx.report.model_sections import generative_section, latent_section, reconstruction_section

    return [
        overview_section,
        training_section,
        reconstruction_section,
        detection_section,
        diagnosis_section,
        latent_section,
        generative_section,
        reproducibility_section,
    ]


def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    store: str | Path | None = None,
    detect_dirs: list[Path] | None = None,
    diagnosis_dir: str | Path | None = None,
    seed: int = 0,
    n_boot: int = 200,
    timings: dict[str, float] | None = None,
    device: str = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write the HTML report of a pipeline folder (or one training run) and its PNG figures; return the HTML.

    Figures go to ``<out stem>_figures/`` beside ``out`` (default ``run_dir/report.html``). ``timings``, when
    given, receives the seconds each section took (for the benchmark). ``progress(done, total, name)`` is
    called as each section starts (``done`` sections finished, ``name`` the one now being built).
    """
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot}")
    pipe = collect(
        Path(run_dir),
        store=Path(store) if store is not None else None,
        detect_dirs=[Path(d) for d in detect_dirs] if detect_dirs is not None else None,
        diagnosis_dir=Path(diagnosis_dir) if diagnosis_dir is not None else None,
        device=device,  # the sections that run a model (reconstructions, latents, samples) run it there
    )
    html_path = Path(out) if out is not None else pipe.root / "report.html"
    figure_dir = html_path.parent / f"{html_path.stem}_figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    # figures of an earlier build of this report, and those a killed build had not finished
    for old in [*figure_dir.glob("[0-9][0-9]_*.png"), *figure_dir.glob(".[0-9][0-9]_*.png.*.tmp")]:
        old.unlink()
    ctx = Context(pipe, figure_dir, seed=seed, n_boot=n_boot)
    sections = []
    makers = _sections()
    for i, make in enumerate(makers):
        name = make.__name__.removesuffix("_section")
        if progress is not None:
            progress(i, len(makers), name)
        t0 = time.perf_counter()
        sections.append(make(ctx))
        if timings is not None:
            timings[name] = time.perf_counter() - t0
    if progress is not None:
        progress(len(makers), len(makers), "page")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{pipe.root.name}: main model {pipe.main}, {len(pipe.runs)} model(s); built {when}"
    footer = (
        f"vaedx report; figures also saved in {figure_dir.name}/ - research use only, not for clinical use"
    )
    atomic_write_text(html_path, render_page("vaedx report", subtitle, sections, footer))
    return html_path

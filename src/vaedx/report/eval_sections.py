"""Report sections for the evaluations: anomaly detection (tables, ROC/PR bands, overlays) and diagnosis.

Why figures are recomputed from per-image outputs (scores.csv, maps, probabilities) while the tables are
copied from the evaluation JSON files: the tables must show exactly the figures `vaedx evaluate` printed,
and the curves need the per-image values those files do not keep.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaedx.anomaly.scoring import file_name
from vaedx.errors import VaedxError
from vaedx.metrics.curves import CurveBand, pr_band, roc_band
from vaedx.report.collect import DetectInfo
from vaedx.report.context import Context
from vaedx.report.figures import (
    CASE_ROWS,
    class_reliability_figure,
    confusion_figure,
    curve_figure,
    overlay_grid,
    reliability_figure,
)
from vaedx.report.html import Section

PER_CASE = 4


def _metrics_tables(sec: Section, detects: list[DetectInfo]) -> None:
    from vaedx.evaluate.anomaly import table_rows, undefined_notes

    for d in detects:
        ev = d.evaluation
        if ev is None:
            sec.note(
                f"{d.name}: no evaluation.json: run `vaedx evaluate anomaly --pred {d.path} --truth STORE`"
            )
            continue
        rows = table_rows(ev, {"model": d.name})
        header = list(dict.fromkeys(k for r in rows for k in r))
        unit = (ev.get("bootstrap") or {}).get("unit", "image")
        caption = (
            f"{d.name}: {ev.get('n_labelled')} test images, {ev.get('n_abnormal')} abnormal; "
            f"95 % CI by {unit} bootstrap ({(ev.get('bootstrap') or {}).get('n_boot')} resamples)"
        )
        sec.table(caption, header, [[r.get(k) for k in header] for r in rows])
        for note in undefined_notes(ev):
            sec.note(f"{d.name}: {note}")
        _volume_table(sec, d.name, ev)


def _volume_table(sec: Section, name: str, ev: dict) -> None:
    """Per-patient figures (Dice per volume, voxel AUPRC, 3-D lesion detection) when the store knows its
    volumes; the same figures ``vaedx evaluate anomaly`` printed."""
    from vaedx.evaluate.anomaly import volume_notes, volume_table_rows

    rows = volume_table_rows(ev, {"model": name})
    if not rows:
        return
    header = list(dict.fromkeys(k for r in rows for k in r))
    n = (ev.get("volumes") or {}).get("n_volumes")
    caption = f"{name}: per volume (patient), {n} volumes; 95 % CI by volume bootstrap; ⌈Dice⌉ is optimistic"
    sec.table(caption, header, [[r.get(k) for k in header] for r in rows])
    for note in volume_notes(ev):
        sec.note(f"{name}: {note}")


def curve_bands(ctx: Context, detects: list[DetectInfo]) -> tuple[dict[str, CurveBand], dict[str, CurveBand]]:
    """ROC and PR bands of every model/scorer with both classes among its labelled rows."""
    roc: dict[str, CurveBand] = {}
    pr: dict[str, CurveBand] = {}
    for d in detects:
        y = d.truth
        keep = y >= 0
        if len(set(y[keep].tolist())) < 2:
            continue
        groups = d.groups[keep] if d.groups is not None else None
        for s in d.scorers:
            score = d.scores(s)[keep]
            roc[f"{d.name}/{s}"] = roc_band(y[keep], score, groups, ctx.n_boot, ctx.seed)
            pr[f"{d.name}/{s}"] = pr_band(y[keep], score, groups, ctx.n_boot, ctx.seed)
    return roc, pr


def pick_cases(truth: np.ndarray, flags: np.ndarray, scores: np.ndarray) -> dict[str, list[int]]:
    """Highest-scoring true and false positives and lowest-scoring false negatives, PER_CASE each."""
    order = np.argsort(-scores, kind="stable")
    tp = [int(i) for i in order if flags[i] and truth[i] == 1]
    fp = [int(i) for i in order if flags[i] and truth[i] == 0]
    fn = [int(i) for i in order[::-1] if not flags[i] and truth[i] == 1]
    return dict(zip(CASE_ROWS, (tp[:PER_CASE], fp[:PER_CASE], fn[:PER_CASE]), strict=True))


def _overlays(ctx: Context, sec: Section, d: DetectInfo) -> None:
    store = ctx.pipe.store
    if store is None:
        sec.note("no tensor store: pass --store to draw heatmap overlays on the images")
        return
    idx = d.index
    paths = [r["path"] for r in d.rows]
    if idx.max() >= len(store) or [file_name(str(store.paths[i])) for i in idx] != paths:
        sec.note(f"{d.name}: scores.csv does not match the store {store.root.name}: no overlays")
        return
    truth = d.truth
    for s in d.scorers:
        flags, maps = d.flags(s), d.maps(s)
        if flags is None or maps is None:
            why = "no calibrated threshold (flags empty)" if flags is None else "maps/ missing"
            sec.note(f"{d.name}/{s}: no overlays, {why}")
            continue
        cases = pick_cases(truth, flags, d.scores(s))
        chosen = sorted({i for picks in cases.values() for i in picks})
        if not chosen:
            sec.note(f"{d.name}/{s}: no true positive, false positive or false negative to show")
            continue
        pos = {i: k for k, i in enumerate(chosen)}
        local = {name: [pos[i] for i in picks] for name, picks in cases.items()}
        rows = idx[chosen]
        images = np.asarray(store.images[rows], dtype=np.float32)
        masks = np.asarray(store.masks[rows, 0]) if store.masks is not None else None
        title = f"{d.name}/{s} at the calibrated image threshold"
        fig = overlay_grid(images, np.asarray(maps[chosen]), masks, local, d.pixel_threshold(s), title)
        caption = f"{d.name}/{s}: anomaly maps of the most confident hits, false alarms and misses"
        ctx.add_figure(sec, fig, f"overlays_{d.name}_{s}", caption)


def detection_section(ctx: Context) -> Section:
    sec = Section("detection", "Anomaly detection")
    detects = ctx.pipe.detects
    if not detects:
        sec.note(
            "no detect output: run `vaedx detect --model MODEL --store STORE --out OUT/detect/<model>` and "
            "`vaedx evaluate anomaly --pred OUT/detect/<model> --truth STORE`"
        )
        return sec
    _metrics_tables(sec, detects)
    roc, pr = curve_bands(ctx, detects)
    if roc:
        y = detects[0].truth
        prevalence = float((y == 1).sum() / max(1, (y >= 0).sum()))
        n = next(iter(roc.values())).n_boot
        unit = "patient" if any(d.groups is not None for d in detects) else "image"
        listed = ", ".join(f"{k} {b.area:.3f}" for k, b in roc.items())
        caption = f"ROC; bands: pointwise 95 % over {n} {unit} bootstrap resamples. AUROC: {listed}"
        ctx.add_figure(sec, curve_figure("roc", roc), "roc", caption)
        listed = ", ".join(f"{k} {b.area:.3f}" for k, b in pr.items())
        caption = f"precision-recall; dotted: prevalence {prevalence:.2f}. Average precision: {listed}"
        ctx.add_figure(sec, curve_figure("pr", pr, prevalence), "pr", caption)
    else:
        sec.note("no detect output has both normal and abnormal labelled images: no ROC/PR curves")
    main = next((d for d in detects if d.name == ctx.pipe.main), detects[0])
    _overlays(ctx, sec, main)
    return sec


def _encoder(ctx: Context, diag: Any) -> Any:
    """The encoder recorded in the diagnosis, else the pipeline's run with the same weights (folder moved)."""
    from vaedx.diagnose.encoder import load_encoder

    try:
        return load_encoder(diag, device=ctx.pipe.device)
    except VaedxError:
        for run in ctx.pipe.runs.values():
            try:
                # checks the recorded sha256 of the weights
                return load_encoder(diag, run.path, device=ctx.pipe.device)
            except VaedxError:
                continue
        raise


def _probabilities(ctx: Context, diag: Any, split: str, sec: Section) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, probabilities) of ``split`` with the project's own predict path, or None with a note."""
    from vaedx.diagnose.fit import split_probabilities

    if ctx.pipe.store is None:
        sec.note("no tensor store: pass --store to compute per-image probabilities (reliability curve)")
        return None
    try:
        _, y, proba, _ = split_probabilities(diag, _encoder(ctx, diag), ctx.pipe.store, split)
    except VaedxError as e:
        sec.note(f"per-image probabilities unavailable ({e})")
        return None
    return y, proba


def diagnosis_section(ctx: Context) -> Section:
    from vaedx.diagnose.fit import evaluation_report
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.evaluate.diagnosis import confusion_rows

    sec = Section("diagnosis", "Diagnosis")
    info = ctx.pipe.diagnosis
    if info is None:
        sec.note(
            "no diagnosis: run `vaedx diagnose fit --model ENCODER --store STORE --out OUT/diagnosis` and "
            "`vaedx evaluate diagnosis --model OUT/diagnosis --truth STORE`"
        )
        return sec
    diag = DiagnosisModel.load(info.path)
    chosen = (diag.meta or {}).get("chosen", {})
    facts = [
        ["classes", ", ".join(diag.class_names)],
        ["classifier (chosen by CV AUC)", chosen.get("classifier", "n/a")],
        ["CV AUC", chosen.get("cv_auc")],
        ["decision threshold", diag.threshold],
        ["threshold rule", diag.threshold_rule or "argmax"],
        ["labelled training images", ((diag.meta or {}).get("data") or {}).get("n_labelled", "n/a")],
    ]
    sec.table("diagnosis model", ["", "value"], facts)
    split = "test" if "test" in info.evaluations else next(iter(info.evaluations), "test")
    ev = info.evaluations.get(split)
    if ev is None:
        sec.note(f"no evaluation_*.json: run `vaedx evaluate diagnosis --model {info.path} --truth STORE`")
    else:
        table = ev.get("table") or []
        header = list(dict.fromkeys(k for r in table for k in r))
        unit = (ev.get("bootstrap") or {}).get("unit", "image")
        sec.table(
            f"diagnosis on {split} (95 % CI, {unit} bootstrap)",
            header,
            [[r.get(k) for k in header] for r in table],
        )
        per_class = ev.get("per_class") or []
        if per_class:
            header = list(dict.fromkeys(k for r in per_class for k in r))
            sec.table(
                f"per class on {split}: one-vs-rest AUC, sensitivity and specificity of the argmax decision "
                f"(95 % CI, {unit} bootstrap), classwise ECE",
                header,
                [[r.get(k) for k in header] for r in per_class],
            )
        if unit == "image":
            sec.note(
                "intervals resample images: where one patient has several images (or patient ids are "
                "missing, as in the Cheng set), the split and these intervals are by image and optimistic"
            )
    got = _probabilities(ctx, diag, split, sec)
    report = ev["report"] if ev is not None else (evaluation_report(diag, *got) if got else None)
    if report is not None and report.get("confusion_matrix") is not None:
        fig = confusion_figure(report["confusion_matrix"], diag.class_names, f"confusion matrix ({split})")
        ctx.add_figure(sec, fig, "confusion_matrix", f"rows: true class, columns: predicted ({split} split)")
        if not diag.binary:
            rows = confusion_rows(report, diag.class_names)
            header = list(rows[0]) if rows else []
            sec.table(
                f"confusion matrix ({split}): count (share of the true class)",
                header,
                [[r[k] for k in header] for r in rows],
            )
    if got is not None:
        y, proba = got
        if diag.binary:
            target, p, what = (y == diag.classes[1]).astype(int), proba[:, 1], f"P({diag.class_names[1]})"
        else:
            index = np.searchsorted(diag.classes, y)
            target, p, what = (proba.argmax(1) == index).astype(int), proba.max(1), "top-class probability"
        fig = reliability_figure(target, p, f"reliability: {what}, {split} split")
        ctx.add_figure(sec, fig, "reliability", f"calibration of the {what} on {len(y)} {split} images")
        if not diag.binary:
            fig = class_reliability_figure(
                index, proba, diag.class_names, f"reliability per class, {split} split"
            )
            ctx.add_figure(
                sec,
                fig,
                "reliability_per_class",
                f"calibration of P(class) for each class on {len(y)} images",
            )
    return sec

"""``vaedx evaluate ...``: one typer sub-app, one command per task.

Why a shared app: anomaly detection and diagnosis are evaluated the same way (metrics with bootstrap CIs,
a side-by-side table, a JSON file); adding ``diagnosis`` is one more ``@app.command`` function here.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vaedx.atomic import atomic_write_json
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
)

app = typer.Typer(help="Evaluate predictions against ground truth.", no_args_is_help=True)
console = Console()
messages = Console(stderr=True)  # with --json stdout holds the JSON object only

OldTruthOpt = typer.Option(None, "--truth", "-t", hidden=True, help="Old spelling of --store.")
OverwriteOpt = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)


@app.command("anomaly")
def anomaly_command(
    pred: Path = typer.Option(..., "--pred", "-p", help="Output folder of `vaedx detect`."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Tensor store the detection was run on."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON to write [<pred>/evaluation.json]."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    truth: Path | None = OldTruthOpt,
) -> None:
    """Image AUROC/AUPRC/FPR@95TPR, pixel and (stores with volume columns) volume metrics per scorer;
    writes <pred>/evaluation.json."""
    from vaedx.evaluate.anomaly import (
        evaluate_anomaly,
        table_rows,
        to_json,
        undefined_notes,
        volume_notes,
        volume_table_rows,
    )
    from vaedx.evaluate.tables import format_table
    from vaedx.training.progress import task_progress

    store = required(pick(store, truth, "--truth", "--store"), "--store")
    target = out or pred / "evaluation.json"
    refuse_existing(target, overwrite)
    with task_progress("bootstrap per scorer", quiet=quiet) as bar:
        result = evaluate_anomaly(pred, store, n_boot=n_boot, seed=seed, progress=bar.update)
    atomic_write_json(target, to_json(result))
    from vaedx.evaluate.card import record_anomaly_evaluation

    record_anomaly_evaluation(pred, target, result)  # test figures into the model's MODEL_CARD.md
    if as_json:
        print_json({"written": target, **to_json(result)})
        messages.print(f"wrote {target}", highlight=False, soft_wrap=True)
        return
    unit = result["bootstrap"]["unit"]
    title = (
        f"anomaly detection: {result['n_labelled']} images, {result['n_abnormal']} abnormal (CI by {unit})"
    )
    console.print(format_table(table_rows(result), title=title))
    for note in undefined_notes(result):
        console.print(f"[dim]{note}[/]")
    volume_rows = volume_table_rows(result)
    if volume_rows:
        console.print(format_table(volume_rows, title="per volume (patient), CI by volume"))
    for note in volume_notes(result):
        console.print(f"[dim]{note}[/]")
    console.print(f"wrote {target}")


@app.command("compare")
def compare_command(
    a: str = typer.Option(..., "--a", help="FOLDER:SCORER of a `vaedx detect` output (the challenger)."),
    b: list[str] = typer.Option(..., "--b", help="FOLDER:SCORER to compare A with (repeatable)."),
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Tensor store both detections were run on."
    ),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON file for the differences."),
    overwrite: bool = OverwriteOpt,
    as_json: bool = JsonOpt,
    truth: Path | None = OldTruthOpt,
) -> None:
    """Paired bootstrap of A minus B (image and pixel AUROC/AUPRC) on the same resampled patients."""
    from vaedx.evaluate.compare import Side, compare_scorers, comparison_row, to_json
    from vaedx.evaluate.tables import format_table

    store = required(pick(store, truth, "--truth", "--store"), "--store")
    refuse_existing(out, overwrite)
    side_a = Side.parse(a)
    results = [compare_scorers(side_a, Side.parse(x), store, n_boot=n_boot, seed=seed) for x in b]
    doc = [to_json(r) for r in results]
    if out is not None:
        atomic_write_json(out, doc)
    say = messages if as_json else console  # with --json, stdout holds the JSON object only
    unit = results[0]["unit"]
    title = f"A minus B on {results[0]['n_images']} images (paired bootstrap by {unit}; p = P(A not better))"
    if as_json:
        print_json({"written": out, "comparisons": doc})
    else:
        console.print(format_table([comparison_row(r) for r in results], title=title))
    for r in results:
        for k, why in r["undefined"].items():
            say.print(f"[dim]{r['b']}: {k} n/a - {why}[/]")
    if out is not None:
        say.print(f"wrote {out}", highlight=False, soft_wrap=True)


@app.command("compare-diagnosis")
def compare_diagnosis_command(
    a: Path = typer.Option(..., "--a", help="Folder of `vaedx diagnose fit` (the challenger)."),
    b: list[Path] = typer.Option(..., "--b", help="Diagnosis folder to compare A with (repeatable)."),
    store: Path = typer.Option(..., "--store", "-s", help="Labelled tensor store to score both on."),
    split: str = typer.Option("test", help="Split of the store to compare on."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSON file for the differences."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Paired bootstrap of diagnosis A minus B on the same images: AUC and accuracy at each model's own
    threshold (binary), macro AUC and accuracy (three or more classes), resampling patients when ids repeat.

    Why paired: the two models' errors on the same images are correlated, so two overlapping intervals from
    `evaluate diagnosis` say little; the interval of the difference does."""
    from vaedx.evaluate.compare_diagnosis import (
        compare_sides,
        comparison_rows,
        notes,
        score_side,
        title,
        to_json,
    )
    from vaedx.evaluate.tables import format_table
    from vaedx.training.progress import task_progress

    refuse_existing(out, overwrite)
    set_threads(threads)
    dev = check_device(device)
    results = []
    with task_progress(f"encoding the {split} images for {a.name}", quiet=quiet) as bar:
        side_a = score_side(a, store, split, device=dev, progress=bar.update)
        for folder in b:
            bar.stage(f"encoding the {split} images for {folder.name}")
            side_b = score_side(folder, store, split, device=dev, progress=bar.update)
            bar.stage(f"paired bootstrap of {a.name} minus {folder.name}")
            results.append(compare_sides(side_a, side_b, n_boot=n_boot, seed=seed))
    doc = [to_json(r) for r in results]
    if out is not None:
        atomic_write_json(out, doc)
    say = messages if as_json else console  # with --json, stdout holds the JSON object only
    if as_json:
        print_json({"written": out, "comparisons": doc})
    else:
        console.print(format_table(comparison_rows(results), title=title(results)))
    for note in dict.fromkeys(n for r in results for n in notes(r)):  # once each, in order
        say.print(f"[dim]{note}[/]", highlight=False, soft_wrap=True)
    if out is not None:
        say.print(f"wrote {out}", highlight=False, soft_wrap=True)


@app.command("diagnosis")
def diagnosis_command(
    diagnosis: Path | None = typer.Option(
        None, "--diagnosis", "-d", help="Folder written by `vaedx diagnose fit`."
    ),
    store: Path | None = typer.Option(None, "--store", "-s", help="Labelled tensor store to evaluate on."),
    split: str = typer.Option("test", help="Split of the store to evaluate."),
    encoder: Path | None = typer.Option(None, help="Encoder run folder, when it has moved since fitting."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="JSON to write [<diagnosis>/evaluation_<split>.json]."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    truth: Path | None = OldTruthOpt,
    model: Path | None = typer.Option(
        None, "--model", "-m", hidden=True, help="Old spelling of --diagnosis."
    ),
) -> None:
    """AUC, accuracy, sensitivity, specificity, F1, ECE with bootstrap 95% CIs, and the confusion matrix.

    Three or more classes: macro and per-class one-vs-rest AUC, per-class sensitivity and specificity of the
    argmax decision (with CIs) and per-class ECE, and the confusion matrix with counts and row shares."""
    folder = required(pick(diagnosis, model, "--model (a diagnosis folder)", "--diagnosis"), "--diagnosis")
    store = required(pick(store, truth, "--truth", "--store"), "--store")
    target = out or folder / f"evaluation_{split}.json"
    refuse_existing(target, overwrite)
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.fit import split_probabilities
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.evaluate.diagnosis import confusion_rows, evaluate_probabilities
    from vaedx.evaluate.tables import format_table
    from vaedx.training.progress import task_progress

    set_threads(threads)
    diag = DiagnosisModel.load(folder)
    loaded = load_encoder(diag, encoder, device=check_device(device))
    from vaedx.data.store import TensorStore

    with task_progress(f"encoding the {split} images", quiet=quiet) as bar:
        diag, y, proba, rows = split_probabilities(diag, loaded, store, split, progress=bar.update)
        groups = TensorStore.open(store).patient_ids[rows]
        bar.describe("bootstrap per metric")
        result = evaluate_probabilities(
            diag, y, proba, groups=groups, n_boot=n_boot, seed=seed, progress=bar.update
        )
    result["split"] = split
    atomic_write_json(target, result)
    from vaedx.evaluate.card import record_diagnosis_evaluation

    record_diagnosis_evaluation(folder, target, result)  # test figures into the folder's MODEL_CARD.md
    if as_json:
        print_json({"written": target, **result})
        messages.print(f"wrote {target}", highlight=False, soft_wrap=True)
        return
    console.print(format_table(result["table"], title=f"diagnosis on {split}: {len(y)} images"))
    if result.get("per_class"):
        title = "per class (one-vs-rest AUC, argmax decisions)"
        console.print(format_table(result["per_class"], title=title))
        title = "confusion matrix: count (share of the true class)"
        console.print(format_table(confusion_rows(result["report"], diag.class_names), title=title))
    elif result["report"].get("confusion_matrix") is not None:
        cm = result["report"]["confusion_matrix"]
        console.print(f"confusion matrix (rows true, cols predicted; {diag.class_names}): {cm}")
    console.print(f"wrote {target}")

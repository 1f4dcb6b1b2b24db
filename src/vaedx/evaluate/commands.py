"""``vaedx evaluate ...``: one typer sub-app, one command per task.

Why a shared app: anomaly detection and diagnosis are evaluated the same way (metrics with bootstrap CIs,
a side-by-side table, a JSON file); adding ``diagnosis`` is one more ``@app.command`` function here.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vaedx.atomic import atomic_write_json

app = typer.Typer(help="Evaluate predictions against ground truth.", no_args_is_help=True)
console = Console()


@app.command("anomaly")
def anomaly_command(
    pred: Path = typer.Option(..., "--pred", "-p", help="Output folder of `vaedx detect`."),
    truth: Path = typer.Option(..., "--truth", "-t", help="Tensor store the detection was run on."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Image AUROC/AUPRC/FPR@95TPR and pixel metrics per scorer; writes <pred>/evaluation.json."""
    from vaedx.evaluate.anomaly import evaluate_anomaly, table_rows, to_json, undefined_notes
    from vaedx.evaluate.tables import format_table

    result = evaluate_anomaly(pred, truth, n_boot=n_boot, seed=seed)
    atomic_write_json(pred / "evaluation.json", to_json(result))
    unit = result["bootstrap"]["unit"]
    title = (
        f"anomaly detection: {result['n_labelled']} images, {result['n_abnormal']} abnormal (CI by {unit})"
    )
    console.print(format_table(table_rows(result), title=title))
    for note in undefined_notes(result):
        console.print(f"[dim]{note}[/]")
    console.print(f"wrote {pred / 'evaluation.json'}")


@app.command("diagnosis")
def diagnosis_command(
    model: Path = typer.Option(..., "--model", "-m", help="Folder written by `vaedx diagnose fit`."),
    truth: Path = typer.Option(..., "--truth", "-t", help="Labelled tensor store to evaluate on."),
    split: str = typer.Option("test", help="Split of the store to evaluate."),
    encoder: Path | None = typer.Option(None, help="Encoder run folder, when it has moved since fitting."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    out: Path | None = typer.Option(None, help="JSON to write [<model>/evaluation_<split>.json]."),
) -> None:
    """AUC, accuracy, sensitivity, specificity, F1, ECE with bootstrap 95% CIs, and the confusion matrix."""
    from vaedx.diagnose.fit import split_probabilities
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.diagnose.predict import load_encoder
    from vaedx.evaluate.diagnosis import evaluate_probabilities
    from vaedx.evaluate.tables import format_table

    diag = DiagnosisModel.load(model)
    loaded = load_encoder(diag, encoder)
    diag, y, proba, rows = split_probabilities(diag, loaded, truth, split)
    from vaedx.data.store import TensorStore

    groups = TensorStore.open(truth).patient_ids[rows]
    result = evaluate_probabilities(diag, y, proba, groups=groups, n_boot=n_boot, seed=seed)
    result["split"] = split
    target = out or model / f"evaluation_{split}.json"
    atomic_write_json(target, result)
    console.print(format_table(result["table"], title=f"diagnosis on {split}: {len(y)} images"))
    cm = result["report"].get("confusion_matrix")
    if cm is not None:
        console.print(f"confusion matrix (rows true, cols predicted; {diag.class_names}): {cm}")
    console.print(f"wrote {target}")

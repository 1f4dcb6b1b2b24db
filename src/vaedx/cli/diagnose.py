"""``vaedx diagnose fit`` and ``vaedx diagnose predict`` as a typer sub-app (registered by the CLI).

Why thin: every decision lives in :mod:`vaedx.diagnose.fit` / :mod:`vaedx.diagnose.predict`, which
notebooks call directly; the commands only parse options and print or write results.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vaedx.errors import ConfigError

app = typer.Typer(
    help="Diagnosis from latent features: fit a calibrated classifier, then predict new images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _list(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


@app.command("fit")
def fit_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="Encoder run or checkpoint folder (vaedx train)."),
    store: Path = typer.Option(..., "--store", "-s", help="Labelled tensor store prepared like the model's."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for diagnosis.json + diagnosis.safetensors."),
    labelled_fraction: float = typer.Option(1.0, help="Stratified share of the training labels to use."),
    calibration: str = typer.Option("sigmoid", help="sigmoid | isotonic | none (fitted on --val-split)."),
    threshold: str = typer.Option("youden", help="youden | sens:0.95 | spec:0.9 | a probability (binary)."),
    classifiers: str = typer.Option("logreg,knn,mlp,hgb", help="Candidates compared by cross-validation."),
    features: str = typer.Option("mu,logvar", help="Posterior parts used as features."),
    scorers: str | None = typer.Option(None, help="Anomaly scores added as features, e.g. residual,elbo."),
    seed: int = typer.Option(0, help="Seed of the labelled subset and the CV folds."),
    train_split: str = typer.Option("train"),
    val_split: str = typer.Option("val"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a diagnosis model already in --out."),
) -> None:
    """Fit a classifier on an encoder's latent features, calibrate it and set its threshold."""
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.diagnose.model import JSON_FILE

    if (out / JSON_FILE).exists() and not overwrite:
        raise ConfigError("output folder already holds a diagnosis model; use --overwrite", out)
    diag = fit_diagnosis(
        model,
        store,
        out=out,
        labelled_fraction=labelled_fraction,
        seed=seed,
        calibration=calibration,
        threshold=threshold,
        candidates=_list(classifiers),
        include=_list(features),
        scorers=_list(scorers),
        train_split=train_split,
        val_split=val_split,
    )
    chosen, v = diag.meta["chosen"], diag.metrics
    auc = v.get("auc", v.get("macro_auc"))
    console.print(
        f"chose {chosen['classifier']} {chosen['params']} (CV AUC {_fmt(chosen['cv_auc'])}); "
        f"validation AUC {_fmt(auc)}, threshold {_fmt(diag.threshold)}"
    )
    if diag.binary:
        console.print(
            f"validation sensitivity {_fmt(v['sensitivity'])}, specificity {_fmt(v['specificity'])}"
            " (optimistic: threshold and calibration were fitted on these images)"
        )
    console.print(f"diagnosis model written to {out}")


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    from vaedx.atomic import atomic_write, atomic_write_json

    if path.suffix.lower() == ".json":
        atomic_write_json(path, rows)
        return

    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            names = list(rows[0]["probabilities"]) if rows else []
            anomaly = ["anomaly_score", "anomaly_flag", "heatmap"] if rows and "anomaly" in rows[0] else []
            w.writerow(["image", "class", "probability", *[f"p_{n}" for n in names], "neighbours", *anomaly])
            for r in rows:
                near = "; ".join(f"{n['path']} ({n['label']}, {n['distance']:.3f})" for n in r["neighbours"])
                a = r.get("anomaly") or {}
                extra = [f"{a['score']:.6g}", a["flag"], a["heatmap"] or ""] if anomaly else []
                w.writerow(
                    [
                        r["image"],
                        r["class"],
                        f"{r['probability']:.6f}",
                        *[f"{r['probabilities'][n]:.6f}" for n in names],
                        near,
                        *extra,
                    ]
                )

    atomic_write(path, write)


@app.command("finetune")
def finetune_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="Unsupervised VAE run (vaedx train)."),
    store: Path = typer.Option(..., "--store", "-s", help="Labelled tensor store prepared like the model's."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the fine-tuned encoder run."),
    labelled_fraction: float = typer.Option(1.0, help="Stratified share of the training labels to use."),
    epochs: int = typer.Option(20, help="Passes over the labelled images (one-cycle schedule)."),
    min_steps: int = typer.Option(300, help="Least optimiser steps however few images are labelled."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    augment: bool = typer.Option(True, help="Random rotation/zoom/shift of the labelled batches."),
    seed: int = typer.Option(0, help="Seed of the labelled subset and the training."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
) -> None:
    """Fine-tune a VAE's encoder on the labels; then `vaedx diagnose fit --model OUT --features mu`."""
    from vaedx.diagnose.finetune import finetune_encoder

    tuned = finetune_encoder(
        model, store, out, labelled_fraction=labelled_fraction, seed=seed, epochs=epochs, lr=lr,
        augment=augment, min_steps=min_steps, overwrite=overwrite, num_threads=threads,
    )  # fmt: skip
    info = tuned.meta["finetune"]
    auc = info.get("final_val_auc")
    console.print(
        f"fine-tuned encoder written to {out} ({info['n_labelled']} labelled images, "
        f"{info['epochs']} epochs, val AUC of its head {'n/a' if auc is None else f'{auc:.3f}'}); "
        f"next: vaedx diagnose fit "
        f"--model {out} --store {store} --features mu --out DIAG"
    )


@app.command("predict")
def predict_cmd(
    files: list[Path] | None = typer.Argument(None, help="Image files (any format vaedx reads)."),
    model: Path = typer.Option(..., "--model", "-m", help="Diagnosis folder (vaedx diagnose fit --out)."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Predict a tensor store instead of files."),
    split: str | None = typer.Option(None, help="Only this split of --store."),
    encoder: Path | None = typer.Option(None, help="Encoder run folder, if it moved since fitting."),
    neighbours: int = typer.Option(
        5, "--neighbours", "-k", help="Nearest training images to list (0: none)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write all results to .json or .csv."),
    anomaly_model: Path | None = typer.Option(
        None, "--anomaly-model", help="Run trained on healthy images (vaedx train + detect): adds its score."
    ),
    scorer: str | None = typer.Option(None, help="Scorer of --anomaly-model [its calibrated one]."),
    heatmaps: Path | None = typer.Option(None, help="Folder for one anomaly heatmap .npy per image."),
) -> None:
    """Class, calibrated probability, nearest training images and (with --anomaly-model) the anomaly score,
    flag and heatmap for new images."""
    from vaedx.data.store import TensorStore
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.diagnose.predict import attach_anomaly, diagnose_images, read_image_files
    from vaedx.training.batches import RowView

    if bool(files) == (store is not None):
        raise ConfigError("give image FILES or --store, not both or neither")
    diag = DiagnosisModel.load(model)
    loaded = load_encoder(diag, encoder)
    if store is not None:
        st = TensorStore.open(store)
        st.check_compatible(loaded.preprocess, loaded.image_shape)
        rows = st.select(split=split)
        images, refs = RowView(st.images, rows), [st.paths[i] for i in rows]
    else:
        images, refs = read_image_files(files or [], loaded.preprocess)
    results = diagnose_images(diag, loaded, images, refs, k=neighbours)
    if anomaly_model is not None:
        info = attach_anomaly(results, images, anomaly_model, loaded, scorer, heatmaps)
        if info["problem"]:
            console.print(f"[yellow]anomaly flags unavailable: {info['problem']}[/]")
    elif heatmaps is not None or scorer is not None:
        raise ConfigError("--scorer and --heatmaps need --anomaly-model")
    if out is not None:
        _write(results, out)
        console.print(f"{len(results)} predictions written to {out}")
        return
    table = Table(title=f"diagnosis ({len(results)} images)")
    table.add_column("image", overflow="fold")  # whole paths, wrapped rather than cut
    table.add_column("class")
    table.add_column("probability", justify="right")
    table.add_column("nearest training images")
    if anomaly_model is not None:
        table.add_column(f"{results[0]['anomaly']['scorer']} score", justify="right")
        table.add_column("flag")
    for r in results:
        near = ", ".join(f"{Path(n['path']).name} ({n['label']})" for n in r["neighbours"][:3])
        cells = [r["image"], r["class"], f"{r['probability']:.3f}", near]
        if "anomaly" in r:
            a = r["anomaly"]
            cells += [f"{a['score']:.4g}", "n/a" if a["flag"] is None else ("yes" if a["flag"] else "no")]
        table.add_row(*cells)
    Console().print(table)


def _numbers(text: str, kind: type, option: str) -> list[Any]:
    try:
        return [kind(v) for v in _list(text)]
    except ValueError:
        raise ConfigError(f"{option} must be a comma-separated list of numbers, got {text!r}") from None


@app.command("study")
def study_cmd(
    store: Path = typer.Option(..., "--store", "-s", help="Labelled store with train/val/test splits."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for study.json and study.csv."),
    fractions: str = typer.Option("0.01,0.05,0.1,1", help="Labelled fractions of the training split."),
    seeds: str = typer.Option("0,1,2", help="Seeds: labelled subset and network initialisation."),
    methods: str = typer.Option(
        "vae_latent_lr,m2,vae_finetune,supervised_cnn", help="Methods compared on each subset."
    ),
    vae: Path | None = typer.Option(None, help="Trained VAE run to reuse (default: train one, no labels)."),
    epochs: int = typer.Option(10, help="Epochs of M2 and the supervised CNN."),
    vae_epochs: int | None = typer.Option(None, help="Epochs of the unsupervised VAE [--epochs]."),
    latent_dim: int = typer.Option(16, help="Latent size of every network trained here."),
    widths: str = typer.Option("16,32,64", help="Encoder channels per level, shared by all methods."),
    min_steps: int = typer.Option(0, help="Least optimiser steps of the CNN however few labels it gets."),
    augment: bool = typer.Option(True, help="Random rotation/zoom/shift for every trained network."),
    schedule: str = typer.Option("onecycle", help="onecycle (final weights) | none (best val epoch)."),
    lr: float = typer.Option(2e-3, help="(Peak) learning rate of every trained network."),
    batch_size: int = typer.Option(64),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a study already in --out."),
) -> None:
    """Label-fraction study: VAE latent + LR, M2, fine-tuned VAE encoder and supervised CNN on the same
    labelled subsets."""
    from vaedx.atomic import atomic_write_json
    from vaedx.diagnose.study import METRICS, label_fraction_study

    if (out / "study.json").exists() and not overwrite:
        raise ConfigError("output folder already holds a study; use --overwrite", out)
    model = {"latent_dim": latent_dim, "widths": _numbers(widths, int, "--widths")}
    res = label_fraction_study(
        store,
        _numbers(fractions, float, "--fractions"),
        _numbers(seeds, int, "--seeds"),
        _list(methods),
        epochs,
        vae=vae,
        vae_epochs=vae_epochs,
        model=model,
        batch_size=batch_size,
        work_dir=out,
        num_threads=threads,
        supervised_min_steps=min_steps,
        augment=augment,
        schedule=schedule,
        lr=lr,
        progress=_progress,
    )
    recipe = {"augment": augment, "schedule": schedule, "lr": lr, "epochs": epochs, "min_steps": min_steps}
    doc = {"rows": res.rows, "summary": res.summary, "model": model, "recipe": recipe}
    atomic_write_json(out / "study.json", doc)
    _write_rows(res.rows, out / "study.csv")
    table = Table(title=f"label-fraction study on {store.name} (test split; mean ± sd over seeds)")
    for col in ("method", "fraction", "labelled", "seeds", *METRICS):
        table.add_column(col, justify="left" if col == "method" else "right")
    for s in res.summary:
        cells = [s["method"], f"{s['fraction']:g}", f"{s['n_labelled']:.0f}", str(s["n_seeds"])]
        table.add_row(*cells, *(s[m] for m in METRICS))
    Console().print(table)
    console.print(f"study written to {out / 'study.json'}")


def _progress(r: dict[str, Any]) -> None:
    console.print(f"{r['method']} {r['fraction']:g} seed {r['seed']}: test AUC {_fmt(r['auc'])}")


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    from vaedx.atomic import atomic_write

    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)

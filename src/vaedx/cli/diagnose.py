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

from vaedx.cli.options import (
    DEVICE_HELP,
    OVERWRITE_HELP,
    THREADS_HELP,
    TRACKER_HELP,
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
from vaedx.errors import ConfigError

app = typer.Typer(
    help="Diagnosis from latent features: fit a calibrated classifier, then predict new images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _list(values: list[str] | str | None) -> list[str]:
    return split_list(values)


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML of these options (typed ones win).")
PrintConfigOpt = typer.Option(False, "--print-config", help="Print the settings as YAML and exit.")
DeviceOpt = typer.Option("auto", "--device", help=DEVICE_HELP)
ThreadsOpt = typer.Option(None, "--threads", help=THREADS_HELP)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


@app.command("fit")
def fit_cmd(
    ctx: typer.Context,
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Encoder: a model run or checkpoint folder (vaedx train)."
    ),
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Labelled tensor store prepared like the model's."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for diagnosis.json + diagnosis.safetensors."
    ),
    labelled_fraction: float = typer.Option(1.0, help="Stratified share of the training labels to use."),
    calibration: str = typer.Option(
        "sigmoid",
        help="sigmoid (3+ classes: temperature scaling) | isotonic | temperature | none (on --val-split).",
    ),
    threshold: str = typer.Option(
        "youden", help="youden | sens:0.95 | spec:0.9 | a probability (binary; 3+ classes take the argmax)."
    ),
    classifiers: list[str] = typer.Option(
        ["logreg", "knn", "mlp", "hgb"], help="Candidates compared by cross-validation (repeat or commas)."
    ),
    features: list[str] = typer.Option(["mu", "logvar"], help="Posterior parts used as features."),
    scorer: list[str] | None = typer.Option(
        None, "--scorer", help="Anomaly scores added as features (repeat or commas), e.g. residual,elbo."
    ),
    seed: int = typer.Option(0, help="Seed of the labelled subset and the CV folds."),
    tta: str = typer.Option(
        "auto",
        help="Test-time augmentation of the latents: auto (kept only where it raises validation AUC) | "
        "none | hflip | affine.",
    ),
    train_split: str = typer.Option("train"),
    val_split: str = typer.Option("val"),
    device: str = DeviceOpt,
    threads: int | None = ThreadsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
    print_config: bool = PrintConfigOpt,
    scorers: list[str] | None = typer.Option(
        None, "--scorers", hidden=True, help="Old spelling of --scorer."
    ),
) -> None:
    """Fit a classifier on an encoder's latent features, calibrate it and set its threshold."""
    s = with_config(ctx, config, dict(locals()), hidden=("ctx", "scorers"))
    s["scorer"] = _list(pick(s["scorer"], scorers, "--scorers", "--scorer"))
    s["classifiers"], s["features"] = _list(s["classifiers"]), _list(s["features"])
    if print_config:
        show_config(s, skip=("ctx", "scorers"))
    from vaedx.diagnose.encoder import as_loaded
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.training.progress import task_progress

    out = required(s["out"], "--out")
    refuse_existing(out, s["overwrite"])
    set_threads(s["threads"])
    loaded = as_loaded(required(s["model"], "--model"), device=check_device(s["device"]))
    with task_progress("encoding images", quiet=s["quiet"]) as bar:
        diag = fit_diagnosis(
            loaded,
            required(s["store"], "--store"),
            out=out,
            labelled_fraction=s["labelled_fraction"],
            seed=s["seed"],
            calibration=s["calibration"],
            threshold=s["threshold"],
            candidates=s["classifiers"],
            include=s["features"],
            scorers=s["scorer"],
            train_split=s["train_split"],
            val_split=s["val_split"],
            progress=bar.update,
            tta=s["tta"],
        )
    chosen, v = diag.meta["chosen"], diag.metrics
    if s["as_json"]:
        print_json({"out": out, "chosen": chosen, "threshold": diag.threshold, "validation": v,
                    "n_labelled": diag.meta["data"]["n_labelled"], "tta": diag.meta["tta"]})  # fmt: skip
    auc = v.get("auc", v.get("macro_auc"))
    console.print(
        f"chose {chosen['classifier']} {chosen['params']} (CV AUC {_fmt(chosen['cv_auc'])}); "
        f"validation AUC {_fmt(auc)}, threshold {_fmt(diag.threshold)}; test-time augmentation "
        f"{diag.features.tta}"
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
    ctx: typer.Context,
    model: Path | None = typer.Option(None, "--model", "-m", help="Unsupervised VAE run (vaedx train)."),
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Labelled tensor store prepared like the model's."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the fine-tuned encoder run."),
    labelled_fraction: float = typer.Option(1.0, help="Stratified share of the training labels to use."),
    recipe: str = typer.Option(
        "auto",
        help="auto: choose lr, augmentation, weight decay, class weights and frozen vs fine-tuned "
        "encoder on validation within --budget | fixed: the one-cycle recipe below, as before.",
    ),
    budget: float = typer.Option(10.0, help="Minutes for the whole --recipe auto search."),
    epochs: int = typer.Option(
        20, help="Passes over the labelled images (fixed: one-cycle length; auto: most per trial)."
    ),
    min_steps: int = typer.Option(300, help="Least optimiser steps however few images are labelled."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (--recipe fixed)."),
    augment: bool = typer.Option(True, help="Random rotation/zoom/shift of the labelled batches (fixed)."),
    seed: int = typer.Option(0, help="Seed of the labelled subset and the training."),
    init: str = typer.Option(
        "vae",
        help="vae: start from the VAE's encoder | random: the same architecture from random weights, the "
        "supervised CNN baseline the VAE must beat (same recipe, same budget).",
    ),
    tracker: str = typer.Option("none", "--tracker", help=TRACKER_HELP),
    device: str = DeviceOpt,
    threads: int | None = ThreadsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
    print_config: bool = PrintConfigOpt,
) -> None:
    """Fine-tune a VAE's encoder on the labels; then `vaedx diagnose fit --model OUT --features mu`."""
    s = with_config(ctx, config, dict(locals()), hidden=("ctx",))
    if print_config:
        show_config(s, skip=("ctx",))
    from vaedx.diagnose.finetune import finetune_encoder
    from vaedx.training.progress import task_progress
    from vaedx.training.tracker import check_tracker

    model, store, out = required(s["model"], "--model"), required(s["store"], "--store"), s["out"]
    out = required(out, "--out")
    check_tracker(s["tracker"])
    if s["recipe"] not in ("auto", "fixed"):
        raise ConfigError(f"--recipe must be auto or fixed, got {s['recipe']!r}")
    if s["recipe"] == "auto":
        _auto_finetune(s, model, store, out)
        return
    with task_progress("fine-tuning (optimiser steps)", quiet=s["quiet"]) as bar:
        tuned = finetune_encoder(
            model, store, out, labelled_fraction=s["labelled_fraction"], seed=s["seed"], epochs=s["epochs"],
            lr=s["lr"], augment=s["augment"], min_steps=s["min_steps"], init=s["init"],
            overwrite=s["overwrite"], num_threads=s["threads"], device=check_device(s["device"]),
            tracker=s["tracker"], progress=bar.update,
        )  # fmt: skip
    info = tuned.meta["finetune"]
    if s["as_json"]:
        print_json({"out": out, **info})
    auc = info.get("final_val_auc")
    console.print(
        f"fine-tuned encoder written to {out} ({info['n_labelled']} labelled images, "
        f"{info['epochs']} epochs, val AUC of its head {'n/a' if auc is None else f'{auc:.3f}'}); "
        f"next: vaedx diagnose fit "
        f"--model {out} --store {store} --features mu --out DIAG"
    )


def _auto_finetune(s: dict[str, Any], model: Path, store: Path, out: Path) -> None:
    """``finetune --recipe auto``: the settings search, one line per trial, then the chosen settings."""
    from vaedx.diagnose.recipe import RECIPE_FILE, auto_finetune

    quiet = s["quiet"] or s["as_json"]
    say = (lambda line: None) if quiet else (lambda line: console.print(f"trial: {line}"))
    tuned = auto_finetune(
        model, store, out, budget_minutes=s["budget"], labelled_fraction=s["labelled_fraction"],
        seed=s["seed"], max_epochs=s["epochs"], min_steps=s["min_steps"], overwrite=s["overwrite"],
        init=s["init"], num_threads=s["threads"], device=check_device(s["device"]), tracker=s["tracker"],
        progress=say,
    )  # fmt: skip
    info = tuned.meta["finetune"]
    if s["as_json"]:
        print_json({"out": out, **info, "recipe_file": out / RECIPE_FILE})
    settings = (
        "frozen encoder"
        if info["encoder"] == "frozen"
        else f"fine-tuned, lr {info['lr']:g}, augment {info['augment']}, weight decay "
        f"{info['weight_decay']:g}, class weight {info['class_weight'] or 'none'}, {info['epochs']} epochs"
    )
    console.print(
        f"chose {settings} on validation (AUC {_fmt(info['final_val_auc'])}); encoder run written to {out} "
        f"(trials in {out / RECIPE_FILE}); next: vaedx diagnose fit --model {out} --store {store} "
        "--features mu --out DIAG"
    )


@app.command("predict")
def predict_cmd(
    files: list[Path] | None = typer.Argument(None, help="Image files (any format vaedx reads)."),
    diagnosis: Path | None = typer.Option(
        None, "--diagnosis", "-d", help="Diagnosis folder (vaedx diagnose fit --out)."
    ),
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
    scorer: str | None = typer.Option(None, help="Scorer of --anomaly-model (default: its calibrated one)."),
    heatmaps: Path | None = typer.Option(None, help="Folder for one anomaly heatmap .npy per image."),
    device: str = DeviceOpt,
    threads: int | None = ThreadsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier --out and --heatmaps."),
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    model: Path | None = typer.Option(
        None, "--model", "-m", hidden=True, help="Old spelling of --diagnosis."
    ),
) -> None:
    """Class, calibrated probability, nearest training images and (with --anomaly-model) the anomaly score,
    flag and heatmap for new images."""
    from vaedx.data.store import TensorStore
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.diagnose.predict import attach_anomaly, diagnose_images, read_image_files
    from vaedx.training.batches import RowView
    from vaedx.training.progress import task_progress

    folder = required(pick(diagnosis, model, "--model (a diagnosis folder)", "--diagnosis"), "--diagnosis")
    refuse_existing(out, overwrite)
    refuse_existing(heatmaps, overwrite)
    dev = check_device(device)
    set_threads(threads)
    if bool(files) == (store is not None):
        raise ConfigError("give image FILES or --store, not both or neither")
    diag = DiagnosisModel.load(folder)
    loaded = load_encoder(diag, encoder, device=dev)
    if store is not None:
        st = TensorStore.open(store)
        st.check_compatible(loaded.preprocess, loaded.image_shape)
        rows = st.select(split=split)
        images, refs = RowView(st.images, rows), [st.paths[i] for i in rows]
    else:
        images, refs = read_image_files(files or [], loaded.preprocess)
    with task_progress("encoding images", quiet=quiet) as bar:
        results = diagnose_images(diag, loaded, images, refs, k=neighbours, progress=bar.update)
    if anomaly_model is not None:
        with task_progress("anomaly scoring", quiet=quiet) as bar:
            info = attach_anomaly(
                results, images, anomaly_model, loaded, scorer, heatmaps, device=dev, progress=bar.update
            )
        if info["problem"]:
            console.print(f"[yellow]anomaly flags unavailable: {info['problem']}[/]")
    elif heatmaps is not None or scorer is not None:
        raise ConfigError("--scorer and --heatmaps need --anomaly-model")
    if out is not None:
        _write(results, out)
        console.print(f"{len(results)} predictions written to {out}")
    if as_json:
        print_json({"predictions": results, "out": out})
    if out is not None or as_json:
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


def _numbers(values: list[str], kind: type, option: str) -> list[Any]:
    try:
        return [kind(v) for v in _list(values)]
    except ValueError:
        text = ",".join(values)
        raise ConfigError(f"{option} must be a comma-separated list of numbers, got {text!r}") from None


@app.command("study")
def study_cmd(
    ctx: typer.Context,
    store: Path | None = typer.Option(
        None, "--store", "-s", help="Labelled store with train/val/test splits."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for study.json and study.csv."),
    fractions: list[str] = typer.Option(
        ["0.01", "0.05", "0.1", "1"], help="Labelled fractions of the training split (repeat or commas)."
    ),
    seeds: list[str] = typer.Option(
        ["0", "1", "2"], help="Seeds: labelled subset and network initialisation."
    ),
    methods: list[str] = typer.Option(
        ["vae_latent_lr", "m2", "vae_finetune", "supervised_cnn"],
        help="Methods compared on each subset; vae_fixmatch (FixMatch on the VAE encoder) is also available.",
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Trained VAE run to reuse (default: train one, no labels)."
    ),
    epochs: int = typer.Option(10, help="Epochs of M2 and the supervised CNN."),
    vae_epochs: int | None = typer.Option(None, help="Epochs of the unsupervised VAE [--epochs]."),
    latent_dim: int = typer.Option(16, help="Latent size of every network trained here."),
    widths: list[str] = typer.Option(
        ["16", "32", "64"], help="Encoder channels per level, shared by all methods."
    ),
    min_steps: int = typer.Option(0, help="Least optimiser steps of the CNN however few labels it gets."),
    augment: bool = typer.Option(True, help="Random rotation/zoom/shift for every trained network."),
    schedule: str = typer.Option("onecycle", help="onecycle (final weights) | none (best val epoch)."),
    lr: float = typer.Option(2e-3, help="(Peak) learning rate of every trained network."),
    batch_size: int = typer.Option(64),
    device: str = DeviceOpt,
    threads: int | None = ThreadsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a study already in --out."),
    quiet: bool = QuietOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
    print_config: bool = PrintConfigOpt,
    vae: Path | None = typer.Option(None, "--vae", hidden=True, help="Old spelling of --model."),
) -> None:
    """Label-fraction study: VAE latent + LR, M2, fine-tuned VAE encoder and supervised CNN on the same
    labelled subsets."""
    s = with_config(ctx, config, dict(locals()), hidden=("ctx", "vae"))
    s["model"] = pick(s["model"], vae, "--vae", "--model")
    for key in ("fractions", "seeds", "methods", "widths"):
        s[key] = _list(s[key])
    if print_config:
        show_config(s, skip=("ctx", "vae"))
    from vaedx.atomic import atomic_write_json
    from vaedx.diagnose.study import METRICS, label_fraction_study
    from vaedx.training.progress import task_progress

    store, out = required(s["store"], "--store"), required(s["out"], "--out")
    if (out / "study.json").exists() and not s["overwrite"]:
        raise ConfigError("output folder already holds a study; pass --overwrite to replace it", out)
    epochs, augment, schedule, lr, min_steps = (
        s["epochs"],
        s["augment"],
        s["schedule"],
        s["lr"],
        s["min_steps"],
    )
    arch = {"latent_dim": s["latent_dim"], "widths": _numbers(s["widths"], int, "--widths")}
    fractions, seeds = _numbers(s["fractions"], float, "--fractions"), _numbers(s["seeds"], int, "--seeds")
    runs = len(fractions) * len(seeds) * len(s["methods"])
    stage = "study runs (method x fraction x seed)"
    with task_progress(stage, runs, quiet=s["quiet"]) as bar:

        def vae_step(done: int, total: int) -> None:
            """Without --model the study first trains its VAE: the bar shows those epochs, then the runs."""
            if done == 0:
                bar.stage("training the VAE (epochs)", total)
            bar.update(done, total)
            if done == total:
                bar.stage(stage, runs)

        res = label_fraction_study(
            store,
            fractions,
            seeds,
            s["methods"],
            epochs,
            vae=s["model"],
            vae_epochs=s["vae_epochs"],
            model=arch,
            batch_size=s["batch_size"],
            work_dir=out,
            num_threads=s["threads"],
            supervised_min_steps=min_steps,
            augment=augment,
            schedule=schedule,
            lr=lr,
            progress=None if s["quiet"] else lambda row: _progress(row, bar),
            device=check_device(s["device"]),
            vae_progress=vae_step,
        )
    recipe = {"augment": augment, "schedule": schedule, "lr": lr, "epochs": epochs, "min_steps": min_steps}
    doc = {"rows": res.rows, "summary": res.summary, "paired": res.paired, "model": arch, "recipe": recipe}
    atomic_write_json(out / "study.json", doc)
    _write_rows(res.rows, out / "study.csv")
    if s["as_json"]:
        print_json({"study": out / "study.json", "summary": res.summary, "paired": res.paired, "model": arch,
                    "recipe": recipe})  # fmt: skip
        console.print(f"study written to {out / 'study.json'}")
        return
    table = Table(title=f"label-fraction study on {store.name} (test split; mean ± sd over seeds)")
    for col in ("method", "fraction", "labelled", "seeds", *METRICS):
        table.add_column(col, justify="left" if col == "method" else "right")
    for s in res.summary:
        cells = [s["method"], f"{s['fraction']:g}", f"{s['n_labelled']:.0f}", str(s["n_seeds"])]
        table.add_row(*cells, *(s[m] for m in METRICS))
    Console().print(table)
    if res.paired:
        Console().print(_paired_table(res.paired))
    console.print(f"study written to {out / 'study.json'}")


def _paired_table(paired: list[dict[str, Any]]) -> Table:
    """Each method's test AUC minus the supervised CNN's on the same subsets: mean, 95 % t interval over
    the seeds and the seeds it wins, the figure that says whether a method is ahead."""
    title = f"test AUC minus {paired[0]['baseline']} on the same subsets (95 % t interval over seeds)"
    table = Table(title=title)
    for col in ("method", "fraction", "seeds", "mean diff", "95 % interval", "wins"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for p in paired:
        ci = "n/a" if p["ci_low"] is None else f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]"
        cells = [p["method"], f"{p['fraction']:g}", str(p["n_seeds"]), f"{p['diff_mean']:+.3f}", ci]
        table.add_row(*cells, f"{p['wins']}/{p['n_seeds']}")
    return table


def _progress(r: dict[str, Any], bar: Any) -> None:
    """One finished run: a line on stderr (above the bar when there is one) and a step of the bar."""
    bar.print(f"{r['method']} {r['fraction']:g} seed {r['seed']}: test AUC {_fmt(r['auc'])}")
    bar.advance()


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    from vaedx.atomic import atomic_write

    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)

"""Fine-tune a trained VAE's encoder on labels and save it as an encoder run for ``vaedx diagnose fit``.

Why an encoder run and not a new model kind: the latent classifiers, calibration, thresholds, nearest
neighbour explanations, ``diagnose predict`` and the service all read features from a VAE run's encoder.
Fine-tuning (pretrain the VAE without labels, then train encoder + linear head on the labelled images,
with augmentation and a one-cycle schedule) makes the posterior mean linearly separable by class, so a
logistic regression on ``mu`` fitted by the usual pipeline reproduces the head and gets calibrated and
thresholded on validation exactly like any other diagnosis. This recipe is what lifted PneumoniaMNIST
test AUC from 0.94 (frozen latents) to the 0.97-0.98 range (benchmarks/diagnosis.py).

The run's decoder is left as the VAE trained it and no longer matches the encoder, so the run records
``finetune`` in its config, and ``vaedx detect`` and ``vaedx serve`` refuse it as an anomaly model
(``LoadedModel.require_decoder``).

Layout of the output folder::

    best/config.json         the VAE's run config + "finetune": recipe, source run and sha256, labelled count
    best/model.safetensors   the VAE's weights with the fine-tuned encoder and posterior-mean projection
    best/state.json          run state with the weights' sha256 (checked on load)
    finetune.json            per-epoch history (loss, validation AUC) of the fine-tuning
    MODEL_CARD.md            counts, settings and figures (vaedx.runs.model_card)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError
from vaedx.runs import checkpoint as ck
from vaedx.runs.folder import BEST, RunFolder
from vaedx.runs.model_card import label_counts, write_run_card


def check_source(vae: Any, out: Path, overwrite: bool) -> Any:
    """The VAE to fine-tune, loaded, after refusing an existing run in ``out`` and a tuned source."""
    from vaedx.diagnose.encoder import as_loaded

    if (out / BEST).exists() and not overwrite:
        raise ConfigError(f"{out} already holds a run; pass overwrite=True (--overwrite) to replace it")
    loaded = as_loaded(vae)
    if loaded.meta.get("finetune"):
        raise InputError("this run is already fine-tuned; start from the unsupervised VAE", loaded.path)
    return loaded


INITS = ("vae", "random")


def check_init(init: str) -> None:
    """``init`` is ``vae`` (start from the VAE's encoder: fine-tuning) or ``random`` (the same architecture
    from random weights: the supervised CNN baseline, which keeps only the VAE run's architecture)."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def finetune_encoder(
    vae: Any,
    store: TensorStore | str | Path,
    out: str | Path,
    *,
    labelled_fraction: float = 1.0,
    seed: int = 0,
    epochs: int = 20,
    lr: float = 2e-3,
    augment: Any = True,
    batch_size: int = 64,
    min_steps: int = 300,
    init: str = "vae",
    overwrite: bool = False,
    num_threads: int | None = None,
    device: str = "cpu",
    tracker: str = "none",
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Fine-tune ``vae`` (run folder or LoadedModel) on ``store``'s labels; returns the new run, loaded.

    ``init="random"`` trains the same encoder architecture from random weights instead (see
    :func:`check_init`): the supervised CNN baseline, saved in the same layout so that ``diagnose fit``
    and ``evaluate diagnosis`` treat both alike.

    The training is :func:`vaedx.diagnose.supervised.train_supervised` with ``init_from=vae`` and a
    one-cycle schedule (final weights kept), on the seeded stratified ``labelled_fraction`` subset.
    ``tracker`` (none, tensorboard, mlflow) also gets the recipe, the per-epoch history and the folder.
    ``progress(done, total)`` follows the optimiser steps.
    """
    from vaedx.diagnose.supervised import train_supervised
    from vaedx.runs.loaded import load_model
    from vaedx.training.tracker import check_tracker

    check_tracker(tracker)

    check_init(init)
    out = Path(out)
    loaded = check_source(vae, out, overwrite)
    res = train_supervised(
        store, labelled_fraction, seed, epochs, batch_size=batch_size, lr=lr, augment=augment,
        schedule="onecycle", init_from=loaded, pretrained=init == "vae", min_steps=min_steps,
        num_threads=num_threads, device=device, progress=progress,
    )  # fmt: skip
    weights = res.model.encoder_into(loaded.model.state_dict())
    source = Path(loaded.path)
    recipe = {
        "source": str(source),
        "source_sha256": ck.sha256(source / ck.MODEL_FILE),
        "labelled_fraction": labelled_fraction,
        "n_labelled": int(len(res.labelled_rows)),
        "seed": seed,
        "init": init,
        "epochs": len(res.history),
        "lr": lr,
        "augment": bool(augment),
        "schedule": "onecycle",
        "classes": [int(c) for c in res.classes],
        "final_val_auc": res.history[-1].get("val_auc") if res.history else None,
    }
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    recipe["labels"] = label_counts(st, res.labelled_rows)  # for MODEL_CARD.md
    write_encoder_run(loaded, out, weights, recipe, res.history, tracker=tracker, batch_size=batch_size)
    return load_model(out, device=device)


def write_encoder_run(
    loaded: Any,
    out: Path,
    weights: dict[str, Any],
    recipe: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    tracker: str = "none",
    batch_size: int = 64,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``weights`` as an encoder run in ``out``: finetune.json, best/ and MODEL_CARD.md (and each
    ``extra`` name -> JSON document, e.g. the settings search's recipe.json, before best/).

    Shared by the fixed recipe and the settings search so that both leave the same folder layout and the
    same kill-safe order of writes.
    """
    from vaedx.atomic import atomic_write_json
    from vaedx.training.tracker import open_tracker

    source = Path(loaded.path)
    config = {**ck.read_run_config(source / ck.CONFIG_FILE), "finetune": recipe}

    def write_weights(tmp: Path) -> None:
        ck.save_tensors(tmp / ck.MODEL_FILE, weights, {"format": "vaedx-finetuned-encoder"})

    # best/ is what loaders look for, so it goes in last, and an earlier run's goes first: a kill at any
    # point leaves either no run that loads or the new weights with their own history, never a mix
    run = RunFolder(out)
    for old in (run.best, run.root / f".{BEST}.old"):
        shutil.rmtree(old, ignore_errors=True)
    for unfinished in run.root.glob(f".{run.finetune.name}.*.tmp"):  # a killed run's atomic write
        unfinished.unlink()
    atomic_write_json(run.finetune, {**recipe, "history": history})
    for name, doc in (extra or {}).items():
        atomic_write_json(run.root / name, doc)
    run.write_checkpoint(BEST, write_weights, config, {"run": {"epoch": recipe["epochs"], "finetuned": True}})
    tracked = open_tracker(tracker, out, {"finetune": {**recipe, "batch_size": batch_size}})
    for row in history:
        tracked.log_metrics(row, int(row["epoch"]))
    tracked.finish(out, True)
    write_run_card(out)

"""The default diagnosis recipe: choose the fine-tuning settings on the validation split, within a budget.

Why search at all: the fixed recipe of :func:`vaedx.diagnose.finetune.finetune_encoder` (lr 2e-3,
standard augmentation, one-cycle, final weights) was tuned on PneumoniaMNIST, and on a small imbalanced
28-px set it over-fitted. No single setting suits every data set, and nothing here may be set per data
set, so the settings are chosen the only honest way: by validation AUC, never by a test row.

What is searched (a staged, coordinate-wise search from a sensible start, so a few trials already cover
each setting once):

* the encoder: frozen (the VAE's posterior mean + the cross-validated logistic regression of ``diagnose fit``)
  against fine-tuned (encoder + linear head on the labels);
* for fine-tuning: learning rate, augmentation strength (none / light / standard), weight decay and class
  weighting; each trial stops early on validation AUC and keeps its best epoch.

The budget bounds the whole search: the first fine-tuning trial is timed, the number of further trials is
fitted to what is left, every later trial starts only if one more trial of the longest kind seen so far
still fits, and a trial stops at the optimiser step or epoch that would overrun the budget (its last
epoch is then validated, and the best validated epoch kept). Every trial, its
validation figures and the time spent go to ``recipe.json`` in the output folder (the model card shows
them). The winner's weights are kept in memory, so nothing is retrained after the search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError

RECIPE_FILE = "recipe.json"

#: Augmentation strengths (``light`` halves the standard ranges of :class:`vaedx.data.augment.AugmentConfig`).
AUGMENT: dict[str, dict[str, float] | None] = {
    "standard": {"rotate_deg": 10.0, "scale": 0.1, "translate": 0.05},
    "light": {"rotate_deg": 5.0, "scale": 0.05, "translate": 0.025},
    "none": None,
}

#: The search, stage by stage: each stage tries its values (the first is the starting point) with the
#: best values found so far for the others. Order matters: learning rate changes the most.
SPACE: dict[str, list[Any]] = {
    "lr": [1e-3, 3e-3, 3e-4],
    "augment": ["standard", "light", "none"],
    "weight_decay": [1e-4, 1e-2],
    "class_weight": ["balanced", None],
}


def plan(space: dict[str, Sequence[Any]]) -> list[tuple[str | None, Any]]:
    """(setting, value) of each fine-tuning trial in order; (None, None) is the starting point."""
    for key, values in space.items():
        if key not in SPACE:
            raise ConfigError(f"unknown recipe setting {key!r}; choose from {', '.join(SPACE)}")
        if not values:
            raise ConfigError(f"recipe setting {key!r} needs at least one value")
        if key == "augment" and any(v not in AUGMENT for v in values):
            raise ConfigError(f"augment must be one of {', '.join(AUGMENT)}, got {list(values)}")
    return [(None, None)] + [(k, v) for k, vs in space.items() for v in list(vs)[1:]]


def auto_finetune(
    vae: Any,
    store: TensorStore | str | Path,
    out: str | Path,
    *,
    budget_minutes: float = 10.0,
    labelled_fraction: float = 1.0,
    seed: int = 0,
    max_epochs: int = 30,
    patience: int = 5,
    batch_size: int = 64,
    min_steps: int = 300,
    space: dict[str, Sequence[Any]] | None = None,
    frozen: bool = True,
    init: str = "vae",
    overwrite: bool = False,
    num_threads: int | None = None,
    device: str = "cpu",
    tracker: str = "none",
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Search the fine-tuning settings on validation within ``budget_minutes``; returns the run, loaded.

    ``out`` gets the same layout as :func:`vaedx.diagnose.finetune.finetune_encoder` plus ``recipe.json``.
    When the frozen encoder wins, the run's encoder is the VAE's own (``"encoder": "frozen"`` in its
    recipe), so ``diagnose fit --features mu`` follows either way. ``space`` overrides :data:`SPACE`
    (settings left out keep their starting value); ``frozen=False`` leaves out the frozen candidate.
    ``init="random"`` runs the same search for the same encoder architecture from random weights (the
    supervised CNN with the same budget; no frozen candidate, as there is nothing pretrained to freeze).
    ``max_epochs`` (raised so that at least ``min_steps`` optimiser steps are allowed) bounds each trial,
    which keeps its best validation epoch after ``patience`` epochs without improvement. ``clock`` is
    the time source of the budget; ``progress(line)`` gets one line per trial.
    """
    from vaedx.diagnose.finetune import check_init, check_source, write_encoder_run
    from vaedx.runs import checkpoint as ck
    from vaedx.runs.loaded import load_model
    from vaedx.runs.model_card import label_counts
    from vaedx.training.tracker import check_tracker

    check_tracker(tracker)
    check_init(init)
    frozen = frozen and init == "vae"
    if not budget_minutes > 0:
        raise ConfigError(f"budget must be > 0 minutes, got {budget_minutes}")
    space = {**{k: v[:1] for k, v in SPACE.items()}, **(space if space is not None else SPACE)}
    steps = plan(space)
    out = Path(out)
    loaded = check_source(vae, out, overwrite)
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    start, budget = clock(), budget_minutes * 60.0
    say = progress or (lambda line: None)
    trials: list[dict[str, Any]] = []
    if frozen:
        trials.append(_frozen_trial(loaded, st, labelled_fraction, seed, clock))
        say(_line(trials[-1]))
    best_settings = {k: v[0] for k, v in space.items()}
    best_ft: tuple[float, Any] | None = None  # (val AUC, SupervisedResult) of the best fine-tuned trial
    longest, planned = 0.0, None
    for i, (key, value) in enumerate(steps):
        left = budget - (clock() - start)
        if i > 0 and (left < longest or (planned is not None and i >= planned)):
            trials += [_skipped(best_settings, k, v) for k, v in steps[i:]]
            break
        settings = dict(best_settings) if key is None else {**best_settings, key: value}
        t0 = clock()
        trial, res = _finetune_trial(
            loaded, st, settings, labelled_fraction=labelled_fraction, seed=seed, max_epochs=max_epochs,
            patience=patience, batch_size=batch_size, min_steps=min_steps, num_threads=num_threads,
            device=device, stop=_deadline(clock, start + budget), pretrained=init == "vae",
        )  # fmt: skip
        trial["seconds"] = round(clock() - t0, 3)
        trials.append(trial)
        say(_line(trial))
        longest = max(longest, trial["seconds"])
        if planned is None:  # fit the number of trials to the budget from the first one's time
            room = budget - (clock() - start)
            planned = 1 + min(len(steps) - 1, max(0, math.floor(room / max(longest, 1e-9))))
        auc = trial["val_auc"]
        if auc is not None and (best_ft is None or auc > best_ft[0]):
            best_ft, best_settings = (auc, res), settings
    if best_ft is None:
        raise ConfigError("every fine-tuning trial diverged or had no validation AUC; check the labels")
    for n, t in enumerate(trials):
        t["trial"] = n
    winner = _winner(trials)
    res = best_ft[1]
    if trials[winner]["encoder"] == "frozen":
        weights, history = loaded.model.state_dict(), []
    else:
        weights, history = res.model.encoder_into(loaded.model.state_dict()), res.history
    chosen = trials[winner]
    source = Path(loaded.path)
    recipe = {
        "recipe": "auto",
        "init": init,
        "encoder": chosen["encoder"],
        "source": str(source),
        "source_sha256": ck.sha256(source / ck.MODEL_FILE),
        "labelled_fraction": labelled_fraction,
        "n_labelled": int(len(res.labelled_rows)),
        "seed": seed,
        "epochs": chosen.get("best_epoch") or 0,
        **{k: chosen.get(k) for k in SPACE},
        "schedule": "none",
        "classes": [int(c) for c in res.classes],
        "final_val_auc": chosen["val_auc"],
        "labels": label_counts(st, res.labelled_rows),
    }
    doc = {
        "selection": "validation AUC (test rows are never read)",
        "budget_minutes": budget_minutes,
        "seconds_spent": round(clock() - start, 3),
        "first_trial_seconds": next((t["seconds"] for t in trials if t["encoder"] == "finetune"), None),
        "planned_trials": (planned or 0) + int(frozen),
        "trials_run": sum(t["status"] != "skipped (budget)" for t in trials),
        "winner": winner,
        "chosen": {k: chosen.get(k) for k in ("encoder", *SPACE, "best_epoch", "val_auc", "val_acc")},
        "data": {
            "train_split": "train", "val_split": "val", "labelled_fraction": labelled_fraction,
            "n_train": int(len(res.labelled_rows)), "n_val": int(len(_val(st, res.classes))),
        },
        "settings": {"max_epochs": max_epochs, "patience": patience, "batch_size": batch_size,
                     "min_steps": min_steps, "space": {k: list(v) for k, v in space.items()}},
        "trials": trials,
    }  # fmt: skip
    extra = {RECIPE_FILE: doc}
    write_encoder_run(
        loaded, out, weights, recipe, history, tracker=tracker, batch_size=batch_size, extra=extra
    )
    return load_model(out, device=device)


def _val(st: TensorStore, classes: np.ndarray) -> np.ndarray:
    from vaedx.diagnose.torchfit import val_rows

    return val_rows(st, "val", classes)


def _deadline(clock: Callable[[], float], end: float) -> Callable[[], bool]:
    """stop() for the training loop, asked between steps and after each epoch's validation: True when
    one more interval as long as the longest so far would overrun ``end``."""
    last, longest = [clock()], [0.0]

    def stop() -> bool:
        now = clock()
        longest[0] = max(longest[0], now - last[0])
        last[0] = now
        return now + longest[0] > end

    return stop


def _frozen_trial(
    loaded: Any, st: TensorStore, fraction: float, seed: int, clock: Callable[[], float]
) -> dict[str, Any]:
    """The frozen encoder's posterior mean + the cross-validated classifiers of ``diagnose fit``."""
    from vaedx.diagnose.fit import fit_diagnosis

    t0 = clock()
    # logistic regression only: the other candidates' grids cost minutes on a few thousand images, which
    # the budget is better spent on, and diagnose fit still compares them all afterwards
    diag = fit_diagnosis(  # no test-time augmentation: the fine-tuning trials are scored without it too
        loaded, st, labelled_fraction=fraction, seed=seed, include=("mu",), candidates=("logreg",), tta="none"
    )
    v = diag.metrics
    auc = v.get("auc", v.get("macro_auc"))
    return {
        "encoder": "frozen", "status": "ok", "classifier": diag.meta["chosen"]["classifier"],
        "val_auc": None if auc is None else float(auc), "val_acc": _acc(v), "seconds": round(clock() - t0, 3),
    }  # fmt: skip


def _acc(v: dict[str, Any]) -> float | None:
    acc = v.get("accuracy", v.get("acc"))
    return None if acc is None else float(acc)


def _finetune_trial(
    loaded: Any, st: TensorStore, settings: dict[str, Any], **kw: Any
) -> tuple[dict[str, Any], Any]:
    """One fine-tuning run with early stopping on validation AUC; a divergence is a lost trial."""
    from vaedx.diagnose.supervised import train_supervised

    trial: dict[str, Any] = {"encoder": "finetune", **settings}
    try:
        res = train_supervised(
            st, kw["labelled_fraction"], kw["seed"], kw["max_epochs"], batch_size=kw["batch_size"],
            lr=settings["lr"], weight_decay=settings["weight_decay"], patience=kw["patience"],
            min_steps=kw["min_steps"], augment=AUGMENT[settings["augment"]], schedule="none",
            init_from=loaded, pretrained=kw["pretrained"], device=kw["device"], num_threads=kw["num_threads"],
            class_weight=settings["class_weight"], stop=kw["stop"],
        )  # fmt: skip
    except ConfigError as e:
        return {**trial, "status": f"failed: {e}", "val_auc": None, "val_acc": None}, None
    kept = next((r for r in res.history if r["epoch"] == res.best_epoch), {})
    auc = kept.get("val_auc")
    ok = auc is not None and np.isfinite(auc)
    trial |= {"status": "ok" if ok else "no validation AUC", "val_auc": float(auc) if ok else None}
    trial |= {"val_acc": kept.get("val_acc"), "best_epoch": res.best_epoch, "epochs_run": len(res.history)}
    return trial, res


def _skipped(best: dict[str, Any], key: str | None, value: Any) -> dict[str, Any]:
    settings = dict(best) if key is None else {**best, key: value}
    return {"encoder": "finetune", **settings, "status": "skipped (budget)", "val_auc": None, "val_acc": None}


def _winner(trials: list[dict[str, Any]]) -> int:
    """Index of the highest validation AUC (the earlier trial on a tie: the simpler, cheaper candidate)."""
    scored = [(t["val_auc"], -i) for i, t in enumerate(trials) if t["val_auc"] is not None]
    return -max(scored)[1]


def _line(t: dict[str, Any]) -> str:
    auc = "n/a" if t["val_auc"] is None else f"{t['val_auc']:.4f}"
    if t["encoder"] == "frozen":
        what = f"frozen encoder + {t.get('classifier')}"
    else:
        what = (f"fine-tune lr {t['lr']:g}, augment {t['augment']}, weight decay {t['weight_decay']:g}, "
                f"class weight {t['class_weight'] or 'none'}")  # fmt: skip
    return f"{what}: val AUC {auc} ({t['status']}, {t.get('seconds', 0):.0f} s)"

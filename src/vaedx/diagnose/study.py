"""Label-fraction study: how much does unsupervised pre-training buy when only a few images are labelled?

For each labelled fraction and seed, every method gets the *same* stratified labelled subset of the
training split and is scored on the whole labelled test split:

* ``vae_latent_lr``: a VAE trained once without labels on all training images (or a given one), then a
  logistic regression (C chosen by CV when each class has >= 2 images) on the latent features of the subset;
* ``m2``: the semi-supervised VAE of Kingma et al. (2014) on subset + the rest as unlabelled images;
* ``vae_finetune``: that VAE's encoder + a linear head fine-tuned with cross-entropy on the subset;
* ``vae_fixmatch``: the same start and labelled steps plus FixMatch's pseudo-label consistency term on the
  rest of the training images (:mod:`vaedx.diagnose.fixmatch`);
* ``supervised_cnn``: the same encoder architecture trained with cross-entropy on the subset only.

``augment``/``schedule`` apply to every trained network alike (M2, fine-tuning, CNN), so a difference
in the table comes from the objective and the pre-training, not from the recipe.

Accuracy, sensitivity and specificity use each method's argmax decision (binary: P(positive) > 0.5), the
same rule for all, so they compare methods rather than threshold choices; AUC is threshold-free.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.diagnose.classifiers import select_classifier
from vaedx.diagnose.encoder import as_loaded
from vaedx.diagnose.features import latent_features
from vaedx.diagnose.fixmatch import train_fixmatch
from vaedx.diagnose.labels import labelled_rows, labelled_subset
from vaedx.diagnose.semi_train import train_semi
from vaedx.diagnose.supervised import train_supervised
from vaedx.diagnose.torchfit import SMALL_MODEL, class_index
from vaedx.errors import ConfigError
from vaedx.metrics.measures import auroc, multiclass_report, sensitivity_specificity
from vaedx.training.batches import RowView

METRICS = ("auc", "acc", "sens", "spec")


@dataclass
class StudyResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per method x fraction x seed
    summary: list[dict[str, Any]] = field(default_factory=list)  # mean and sd over seeds
    paired: list[dict[str, Any]] = field(default_factory=list)  # AUC minus the CNN's, same subsets


def split_metrics(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float | None]:
    """AUC, accuracy and sensitivity/specificity of argmax decisions (multi-class: macro means)."""
    idx = class_index(labels, classes)
    pred = proba.argmax(1)
    acc = float(np.mean(pred == idx))
    if len(classes) == 2:
        sens, spec = sensitivity_specificity((idx == 1).astype(np.int8), (pred == 1).astype(np.int8))
        return {"auc": auroc((idx == 1).astype(np.int8), proba[:, 1]), "acc": acc, "sens": sens, "spec": spec}
    per = multiclass_report(idx, proba)["per_class"]

    def mean(key: str) -> float | None:
        vals = [r[key] for r in per]
        return None if None in vals else float(np.mean(vals))

    return {
        "auc": multiclass_report(idx, proba)["macro_auc"],
        "acc": acc,
        "sens": mean("sensitivity"),
        "spec": mean("specificity"),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample sd over seeds per (method, fraction), with ``auc`` etc. as 'mean ± sd' text."""
    out = []
    for key in dict.fromkeys((r["method"], r["fraction"]) for r in rows):
        group = [r for r in rows if (r["method"], r["fraction"]) == key]
        agg: dict[str, Any] = {
            "method": key[0],
            "fraction": key[1],
            "n_seeds": len(group),
            "n_labelled": float(np.mean([r["n_labelled"] for r in group])),
        }
        for m in METRICS:
            vals = np.array([r[m] for r in group if r[m] is not None], dtype=np.float64)
            mean = float(vals.mean()) if vals.size else None
            sd = float(vals.std(ddof=1)) if vals.size > 1 else 0.0 if vals.size else None
            agg |= {f"{m}_mean": mean, f"{m}_sd": sd, m: "n/a" if mean is None else f"{mean:.3f} ± {sd:.3f}"}
        out.append(agg)
    return out


def paired_comparison(
    rows: Sequence[dict[str, Any]], baseline: str = "supervised_cnn", metric: str = "auc", alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Per (method, fraction): ``metric`` of the method minus the baseline's on the same seeded subsets.

    Why paired over seeds: which images get labelled moves every method's AUC by several hundredths at 1 %
    labels, and the methods share each subset, so the per-seed differences are far less variable than
    either method's AUC; two overlapping mean ± sd ranges say little, the interval of the mean difference
    says whether one method is ahead. The interval is Student's t over the seeds (the subsets are the
    random units; a bootstrap over 3-10 of them would be too narrow). ``wins``: seeds where the method is
    strictly ahead. Methods or fractions without the baseline, or seeds either lacks, are left out.
    """
    from scipy import stats

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    value = {(r["method"], r["fraction"], r["seed"]): r[metric] for r in rows}
    out = []
    for method, fraction in dict.fromkeys((r["method"], r["fraction"]) for r in rows):
        if method == baseline:
            continue
        seeds = [
            s
            for (m, f, s), v in value.items()
            if (m, f) == (method, fraction) and v is not None and value.get((baseline, f, s)) is not None
        ]
        if not seeds:
            continue
        d = np.array([value[(method, fraction, s)] - value[(baseline, fraction, s)] for s in seeds])
        mean, n = float(d.mean()), len(d)
        sd = float(d.std(ddof=1)) if n > 1 else None
        half = None if sd is None else float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n))
        out.append(
            {
                "method": method,
                "baseline": baseline,
                "fraction": fraction,
                "metric": metric,
                "n_seeds": n,
                "diff_mean": mean,
                "diff_sd": sd,
                "ci_low": None if half is None else mean - half,
                "ci_high": None if half is None else mean + half,
                "wins": int(np.sum(d > 0)),
            }
        )
    return out


def _pretrained_vae(
    st: TensorStore, vae: Any, model: dict[str, Any], epochs: int, work: Path, seed: int, threads: int | None,
    device: str = "cpu", progress: Callable[[int, int], None] | None = None,
) -> Any:
    """The given VAE, or one trained here; ``progress(epochs done, epochs)`` follows that training, which
    is often the longest single step of a study."""
    if vae is not None:
        loaded = as_loaded(vae, device=device)
        st.check_compatible(loaded.preprocess, loaded.image_shape)
        return loaded
    from vaedx.training.engine import run_training

    report = progress or (lambda done, total: None)
    started = [0]  # the epoch of the last batch seen: a new epoch means the one before it finished

    def on_batch(epoch: int, _rows: Any) -> None:
        if epoch != started[0]:
            started[0] = epoch
            report(epoch - 1, epochs)

    opts = {k: v for k, v in model.items() if k not in ("in_channels", "image_size")}
    opts |= {"store": st.root, "out": work / "vae", "epochs": epochs, "seed": seed, "num_threads": threads}
    opts |= {"patience": 0, "budget": 0}  # the same epochs for every label fraction, whatever the machine
    path = run_training(None, {**opts, "device": device}, overwrite=True, quiet=True, on_batch=on_batch)
    report(epochs, epochs)  # also after early stopping: the training is over
    return as_loaded(path, device=device)  # loaded on the device the features run on


@dataclass
class StudyInputs:
    """What every study method reads: the store, the rows, the shared recipe and the pre-trained VAE."""

    store: TensorStore
    train_rows: np.ndarray  # labelled training rows, sorted
    test: np.ndarray  # labelled test rows of a class seen in training
    epochs: int
    trainer_options: dict[str, Any]  # model, batch size, splits, threads, augment, schedule, lr, device
    min_steps: int = 0
    vae: Any = None  # the loaded VAE, when a method needs it
    features: dict[str, np.ndarray] = field(default_factory=dict)  # its latent means: train, test


@dataclass(frozen=True)
class StudyMethod:
    """``run(inputs, fraction, seed, labelled rows) -> test probabilities``, and what it needs prepared."""

    run: Callable[[StudyInputs, float, int, np.ndarray], np.ndarray]
    needs_vae: bool = False
    needs_features: bool = False


def _vae_latent_lr(inp: StudyInputs, fraction: float, seed: int, rows: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(inp.train_rows, rows)
    sel = select_classifier(inp.features["train"][pos], inp.store.labels[rows], ("logreg",), seed=seed)
    return sel.estimator.predict_proba(inp.features["test"])


def _trained(
    inp: StudyInputs, train: Callable[..., Any], fraction: float, seed: int, **extra: Any
) -> np.ndarray:
    res = train(inp.store, fraction, seed, inp.epochs, **inp.trainer_options, **extra)
    return res.model.predict_proba(RowView(inp.store.images, inp.test))


def _m2(inp: StudyInputs, fraction: float, seed: int, rows: np.ndarray) -> np.ndarray:
    return _trained(inp, train_semi, fraction, seed)


def _vae_finetune(inp: StudyInputs, fraction: float, seed: int, rows: np.ndarray) -> np.ndarray:
    return _trained(inp, train_supervised, fraction, seed, min_steps=inp.min_steps, init_from=inp.vae)


def _vae_fixmatch(inp: StudyInputs, fraction: float, seed: int, rows: np.ndarray) -> np.ndarray:
    return _trained(inp, train_fixmatch, fraction, seed, min_steps=inp.min_steps, init_from=inp.vae)


def _supervised_cnn(inp: StudyInputs, fraction: float, seed: int, rows: np.ndarray) -> np.ndarray:
    return _trained(inp, train_supervised, fraction, seed, min_steps=inp.min_steps)


#: The study's methods by name, in table order; a new method is one entry here.
STUDY_METHODS: dict[str, StudyMethod] = {
    "vae_latent_lr": StudyMethod(_vae_latent_lr, needs_vae=True, needs_features=True),
    "m2": StudyMethod(_m2),
    "vae_finetune": StudyMethod(_vae_finetune, needs_vae=True),
    "supervised_cnn": StudyMethod(_supervised_cnn),
    "vae_fixmatch": StudyMethod(_vae_fixmatch, needs_vae=True),
}
METHODS = tuple(STUDY_METHODS)


def label_fraction_study(
    store: TensorStore | str | Path,
    fractions: Sequence[float] = (0.01, 0.05, 0.1, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = METHODS,
    epochs: int = 10,
    *,
    vae: Any = None,
    vae_epochs: int | None = None,
    model: dict[str, Any] | None = None,
    batch_size: int = 64,
    train_split: str = "train",
    val_split: str | None = "val",
    test_split: str = "test",
    work_dir: str | Path | None = None,
    num_threads: int | None = None,
    supervised_min_steps: int = 0,
    augment: Any = None,
    schedule: str = "none",
    lr: float = 1e-3,
    progress: Callable[[dict[str, Any]], None] | None = None,
    device: str = "cpu",
    vae_progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Rows {method, fraction, n_labelled, seed, auc, acc, sens, spec} and their mean ± sd over seeds.

    ``vae`` (a run folder or LoadedModel) skips the unsupervised training; otherwise one VAE is trained
    for ``vae_epochs`` (default ``epochs``) in ``work_dir`` (default: a temporary folder) and reused for
    every fraction. ``model`` holds ModelConfig options for every trained network. Every labelled subset
    is drawn before any training, so an infeasible fraction fails at once. ``supervised_min_steps`` lets
    the CNN take at least that many optimiser steps however few images are labelled (see train_supervised);
    it applies to ``vae_finetune`` too. ``augment``, ``schedule`` and ``lr`` go to every trained network.
    ``progress(row)`` sees each finished run; ``vae_progress(epochs done, epochs)`` follows the training of
    the unsupervised VAE, from ``(0, epochs)`` to ``(epochs, epochs)``, and is not called when one is given.
    """
    st = store if isinstance(store, TensorStore) else TensorStore.open(store)
    bad = [m for m in methods if m not in STUDY_METHODS]
    if bad or not methods:
        raise ConfigError(f"unknown method(s) {bad or '(none)'}; choose from {', '.join(METHODS)}")
    train_rows, test = labelled_rows(st, train_split), labelled_rows(st, test_split)
    classes = np.unique(st.labels[train_rows])
    test = test[np.isin(st.labels[test], classes)]
    subsets = {
        (f, s): train_rows[labelled_subset(st.labels[train_rows], f, s, st.label_names)]
        for f in fractions
        for s in seeds
    }
    arch = {**SMALL_MODEL, **(model or {})}
    options = {"model": arch, "batch_size": batch_size, "train_split": train_split, "val_split": val_split}
    options |= {"num_threads": num_threads, "device": device}
    options |= {"augment": augment, "schedule": schedule, "lr": lr}
    inp = StudyInputs(st, train_rows, test, epochs, options, supervised_min_steps)
    chosen = [STUDY_METHODS[m] for m in methods]
    result = StudyResult()
    with tempfile.TemporaryDirectory(prefix="vaedx-study-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        if any(m.needs_vae for m in chosen):
            inp.vae = _pretrained_vae(
                st, vae, arch, vae_epochs or epochs, work, min(seeds, default=0), num_threads, device,
                vae_progress,
            )
        if any(m.needs_features for m in chosen):
            inp.features = {
                "train": latent_features(inp.vae, RowView(st.images, train_rows)),
                "test": latent_features(inp.vae, RowView(st.images, test)),
            }
        for (fraction, seed), rows in subsets.items():
            for name, method in zip(methods, chosen, strict=True):
                proba = method.run(inp, fraction, seed, rows)
                row = {
                    "method": name,
                    "fraction": fraction,
                    "n_labelled": len(rows),
                    "seed": seed,
                    **split_metrics(st.labels[test], proba, classes),
                }
                result.rows.append(row)
                if progress is not None:
                    progress(row)
    result.summary = summarise(result.rows)
    result.paired = paired_comparison(result.rows)
    return result

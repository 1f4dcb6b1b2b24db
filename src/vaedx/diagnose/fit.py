"""Fit a diagnosis model on a trained encoder and a labelled store, and evaluate it on another split.

The recipe, each step on its own data so no number is fitted on what it is judged by:

1. training split (optionally a stratified fraction of its labels): features -> classifier chosen by CV;
2. validation split: calibration of the frozen classifier, then the binary decision threshold;
3. test split (:func:`evaluate_diagnosis`): the figures to report.

Validation metrics are saved too, but calibration and threshold were fitted on those very images, so they
are optimistic; report the test figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.diagnose.calibration import ThresholdRule, fit_probability_calibration
from vaedx.diagnose.classifiers import CLASSIFIERS, select_classifier
from vaedx.diagnose.encoder import as_loaded, check_encoder, encoder_record
from vaedx.diagnose.features import FeatureSpec
from vaedx.diagnose.labels import labelled_rows, labelled_subset
from vaedx.diagnose.model import DiagnosisModel
from vaedx.errors import InputError
from vaedx.metrics.measures import binary_report, multiclass_report
from vaedx.runs.model_card import label_counts, store_facts
from vaedx.training.batches import RowView


def as_store(store: TensorStore | str | Path) -> TensorStore:
    return store if isinstance(store, TensorStore) else TensorStore.open(store)


def evaluation_report(diag: DiagnosisModel, y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """binary_report at the saved threshold (positive = classes[1]) or multiclass_report, JSON-ready."""
    unknown = np.setdiff1d(np.unique(y), diag.classes)
    if unknown.size:
        raise InputError(f"labels {unknown.tolist()} were not among the classes the model was fitted on")
    if diag.binary:
        thr = diag.threshold if diag.threshold is not None else 0.5
        return binary_report((y == diag.classes[1]).astype(np.int8), proba[:, 1], thr)
    index = np.searchsorted(diag.classes, y)
    return multiclass_report(index, proba, diag.class_names)


def fit_diagnosis(
    model: Any,
    store: TensorStore | str | Path,
    *,
    out: str | Path | None = None,
    labelled_fraction: float = 1.0,
    seed: int = 0,
    calibration: str = "sigmoid",
    threshold: str | float = "youden",
    candidates: Sequence[str] = CLASSIFIERS,
    include: Sequence[str] = ("mu", "logvar"),
    scorers: Sequence[str] = (),
    train_split: str = "train",
    val_split: str = "val",
    n_splits: int = 5,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> DiagnosisModel:
    """Fit, calibrate and threshold a classifier on the encoder's features; save it when ``out`` is given.

    ``model`` is a run folder or a LoadedModel (VAE, AE or PCA); ``labelled_fraction`` keeps a stratified,
    seeded share of the training labels (the rest are not used), as in the label-fraction study.
    ``progress(done, total)`` counts the training and validation images encoded (the slow part).
    """
    loaded, st = as_loaded(model), as_store(store)
    st.check_compatible(loaded.preprocess, loaded.image_shape)
    rule = ThresholdRule.parse(threshold)
    train_all = labelled_rows(st, train_split)
    rows = train_all[labelled_subset(st.labels[train_all], labelled_fraction, seed, st.label_names)]
    val = labelled_rows(st, val_split)
    spec = FeatureSpec.for_model(loaded, include, scorers)
    total = len(rows) + len(val)
    x_tr = spec.compute(loaded, RowView(st.images, rows), batch_size, _shifted(progress, 0, total))
    y_tr = st.labels[rows]
    sel = select_classifier(x_tr, y_tr, candidates, n_splits, seed)
    x_val = spec.compute(loaded, RowView(st.images, val), batch_size, _shifted(progress, len(rows), total))
    y_val = st.labels[val]
    cal = fit_probability_calibration(sel.estimator, x_val, y_val, calibration)
    diag = DiagnosisModel(
        estimator=cal if cal is not None else sel.estimator,
        label_names=list(st.label_names),
        features=spec,
        encoder=encoder_record(loaded),
        preprocess=loaded.preprocess.model_dump(mode="json"),
        selection=sel.table,
        train_features=x_tr,
        train_labels=y_tr,
        train_refs=[st.paths[i] for i in rows],
    )
    proba = diag.predict_proba(x_val)
    if diag.binary:
        diag.threshold = rule.choose((y_val == diag.classes[1]).astype(np.int8), proba[:, 1])
        diag.threshold_rule = str(rule)
    diag.metrics = {**evaluation_report(diag, y_val, proba), "split": val_split, "optimistic": True}
    chosen = {"classifier": sel.name, "params": sel.params, "cv_auc": sel.cv_auc, "cv_folds": sel.n_splits}
    data = {
        "store": str(Path(st.root).resolve()),
        "train_split": train_split,
        "val_split": val_split,
        "labelled_fraction": labelled_fraction,
        "seed": seed,
        "n_labelled": int(len(rows)),
        "n_train_labelled": int(len(train_all)),
        "n_val": int(len(val)),
        "train_labels": label_counts(st, rows),
        "val_labels": label_counts(st, val),
        "store_facts": store_facts(st),  # counts for MODEL_CARD.md: no patient id, no path
        "train_rows": rows.tolist(),
    }
    diag.meta = {"chosen": chosen, "data": data}
    if out is not None:
        diag.save(out)
    return diag


def _shifted(
    progress: Callable[[int, int], None] | None, start: int, total: int
) -> Callable[[int, int], None] | None:
    """One part of a longer job: a part's ``(done, n)`` becomes ``(start + done, total)``."""
    if progress is None:
        return None
    return lambda done, _n: progress(start + done, total)


def split_probabilities(
    diag: DiagnosisModel | str | Path,
    model: Any,
    store: TensorStore | str | Path,
    split: str = "test",
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DiagnosisModel, np.ndarray, np.ndarray, np.ndarray]:
    """(diagnosis, labels, calibrated probabilities, store rows) for the labelled images of one split;
    ``progress(done, total)`` follows the encoding."""
    d = diag if isinstance(diag, DiagnosisModel) else DiagnosisModel.load(diag)
    loaded, st = as_loaded(model), as_store(store)
    check_encoder(d, loaded)
    st.check_compatible(loaded.preprocess, loaded.image_shape)
    rows = labelled_rows(st, split, min_classes=1)
    proba = d.predict_proba(d.features.compute(loaded, RowView(st.images, rows), batch_size, progress))
    return d, st.labels[rows], proba, rows


def evaluate_diagnosis(
    diag: DiagnosisModel | str | Path,
    model: Any,
    store: TensorStore | str | Path,
    split: str = "test",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Metrics of a fitted diagnosis model on a labelled split (the figures to report)."""
    d, y, proba, _ = split_probabilities(diag, model, store, split, batch_size)
    return {**evaluation_report(d, y, proba), "split": split}

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
    tta: str = "auto",
) -> DiagnosisModel:
    """Fit, calibrate and threshold a classifier on the encoder's features; save it when ``out`` is given.

    ``model`` is a run folder or a LoadedModel (VAE, AE or PCA); ``labelled_fraction`` keeps a stratified,
    seeded share of the training labels (the rest are not used), as in the label-fraction study.
    ``progress(done, total)`` counts the training and validation images encoded (the slow part).
    ``tta="auto"`` tries the test-time augmentations of :data:`vaedx.diagnose.features.TTA_VIEWS` on the
    validation split with the chosen classifier and keeps one only where its validation AUC is higher
    than without (recorded in ``meta["tta"]``); ``"none"`` or a view name fixes it.
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
    tta_doc = choose_tta(tta, sel.estimator, spec, loaded, RowView(st.images, val), x_val, y_val, batch_size)
    if spec.tta != "none":  # the chosen views for every later feature row, training rows (neighbours) too
        x_val = tta_doc.pop("features")
        x_tr = spec.compute(loaded, RowView(st.images, rows), batch_size)
    tta_doc.pop("features", None)
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
    diag.meta = {"chosen": chosen, "data": data, "tta": tta_doc}
    if out is not None:
        diag.save(out)
    return diag


#: Resamples of the paired bootstrap that decides whether a test-time augmentation helps on validation.
TTA_BOOT = 200


def choose_tta(
    tta: str,
    estimator: Any,
    spec: FeatureSpec,
    loaded: Any,
    val_images: Any,
    x_val: np.ndarray,
    y_val: np.ndarray,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Set ``spec.tta``: the given view set, or with ``"auto"`` the view set whose averaged validation
    features raise the validation AUC of ``estimator`` (fitted on plain training features) most, kept
    only when a paired bootstrap over the validation images says the gain is real (one-sided p < 0.05).

    Why the bootstrap: on a few hundred validation images two view sets differ by a few ten-thousandths
    of AUC by chance, and "strictly higher" alone would pick one; measured on PneumoniaMNIST and the
    Cheng set, such picks lowered test AUC. Returns the record for the diagnosis (with the chosen
    ``features``)."""
    from dataclasses import replace

    from vaedx.diagnose.features import TTA_VIEWS, check_tta, is_torch_model, unwrap

    if tta != "auto":
        spec.tta = check_tta(tta)
        feats = x_val if tta == "none" else spec.compute(loaded, val_images, batch_size)
        return {"mode": tta, "chosen": tta, "features": feats}
    if not is_torch_model(unwrap(loaded)):
        return {"mode": "auto", "chosen": "none", "why": "no torch encoder (PCA)"}
    base = estimator.predict_proba(x_val)
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, len(y_val), len(y_val)) for _ in range(TTA_BOOT)]
    tried: dict[str, Any] = {"none": {"val_auc": _auc(estimator, y_val, base)}}
    best, best_gain, best_feats = "none", 0.0, x_val
    for name in TTA_VIEWS:
        if name == "none":
            continue
        feats = replace(spec, tta=name).compute(loaded, val_images, batch_size)
        proba = estimator.predict_proba(feats)
        auc = _auc(estimator, y_val, proba)
        diffs = [_diff(estimator, y_val[r], proba[r], base[r]) for r in resamples]
        d = np.asarray([v for v in diffs if v is not None])
        p = float(np.mean(d <= 0)) if d.size else 1.0
        low, high = (float(q) for q in np.quantile(d, [0.025, 0.975])) if d.size else (None, None)
        tried[name] = {"val_auc": auc, "gain_low": low, "gain_high": high, "p_not_better": p}
        gain = (auc or 0.0) - (tried["none"]["val_auc"] or 0.0)
        if p < 0.05 and gain > best_gain:
            best, best_gain, best_feats = name, gain, feats
    spec.tta = best
    doc = {"mode": "auto", "chosen": best, "tried": tried, "features": best_feats}
    doc["selection"] = (
        "validation AUC of the chosen classifier before calibration; a view set is kept only when the "
        f"paired bootstrap ({TTA_BOOT} resamples of the validation images) puts its gain above 0, p < 0.05"
    )
    return doc


def _auc(estimator: Any, y: np.ndarray, proba: np.ndarray) -> float | None:
    """One-vs-rest (macro for several classes) AUC, or None where it is undefined on these rows."""
    from sklearn.metrics import roc_auc_score

    classes = np.asarray(estimator.classes_)
    try:
        if len(classes) == 2:
            return float(roc_auc_score((y == classes[1]).astype(int), proba[:, 1]))
        return float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    except ValueError:
        return None


def _diff(estimator: Any, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    """AUC(a) - AUC(b) on the same rows; None where either is undefined (a resample of one class)."""
    auc_a, auc_b = _auc(estimator, y, a), _auc(estimator, y, b)
    return None if auc_a is None or auc_b is None else auc_a - auc_b


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

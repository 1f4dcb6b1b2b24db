"""Candidate classifiers on latent features, chosen by stratified k-fold cross-validation on training rows.

Why several small candidates: which classifier works best on a latent space depends on its geometry (a
linear boundary, local neighbourhoods, or axis-aligned interactions), and with few labels a wrong guess
costs more than the few seconds a small grid takes. Every candidate is a ``StandardScaler -> classifier``
pipeline, so standardisation is learnt inside each fold (no leakage) and saved with the model; every one
can be saved safely (see :mod:`vaedx.diagnose.portable`). Selection uses ROC AUC (binary) or macro
one-vs-rest AUC (multi-class); on ties the earlier, simpler candidate wins.

Fitting runs with BLAS/OpenMP limited to one thread: on feature matrices this small a second thread only
adds synchronisation, and on a busy machine the spinning thread pools made each fit 30-100x slower.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from vaedx.errors import ConfigError, InputError


def _candidates(seed: int) -> dict[str, tuple[Any, dict[str, list[Any]]]]:
    """name -> (estimator, small grid). Grids stay tiny: a few labelled images cannot tune more."""
    return {
        "logreg": (LogisticRegression(max_iter=2000), {"C": [0.01, 0.1, 1.0, 10.0]}),
        "knn": (
            KNeighborsClassifier(algorithm="brute"),
            {"n_neighbors": [5, 15], "weights": ["uniform", "distance"]},
        ),
        "mlp": (
            MLPClassifier(solver="lbfgs", max_iter=500, random_state=seed),
            {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]},
        ),
        "hgb": (
            HistGradientBoostingClassifier(max_iter=100, random_state=seed),
            {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [7, 15]},
        ),
    }


CLASSIFIERS = ("logreg", "knn", "mlp", "hgb")


def make_pipeline(name: str, seed: int = 0, **params: Any) -> Pipeline:
    """``StandardScaler -> name`` with ``params`` set on the classifier (its grid defaults otherwise)."""
    table = _candidates(seed)
    if name not in table:
        raise ConfigError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return Pipeline([("scale", StandardScaler()), ("clf", clone(table[name][0]).set_params(**params))])


@dataclass
class Selection:
    """The winning pipeline (refitted on all training rows) and the cross-validation table behind it."""

    name: str
    params: dict[str, Any]
    estimator: Pipeline
    cv_auc: float | None
    n_splits: int
    table: list[dict[str, Any]] = field(default_factory=list)


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise InputError(f"features must be (N, F) with one label per row, got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values")
    if (y < 0).any():
        raise InputError("training labels must be >= 0 (drop unlabelled rows first)")
    if np.unique(y).size < 2:
        raise InputError(f"training labels hold a single class ({int(y[0])}); need at least two")
    return x, y


def _grid(name: str, grid: dict[str, list[Any]], min_train: int) -> dict[str, list[Any]]:
    """Drop k-NN sizes larger than the smallest training fold."""
    if name != "knn":
        return grid
    ks = [k for k in grid["n_neighbors"] if k <= min_train] or [max(1, min_train)]
    return {**grid, "n_neighbors": ks}


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Tuples (hidden_layer_sizes) as lists and numpy scalars as Python numbers, for JSON."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        out[k] = list(v) if isinstance(v, tuple) else v.item() if isinstance(v, np.generic) else v
    return out


def select_classifier(
    x: np.ndarray,
    y: np.ndarray,
    candidates: Sequence[str] = CLASSIFIERS,
    n_splits: int = 5,
    seed: int = 0,
) -> Selection:
    """Grid-search each candidate with stratified k-fold CV and refit the best on all rows.

    ``n_splits`` shrinks to the smallest class count; with fewer than 2 images of some class CV is
    impossible and the first candidate is fitted with default settings (``cv_auc`` None, noted in the table).
    """
    x, y = _check_xy(x, y)
    unknown = [c for c in candidates if c not in CLASSIFIERS]
    if unknown or not candidates:
        raise ConfigError(
            f"unknown classifier(s) {unknown or '(none)'}; choose from {', '.join(CLASSIFIERS)}"
        )
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    k = int(min(n_splits, counts.min()))
    scoring = "roc_auc" if counts.size == 2 else "roc_auc_ovr"
    table: list[dict[str, Any]] = []
    if k < 2:
        name = candidates[0]
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = make_pipeline(name, seed).fit(x, y)
        note = f"no cross-validation: a class has {counts.min()} labelled image(s)"
        table.append({"classifier": name, "params": {}, "cv_auc": None, "cv_auc_sd": None, "note": note})
        return Selection(name, {}, est, None, 0, table)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    min_train = int(len(y) - -(-len(y) // k))
    best: tuple[float, str, dict[str, Any], Pipeline] | None = None
    for name in candidates:
        est, grid = _candidates(seed)[name]
        pipe = Pipeline([("scale", StandardScaler()), ("clf", clone(est))])
        grid = {f"clf__{p}": v for p, v in _grid(name, grid, min_train).items()}
        search = GridSearchCV(pipe, grid, scoring=scoring, cv=cv, n_jobs=1, refit=True, error_score="raise")
        t0 = time.perf_counter()
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x, y)
        i = int(search.best_index_)
        params = jsonable({p.removeprefix("clf__"): v for p, v in search.best_params_.items()})
        auc = float(search.cv_results_["mean_test_score"][i])
        table.append(
            {
                "classifier": name,
                "params": params,
                "cv_auc": auc,
                "cv_auc_sd": float(search.cv_results_["std_test_score"][i]),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        if best is None or auc > best[0] + 1e-12:
            best = (auc, name, params, search.best_estimator_)
    assert best is not None
    return Selection(best[1], best[2], best[3], best[0], k, table)

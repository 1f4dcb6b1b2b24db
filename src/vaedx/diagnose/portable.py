"""Fitted classifiers and calibrators as named arrays, with predict_proba re-implemented in numpy.

Why: a pickled (or joblib) scikit-learn model runs code when it is loaded and breaks across library
versions, so a diagnosis model is saved as JSON settings + safetensors arrays only. Each supported
estimator is exported to arrays here and evaluated by plain numpy; the tests check every kind against
scikit-learn's own predict_proba to 1e-6, so this file is where a scikit-learn upgrade would show up.

Supported: ``Pipeline(StandardScaler, clf)`` with clf one of LogisticRegression, MLPClassifier,
KNeighborsClassifier (euclidean) and HistGradientBoostingClassifier (numerical splits: its trees are node
tables; export reads the fitted ``_predictors``, a private but long-stable attribute), plus the sigmoid
(Platt) or isotonic calibrators that ``CalibratedClassifierCV(FrozenEstimator(pipe))`` fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from vaedx.errors import ConfigError, InputError

Arrays = dict[str, np.ndarray]


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


_ACTIVATIONS = {"relu": _relu, "tanh": np.tanh, "logistic": expit, "identity": lambda a: a}


# ------------------------------------------------------------------------------------- per-kind responses
def _logreg(p: dict[str, Any], a: Arrays, x: np.ndarray) -> np.ndarray:
    dec = x @ a["coef"].T + a["intercept"]
    return dec[:, 0] if dec.shape[1] == 1 else dec


def _mlp(p: dict[str, Any], a: Arrays, x: np.ndarray) -> np.ndarray:
    act = _ACTIVATIONS[p["activation"]]
    for i in range(p["n_layers"]):
        x = x @ a[f"coef{i}"] + a[f"intercept{i}"]
        if i < p["n_layers"] - 1:
            x = act(x)
    return expit(x[:, 0]) if p["out_activation"] == "logistic" else softmax(x, axis=1)


def _knn(p: dict[str, Any], a: Arrays, x: np.ndarray) -> np.ndarray:
    ref, y, k = a["fit_x"], a["fit_y"].astype(np.int64), int(p["n_neighbors"])
    d2 = (x**2).sum(1)[:, None] - 2.0 * x @ ref.T + (ref**2).sum(1)[None, :]
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    if p["weights"] == "distance":
        dist = np.sqrt(np.maximum(np.take_along_axis(d2, nearest, 1), 0.0))
        with np.errstate(divide="ignore"):
            w = 1.0 / dist
        exact = np.isinf(w)
        w[exact.any(1)] = exact[exact.any(1)]  # an exact match outvotes everything, as in scikit-learn
    else:
        w = np.ones(nearest.shape)
    votes = np.zeros((len(x), int(p["n_classes"])))
    np.add.at(votes, (np.arange(len(x))[:, None], y[nearest]), w)
    proba = votes / votes.sum(1, keepdims=True)
    return proba[:, 1] if proba.shape[1] == 2 else proba


def _hgb(p: dict[str, Any], a: Arrays, x: np.ndarray) -> np.ndarray:
    k = int(p["n_trees_per_iteration"])
    node = np.tile(a["roots"], (len(x), 1))  # (n, n_trees) current node of every tree
    rows = np.arange(len(x))[:, None]
    for _ in range(int(p["max_depth"]) + 1):
        xv = x[rows, a["feature"][node]]
        left = np.where(np.isnan(xv), a["missing_left"][node] == 1, xv <= a["threshold"][node])
        nxt = np.where(left, a["left"][node], a["right"][node])
        node = np.where(a["is_leaf"][node] == 1, node, nxt)
    raw = a["value"][node].reshape(len(x), -1, k).sum(1) + a["baseline"]
    return raw[:, 0] if k == 1 else raw


_RESPONSE = {"logreg": _logreg, "mlp": _mlp, "knn": _knn, "hgb": _hgb}
_CHUNK = 1024  # rows per call: k-NN holds (rows x training rows) distances, HGB (rows x trees) node ids
# kinds whose response is a decision function (logit scale); the others respond with probabilities
_DECISION = {"logreg", "hgb"}


@dataclass
class PortableClassifier:
    """StandardScaler + one classifier as arrays. ``classes`` are the label codes of the output columns."""

    kind: str
    params: dict[str, Any]
    arrays: Arrays
    classes: np.ndarray

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n_in = self.arrays["scaler_mean"].shape[0]
        if x.ndim != 2 or x.shape[1] != n_in:
            raise InputError(f"classifier expects (N, {n_in}) features, got shape {x.shape}")
        return (x - self.arrays["scaler_mean"]) / self.arrays["scaler_scale"]

    def response(self, x: np.ndarray) -> np.ndarray:
        """What a calibrator sees: decision_function when the kind has one, else predict_proba
        (binary: (N,) for the positive class; multi-class: (N, K))."""
        x = self._scaled(x)
        fn = _RESPONSE[self.kind]
        parts = [fn(self.params, self.arrays, x[s : s + _CHUNK]) for s in range(0, len(x), _CHUNK)]
        return np.concatenate(parts) if parts else fn(self.params, self.arrays, x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, K) uncalibrated class probabilities, columns in the order of ``classes``."""
        r = self.response(x)
        if self.kind in _DECISION:
            r = expit(r) if r.ndim == 1 else softmax(r, axis=1)
        return np.stack([1.0 - r, r], axis=1) if r.ndim == 1 else r


@dataclass
class PortableCalibrator:
    """One-vs-rest sigmoid (p = expit(-(a*s + b))) or isotonic (piecewise linear) maps of the response."""

    method: str
    arrays: Arrays = field(default_factory=dict)

    def predict_proba(self, response: np.ndarray, n_classes: int) -> np.ndarray:
        r = response.reshape(-1, 1) if response.ndim == 1 else response
        cols = []
        for j in range(r.shape[1]):
            if self.method == "sigmoid":
                cols.append(expit(-(self.arrays["a"][j] * r[:, j] + self.arrays["b"][j])))
            else:
                cols.append(np.interp(r[:, j], self.arrays[f"iso_x{j}"], self.arrays[f"iso_y{j}"]))
        cal = np.stack(cols, axis=1)
        if n_classes == 2:
            proba = np.concatenate([1.0 - cal, cal], axis=1)
        else:
            den = cal.sum(1, keepdims=True)
            proba = np.divide(cal, den, out=np.full_like(cal, 1.0 / n_classes), where=den != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba


# ------------------------------------------------------------------------------------------------ export
def _f64(v: Any) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.float64)


def _export_hgb(clf: Any) -> tuple[dict[str, Any], Arrays]:
    trees = [t for it in clf._predictors for t in it]
    if any(t.nodes["is_categorical"].any() for t in trees):
        raise ConfigError("HistGradientBoosting with categorical splits cannot be saved as arrays")
    sizes = np.array([len(t.nodes) for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.concatenate([t.nodes for t in trees])
    shift = np.repeat(offsets, sizes)
    arrays = {
        "roots": offsets.astype(np.int64),
        "feature": nodes["feature_idx"].astype(np.int64),
        "threshold": _f64(nodes["num_threshold"]),
        "left": (nodes["left"].astype(np.int64) + shift),
        "right": (nodes["right"].astype(np.int64) + shift),
        "is_leaf": nodes["is_leaf"].astype(np.uint8),
        "missing_left": nodes["missing_go_to_left"].astype(np.uint8),
        "value": _f64(nodes["value"]),
        "baseline": _f64(np.asarray(clf._baseline_prediction).reshape(-1)),
    }
    params = {
        "n_trees_per_iteration": int(clf.n_trees_per_iteration_),
        "max_depth": int(nodes["depth"].max()),
    }
    return params, arrays


def _export_clf(clf: Any) -> tuple[str, dict[str, Any], Arrays]:
    name = type(clf).__name__
    if name == "LogisticRegression":
        return "logreg", {}, {"coef": _f64(clf.coef_), "intercept": _f64(clf.intercept_)}
    if name == "MLPClassifier":
        arrays = {f"coef{i}": _f64(w) for i, w in enumerate(clf.coefs_)}
        arrays |= {f"intercept{i}": _f64(b) for i, b in enumerate(clf.intercepts_)}
        params = {
            "activation": clf.activation,
            "out_activation": clf.out_activation_,
            "n_layers": clf.n_layers_ - 1,
        }
        return "mlp", params, arrays
    if name == "KNeighborsClassifier":
        if clf.effective_metric_ != "euclidean" or callable(clf.weights):
            raise ConfigError(
                "only euclidean k-NN with 'uniform' or 'distance' weights can be saved as arrays"
            )
        params = {"n_neighbors": int(clf.n_neighbors), "weights": clf.weights, "n_classes": len(clf.classes_)}
        return "knn", params, {"fit_x": _f64(clf._fit_X), "fit_y": np.asarray(clf._y, dtype=np.int64)}
    if name == "HistGradientBoostingClassifier":
        return "hgb", *_export_hgb(clf)
    raise ConfigError(f"{name} cannot be saved as arrays; use logreg, mlp, knn or hgb")


def export_pipeline(pipe: Any) -> PortableClassifier:
    """Arrays of a fitted ``Pipeline([("scale", StandardScaler()), ("clf", classifier)])``."""
    scaler, clf = pipe.steps[0][1], pipe.steps[-1][1]
    if len(pipe.steps) != 2 or type(scaler).__name__ != "StandardScaler":
        raise ConfigError("only a StandardScaler followed by one classifier can be saved as arrays")
    kind, params, arrays = _export_clf(clf)
    n = scaler.n_features_in_
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(n)
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(n)
    arrays |= {"scaler_mean": _f64(mean), "scaler_scale": _f64(scale)}
    return PortableClassifier(kind, params, arrays, np.asarray(clf.classes_, dtype=np.int64))


def export_calibrated(cal: Any) -> tuple[PortableClassifier, PortableCalibrator]:
    """Arrays of a fitted ``CalibratedClassifierCV(FrozenEstimator(pipe), method=sigmoid|isotonic)``."""
    if cal.method not in ("sigmoid", "isotonic") or len(cal.calibrated_classifiers_) != 1:
        raise ConfigError("only a single sigmoid or isotonic calibration of a frozen model can be saved")
    inner = cal.calibrated_classifiers_[0]
    pipe = getattr(inner.estimator, "estimator", inner.estimator)  # unwrap FrozenEstimator
    clf = export_pipeline(pipe)
    arrays: Arrays = {}
    if cal.method == "sigmoid":
        arrays["a"] = _f64([c.a_ for c in inner.calibrators])
        arrays["b"] = _f64([c.b_ for c in inner.calibrators])
    else:
        for j, c in enumerate(inner.calibrators):
            arrays[f"iso_x{j}"], arrays[f"iso_y{j}"] = _f64(c.X_thresholds_), _f64(c.y_thresholds_)
    if not np.array_equal(cal.classes_, clf.classes):
        raise ConfigError("calibration and classifier disagree on the classes")
    return clf, PortableCalibrator(cal.method, arrays)


# ------------------------------------------------------------------------------------------- flat storage
def to_arrays(clf: PortableClassifier, cal: PortableCalibrator | None) -> tuple[dict[str, Any], Arrays]:
    """(JSON-able description, flat arrays with 'clf.' / 'cal.' prefixes) for safetensors."""
    flat = {f"clf.{k}": v for k, v in clf.arrays.items()} | {"clf.classes": clf.classes}
    if cal is not None:
        flat |= {f"cal.{k}": v for k, v in cal.arrays.items()}
    desc = {"kind": clf.kind, "params": clf.params, "calibration": cal.method if cal else "none"}
    return desc, flat


def from_arrays(desc: dict[str, Any], flat: Arrays) -> tuple[PortableClassifier, PortableCalibrator | None]:
    """Inverse of :func:`to_arrays`; a missing array is an InputError naming it."""
    if desc.get("kind") not in _RESPONSE:
        raise InputError(f"unknown classifier kind {desc.get('kind')!r}")
    pick = {k[4:]: v for k, v in flat.items() if k.startswith("clf.")}
    if "classes" not in pick or "scaler_mean" not in pick:
        raise InputError("classifier arrays are incomplete (classes or scaler missing)")
    classes = pick.pop("classes").astype(np.int64)
    clf = PortableClassifier(desc["kind"], dict(desc.get("params", {})), pick, classes)
    method = desc.get("calibration", "none")
    if method == "none":
        return clf, None
    cal_arrays = {k[4:]: v for k, v in flat.items() if k.startswith("cal.")}
    if not cal_arrays:
        raise InputError(f"calibration {method!r} recorded but its arrays are missing")
    return clf, PortableCalibrator(method, cal_arrays)

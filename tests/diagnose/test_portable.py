"""The numpy re-implementations must reproduce scikit-learn's predict_proba to 1e-6."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from vaedx.diagnose.calibration import fit_probability_calibration
from vaedx.diagnose.classifiers import make_pipeline
from vaedx.diagnose.portable import export_calibrated, export_pipeline, from_arrays, to_arrays
from vaedx.errors import ConfigError

SETTINGS = {
    "logreg": [{"C": 1.0}],
    "mlp": [{"hidden_layer_sizes": (16, 8), "activation": "tanh"}, {"hidden_layer_sizes": (8,)}],
    "knn": [{"n_neighbors": 5, "weights": "uniform"}, {"n_neighbors": 4, "weights": "distance"}],
    "hgb": [{"max_iter": 15, "max_leaf_nodes": 7, "min_samples_leaf": 5}],
}
CASES = [(kind, p) for kind, ps in SETTINGS.items() for p in ps]


def toy(n_classes: int, n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes with label codes 0, 2, 5 (codes need not be contiguous)."""
    rng = np.random.default_rng(seed)
    codes = np.array([0, 2, 5][:n_classes])
    y = codes[np.arange(n) % n_classes]
    x = rng.normal(size=(n, 5)) * [1, 2, 0.5, 3, 1] + 3.0
    x[:, 0] += 1.5 * np.searchsorted(codes, y)
    return x, y


def fit(kind: str, params: dict, x: np.ndarray, y: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_pipeline(kind, seed=0, **params).fit(x, y)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(("kind", "params"), CASES)
def test_numpy_predict_proba_matches_sklearn(kind, params, n_classes):
    x, y = toy(n_classes)
    pipe = fit(kind, params, x, y)
    port = export_pipeline(pipe)
    xq = toy(n_classes, n=40, seed=1)[0]
    xq[0] = x[3]  # an exact training point (k-NN distance weights: that neighbour decides alone)
    np.testing.assert_allclose(port.predict_proba(xq), pipe.predict_proba(xq), atol=1e-6, rtol=0)
    assert np.array_equal(port.classes, pipe.classes_)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("kind", ["logreg", "mlp", "knn", "hgb"])
def test_calibrated_numpy_matches_sklearn(kind, method, n_classes):
    x, y = toy(n_classes)
    xv, yv = toy(n_classes, n=60, seed=2)
    pipe = fit(kind, SETTINGS[kind][0], x, y)
    cal = fit_probability_calibration(pipe, xv, yv, method)
    clf, pcal = export_calibrated(cal)
    xq = toy(n_classes, n=50, seed=3)[0] * 1.5  # also beyond the calibration range (isotonic clips)
    mine = pcal.predict_proba(clf.response(xq), n_classes)
    np.testing.assert_allclose(mine, cal.predict_proba(xq), atol=1e-6, rtol=0)
    # the round trip through flat arrays (what safetensors stores) changes nothing
    clf2, cal2 = from_arrays(*to_arrays(clf, pcal))
    np.testing.assert_array_equal(cal2.predict_proba(clf2.response(xq), n_classes), mine)


def test_our_calibration_equals_a_plain_frozen_calibration():
    """One split covering all rows gives exactly what the documented FrozenEstimator recipe gives."""
    x, y = toy(2)
    xv, yv = toy(2, n=60, seed=2)
    pipe = fit("logreg", {}, x, y)
    ours = fit_probability_calibration(pipe, xv, yv, "sigmoid")
    ref = CalibratedClassifierCV(FrozenEstimator(pipe), method="sigmoid").fit(xv, yv)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-9)


def test_unsupported_estimators_are_refused():
    from sklearn.svm import SVC

    x, y = toy(2)
    with pytest.raises(ConfigError, match="SVC cannot be saved as arrays"):
        export_pipeline(Pipeline([("scale", StandardScaler()), ("clf", SVC().fit(x, y))]))
    with pytest.raises(ConfigError, match="only euclidean"):
        export_pipeline(fit("knn", {"metric": "manhattan"}, x, y))


@pytest.mark.parametrize("kind", ["knn", "hgb"])
def test_chunked_evaluation_of_many_rows(kind):
    x, y = toy(3)
    pipe = fit(kind, SETTINGS[kind][0], x, y)
    xq = np.random.default_rng(5).normal(3, 2, size=(2500, 5))  # more than one chunk of 1024 rows
    np.testing.assert_allclose(export_pipeline(pipe).predict_proba(xq), pipe.predict_proba(xq), atol=1e-6)

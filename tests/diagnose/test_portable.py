"""skops persistence: every classifier the fit can choose, with every calibration, loads back to the same
predictions; a file naming a type outside the trusted list is refused before anything is built."""

from __future__ import annotations

import os
import warnings
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from vaedx.diagnose.calibration import fit_probability_calibration
from vaedx.diagnose.classifiers import CLASSIFIERS, make_pipeline
from vaedx.diagnose.portable import TRUSTED, describe, dump_estimator, load_estimator
from vaedx.errors import ConfigError, InputError

SETTINGS = {
    "logreg": {"C": 1.0},
    "mlp": {"hidden_layer_sizes": (16, 8), "activation": "tanh"},
    "knn": {"n_neighbors": 4, "weights": "distance"},
    "hgb": {"max_iter": 15, "max_leaf_nodes": 7, "min_samples_leaf": 5},
}


def toy(n_classes: int, n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes with label codes 0, 2, 5 (codes need not be contiguous)."""
    rng = np.random.default_rng(seed)
    codes = np.array([0, 2, 5][:n_classes])
    y = codes[np.arange(n) % n_classes]
    x = rng.normal(size=(n, 5)) * [1, 2, 0.5, 3, 1] + 3.0
    x[:, 0] += 1.5 * np.searchsorted(codes, y)
    return x, y


def fitted(kind: str, method: str, n_classes: int):
    x, y = toy(n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(kind, seed=0, **SETTINGS[kind]).fit(x, y)
    if method == "none":
        return pipe
    xv, yv = toy(n_classes, n=60, seed=2)
    return fit_probability_calibration(pipe, xv, yv, method)


def test_every_kind_the_fit_can_choose_is_covered():
    assert set(SETTINGS) == set(CLASSIFIERS)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("method", ["none", "sigmoid", "isotonic"])
@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_save_load_gives_the_in_memory_predictions(kind, method, n_classes, tmp_path):
    est = fitted(kind, method, n_classes)
    dump_estimator(est, tmp_path / "m.skops")
    again = load_estimator(tmp_path / "m.skops")
    xq = toy(n_classes, n=50, seed=3)[0] * 1.5  # also beyond the training range
    xq[0] = toy(n_classes)[0][3]  # an exact training point (k-NN distance weights: that neighbour decides)
    np.testing.assert_array_equal(again.predict_proba(xq), est.predict_proba(xq))
    np.testing.assert_array_equal(again.classes_, est.classes_)
    recorded = "temperature" if method == "sigmoid" and n_classes > 2 else method  # see calibration.py
    assert describe(again) == {"kind": kind, "calibration": recorded}


def test_trusted_list_is_exactly_what_the_fits_need():
    """A type no fit uses must not sit in the list (it would widen what a file may build)."""
    needed = set()
    for kind in CLASSIFIERS:
        for method in ("none", "sigmoid", "isotonic"):
            for n_classes in (2, 3):  # sigmoid is Platt scaling for 2, temperature scaling for 3
                needed |= set(sio.get_untrusted_types(data=sio.dumps(fitted(kind, method, n_classes))))
    assert needed == set(TRUSTED)


def test_a_file_naming_an_untrusted_type_is_refused(tmp_path):
    """A real attack shape: a pipeline step whose function is os.system."""
    x, y = toy(2)
    evil = Pipeline([("scale", StandardScaler()), ("run", FunctionTransformer(os.system))])
    path = tmp_path / "m.skops"
    path.write_bytes(sio.dumps(evil))
    with pytest.raises(InputError, match=r"m\.skops: refusing to load: the file names untrusted.*system"):
        load_estimator(path)


def test_a_classifier_swapped_inside_the_zip_is_refused(tmp_path):
    """Editing the saved schema to name another class is caught by the same check."""
    est = fitted("logreg", "none", 2)
    good = tmp_path / "good.skops"
    dump_estimator(est, good)
    bad = tmp_path / "bad.skops"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "schema.json":
                data = data.replace(b'"LogisticRegression"', b'"Popen"').replace(
                    b'"sklearn.linear_model._logistic"', b'"subprocess"'
                )
            zout.writestr(item, data)
    with pytest.raises(InputError, match="untrusted type.*subprocess.Popen"):
        load_estimator(bad)


def test_damaged_missing_and_unsupported(tmp_path):
    with pytest.raises(InputError, match="file missing"):
        load_estimator(tmp_path / "none.skops")
    path = tmp_path / "m.skops"
    dump_estimator(fitted("knn", "none", 2), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="damaged"):
        load_estimator(path)
    from sklearn.svm import SVC

    x, y = toy(2)
    with pytest.raises(ConfigError, match="SVC cannot be saved"):
        dump_estimator(Pipeline([("scale", StandardScaler()), ("clf", SVC().fit(x, y))]), path)

"""Saving and loading the fitted scikit-learn classifier of a diagnosis model with ``skops.io``.

Why skops and not pickle/joblib: unpickling runs whatever code the file names, so a diagnosis folder from
someone else could take over the machine. A skops file is a zip of JSON and arrays; before anything is
built, :func:`skops.io.get_untrusted_types` lists every type it names that skops does not trust by default
(scikit-learn estimators and numpy/scipy containers are), and we accept only the few listed in
:data:`TRUSTED` (private helper classes of the estimators the fit can choose). Anything else is refused in
one line, so a tampered file never gets to construct an object.

What is saved: the ``StandardScaler -> classifier`` pipeline chosen by cross-validation, or the
``CalibratedClassifierCV(FrozenEstimator(pipeline))`` fitted on validation when calibration is on.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from vaedx.atomic import atomic_write
from vaedx.errors import ConfigError, InputError

#: types a diagnosis file may name beyond skops' defaults: the calibration wrapper's per-class calibrators
#: and the trees of HistGradientBoosting. The tests fit every classifier kind with every calibration and
#: check that this list is exactly what they need.
TRUSTED = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

#: classifier class name -> the short kind recorded in diagnosis.json
KINDS = {
    "LogisticRegression": "logreg",
    "KNeighborsClassifier": "knn",
    "MLPClassifier": "mlp",
    "HistGradientBoostingClassifier": "hgb",
}


def pipeline_of(estimator: Any) -> Any:
    """The ``StandardScaler -> classifier`` pipeline inside a (possibly calibrated) estimator."""
    if type(estimator).__name__ == "CalibratedClassifierCV":
        inner = estimator.calibrated_classifiers_[0].estimator
        return getattr(inner, "estimator", inner)  # unwrap FrozenEstimator
    return estimator


def describe(estimator: Any) -> dict[str, Any]:
    """What diagnosis.json records about the estimator: classifier kind and calibration method.

    Refuses anything the fit does not produce, so the saved file only ever names trusted types.
    """
    pipe = pipeline_of(estimator)
    steps = getattr(pipe, "steps", None)
    if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "StandardScaler":
        raise ConfigError("only a StandardScaler followed by one classifier can be saved")
    name = type(steps[-1][1]).__name__
    if name not in KINDS:
        raise ConfigError(f"{name} cannot be saved; use {', '.join(KINDS.values())}")
    calibration = getattr(estimator, "method", "none") if pipe is not estimator else "none"
    return {"kind": KINDS[name], "calibration": calibration}


def dump_estimator(estimator: Any, path: Path) -> None:
    """Write ``estimator`` to ``path`` (atomically) after checking that it loads back under TRUSTED."""
    import skops.io as sio

    describe(estimator)
    data = sio.dumps(estimator)
    extra = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED))
    if extra:
        raise ConfigError(f"cannot save the classifier: it holds untrusted type(s) {', '.join(extra)}", path)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def load_estimator(path: Path) -> Any:
    """The estimator saved by :func:`dump_estimator`; a file naming any type outside TRUSTED is refused."""
    import skops.io as sio

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file missing from diagnosis folder", path) from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path) from None
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as e:
        raise InputError(f"damaged or truncated classifier file ({type(e).__name__}: {e})", path) from None
    extra = sorted(set(untrusted) - set(TRUSTED))
    if extra:
        raise InputError(f"refusing to load: the file names untrusted type(s) {', '.join(extra)}", path)
    try:
        estimator = sio.load(io.BytesIO(data), trusted=list(untrusted))
    except Exception as e:  # skops raises many kinds on a damaged file; none may escape as a traceback
        raise InputError(f"damaged classifier file ({type(e).__name__}: {e})", path) from None
    try:
        describe(estimator)
    except ConfigError as e:
        raise InputError(f"not a diagnosis classifier ({e.problem})", path) from None
    return estimator

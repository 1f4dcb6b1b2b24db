from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from vaedx.diagnose.calibration import ThresholdRule, fit_probability_calibration
from vaedx.diagnose.classifiers import make_pipeline
from vaedx.diagnose.portable import describe
from vaedx.errors import ConfigError, InputError
from vaedx.metrics.measures import expected_calibration_error, sensitivity_specificity


def noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True P(y=1 | x) = sigmoid(x): heavily overlapping classes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, size=(n, 1))
    return x, (rng.random(n) < expit(x[:, 0])).astype(np.int64)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_on_validation_repairs_an_overconfident_classifier(method):
    # trained on noise-free labels (y = x > 0) with almost no regularisation: probabilities near 0 or 1
    xt = np.random.default_rng(0).normal(0, 2, size=(200, 1))
    clf = make_pipeline("logreg", C=1e4).fit(xt, (xt[:, 0] > 0).astype(int))
    xv, yv = noisy(400, 1)
    xs, ys = noisy(4000, 2)  # held-out data the calibration never saw
    before = expected_calibration_error(ys, clf.predict_proba(xs)[:, 1])
    cal = fit_probability_calibration(clf, xv, yv, method)
    after = expected_calibration_error(ys, cal.predict_proba(xs)[:, 1])
    assert before > 0.15 and after < 0.05 and after < before / 3
    assert describe(cal) == {"kind": "logreg", "calibration": method}


def test_calibrate_none_and_bad_method_and_class_mismatch():
    x, y = noisy(100, 0)
    clf = make_pipeline("logreg").fit(x, y)
    assert fit_probability_calibration(clf, x, y, "none") is None
    with pytest.raises(ConfigError, match="calibration must be one of"):
        fit_probability_calibration(clf, x, y, "platt")
    with pytest.raises(InputError, match=r"validation labels have classes \[1\]"):
        fit_probability_calibration(clf, x[y == 1], y[y == 1], "sigmoid")


def test_youden_threshold_separates_perfectly_separable_scores():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.9])
    t = ThresholdRule.parse("youden").choose(y, p)
    assert 0.35 <= t < 0.6
    assert sensitivity_specificity(y, (p > t).astype(int)) == (1.0, 1.0)


def test_sensitivity_and_specificity_targets_are_met_on_validation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    t_sens = ThresholdRule.parse("sens:0.95").choose(y, p)
    t_spec = ThresholdRule.parse("spec:0.9").choose(y, p)
    sens, _ = sensitivity_specificity(y, (p > t_sens).astype(int))
    _, spec = sensitivity_specificity(y, (p > t_spec).astype(int))
    assert 0.95 <= sens < 0.96 and 0.9 <= spec < 0.91
    assert t_sens < ThresholdRule.parse("youden").choose(y, p) < t_spec  # high sensitivity = low threshold


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("youden", ("youden", None)),
        ("SENS:0.95", ("sens", 0.95)),
        ("spec:0.8", ("spec", 0.8)),
        ("0.3", ("fixed", 0.3)),
        (0.7, ("fixed", 0.7)),
        ("argmax", ("argmax", None)),
    ],
)
def test_threshold_rules_parse(text, rule):
    r = ThresholdRule.parse(text)
    assert (r.kind, r.value) == rule
    assert ThresholdRule.parse(str(r)) == r


@pytest.mark.parametrize("text", ["sens", "sens:1.5", "spec:0", "1.2", "best", "sens:abc"])
def test_bad_threshold_rules(text):
    with pytest.raises(ConfigError):
        ThresholdRule.parse(text)


def test_threshold_needs_both_classes():
    with pytest.raises(InputError, match="only one class"):
        ThresholdRule.parse("youden").choose(np.zeros(5, int), np.linspace(0, 1, 5))
    with pytest.raises(InputError, match="no negative cases"):
        ThresholdRule.parse("spec:0.9").choose(np.ones(5, int), np.linspace(0, 1, 5))


def test_three_tumour_types_get_temperature_scaling_that_keeps_every_decision(
    cheng_fitted, cheng_pca, cheng_store
):
    """Real Cheng images (split by image): "sigmoid" on three classes is one temperature on the softmax, so
    calibration leaves the argmax, and with it accuracy and the confusion matrix, as the classifier had it;
    one-vs-rest Platt maps renormalised would move it. Multi-class decisions have no threshold."""
    from vaedx.diagnose.encoder import as_loaded
    from vaedx.diagnose.fit import split_probabilities
    from vaedx.diagnose.portable import pipeline_of

    diag, _, proba, rows = split_probabilities(cheng_fitted, cheng_pca, cheng_store, "val")
    assert describe(diag.estimator) == {"kind": "logreg", "calibration": "temperature"}
    x = diag.features.compute(as_loaded(cheng_pca), cheng_store.images[rows], 64)
    raw = pipeline_of(diag.estimator).predict_proba(x)
    np.testing.assert_array_equal(proba.argmax(axis=1), raw.argmax(axis=1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert not np.allclose(proba, raw)  # the temperature did change the probabilities
    assert diag.threshold is None and diag.threshold_rule is None  # "youden" is binary-only: argmax
    ovr = fit_probability_calibration(pipeline_of(diag.estimator), x, cheng_store.labels[rows], "isotonic")
    assert describe(ovr)["calibration"] == "isotonic"  # isotonic stays one-vs-rest, as sklearn defines it

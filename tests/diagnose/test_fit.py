from __future__ import annotations

import json

import numpy as np
import pytest

from diag_helpers import make_store
from vaedx.data.preprocess import PreprocessConfig
from vaedx.diagnose.encoder import load_encoder
from vaedx.diagnose.features import FeatureSpec
from vaedx.diagnose.fit import evaluate_diagnosis, fit_diagnosis
from vaedx.diagnose.model import DiagnosisModel
from vaedx.diagnose.predict import diagnose_images
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.training.batches import RowView


def test_latent_classifier_diagnoses_the_toy_on_held_out_test(fitted, vae, store):
    diag = DiagnosisModel.load(fitted)
    report = evaluate_diagnosis(diag, vae, store, split="test")
    assert report["auc"] > 0.9 and report["n"] == 24
    # the threshold was fitted on 24 validation images, so judge the operating point as a whole
    assert (report["sensitivity"] + report["specificity"]) / 2 >= 0.7
    assert diag.binary and diag.class_names == ["normal", "blob"]
    assert 0 < diag.threshold < 1 and diag.threshold_rule == "youden"
    assert diag.calibration == "sigmoid" and diag.kind in ("logreg", "knn")
    doc = json.loads((fitted / "diagnosis.json").read_text())
    assert doc["classifier"]["kind"] in ("logreg", "knn") and doc["validation"]["optimistic"]
    assert {r["classifier"] for r in doc["selection"]} == {"logreg", "knn"}
    assert doc["encoder"]["sha256"] and doc["features"]["names"][:1] == ["mu0"]
    assert doc["data"]["n_labelled"] == 40 and len(doc["train_refs"]) == 40


def test_save_load_round_trip_gives_identical_probabilities(fitted, vae, store, tmp_path):
    diag = DiagnosisModel.load(fitted)
    rows = store.select(split="test")
    feats = diag.features.compute(vae, RowView(store.images, rows))
    diag.save(tmp_path / "copy")
    again = DiagnosisModel.load(tmp_path / "copy")
    np.testing.assert_array_equal(again.predict_proba(feats), diag.predict_proba(feats))
    np.testing.assert_array_equal(again.predict(feats), diag.predict(feats))
    assert np.array_equal(again.train_features, diag.train_features)
    files = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert files == ["MODEL_CARD.md", "diagnosis.json", "diagnosis.safetensors", "diagnosis.skops"]  # no .pkl


def test_predictions_come_with_nearest_training_images(fitted, vae, store):
    diag = DiagnosisModel.load(fitted)
    loaded = load_encoder(diag)  # found through the recorded path, hash checked
    rows = store.select(split="test")
    out = diagnose_images(diag, loaded, RowView(store.images, rows), [store.paths[i] for i in rows], k=3)
    assert len(out) == 24 and out[0]["image"].startswith("test/")
    for r in out:
        assert r["class"] in ("normal", "blob") and abs(sum(r["probabilities"].values()) - 1) < 1e-9
        assert r["probability"] == r["probabilities"][r["class"]]
        d = [n["distance"] for n in r["neighbours"]]
        assert len(d) == 3 and d == sorted(d) and all(n["path"].startswith("train/") for n in r["neighbours"])
    # neighbours mostly share the true class on this easy toy
    agree = [
        n["label"] == store.label_names[store.labels[i]]
        for r, i in zip(out, rows, strict=True)
        for n in r["neighbours"]
    ]
    assert np.mean(agree) > 0.8


def test_labelled_fraction_multiclass_and_pca_encoder(tmp_path):
    st3 = make_store(tmp_path / "s3", {"train": 60, "val": 24, "test": 24}, n_classes=3)
    import vaedx

    enc = vaedx.train(st3.root, tmp_path / "pca3", kind="pca", latent_dim=6)
    diag = fit_diagnosis(
        enc, st3, labelled_fraction=0.5, calibration="isotonic", candidates=("logreg",), seed=1
    )
    assert diag.class_names == ["normal", "blob", "bar"] and diag.threshold is None
    assert diag.meta["data"]["n_labelled"] == 30 and diag.features.names == [f"mu{i}" for i in range(6)]
    report = evaluate_diagnosis(diag, enc, st3)
    assert report["macro_auc"] > 0.85 and len(report["per_class"]) == 3


def test_fixed_threshold_and_no_calibration(vae, store):
    diag = fit_diagnosis(vae, store, calibration="none", threshold="sens:0.9", candidates=("logreg",))
    assert diag.calibration == "none" and diag.threshold_rule == "sens:0.9"
    assert diag.metrics["sensitivity"] >= 0.9


# ------------------------------------------------------------------------------------------------ bad input
def test_unlabelled_training_split_is_an_input_error(tmp_path, vae):
    st = make_store(tmp_path / "s", {"train": 8, "val": 4}, label_of={"train": [-1] * 8})
    with pytest.raises(InputError, match="split 'train' has no labelled images"):
        fit_diagnosis(vae, st, candidates=("logreg",))


def test_single_class_in_labelled_subset_is_a_config_error(tmp_path, vae):
    st = make_store(tmp_path / "s", {"train": 40, "val": 4}, label_of={"train": [0] * 38 + [1] * 2})
    with pytest.raises(ConfigError, match="labelled subset has only class normal.*raise --labelled-fraction"):
        fit_diagnosis(vae, st, labelled_fraction=0.1, candidates=("logreg",))


def test_validation_without_labels_is_an_input_error(tmp_path, vae):
    st = make_store(tmp_path / "s", {"train": 8, "val": 4}, label_of={"val": [-1] * 4})
    with pytest.raises(InputError, match="split 'val' has no labelled images"):
        fit_diagnosis(vae, st, candidates=("logreg",))


def test_store_prepared_differently_is_a_model_mismatch(tmp_path, vae):
    other = make_store(
        tmp_path / "s", {"train": 8, "val": 4}, preprocess=PreprocessConfig(size=16, normalize="minmax")
    )
    with pytest.raises(ModelMismatchError, match="preprocess normalize"):
        fit_diagnosis(vae, other)
    with pytest.raises(ModelMismatchError, match="preprocess normalize"):
        evaluate_diagnosis(DiagnosisModel(None, [], None), vae, other)  # type: ignore[arg-type]


def test_retrained_encoder_is_refused(fitted, tmp_path, store):
    import vaedx

    other = vaedx.train(store.root, tmp_path / "other", kind="pca", latent_dim=4)
    diag = DiagnosisModel.load(fitted)
    with pytest.raises(ModelMismatchError, match="encoder weights differ"):
        load_encoder(diag, other.path)


def test_damaged_or_foreign_diagnosis_folders(fitted, tmp_path):
    with pytest.raises(InputError, match="diagnosis.json missing"):
        DiagnosisModel.load(tmp_path)
    (tmp_path / "diagnosis.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a diagnosis model"):
        DiagnosisModel.load(tmp_path)
    (tmp_path / "diagnosis.json").write_text((fitted / "diagnosis.json").read_text())
    (tmp_path / "diagnosis.safetensors").write_bytes((fitted / "diagnosis.safetensors").read_bytes()[:100])
    (tmp_path / "diagnosis.skops").write_bytes((fitted / "diagnosis.skops").read_bytes())
    with pytest.raises(InputError, match="damaged or truncated"):
        DiagnosisModel.load(tmp_path)


def test_a_folder_of_the_old_array_format_is_refused_with_a_way_out(fitted, tmp_path):
    doc = json.loads((fitted / "diagnosis.json").read_text())
    (tmp_path / "diagnosis.json").write_text(json.dumps({**doc, "format": "vaedx-diagnosis-1"}))
    with pytest.raises(InputError, match=r"old array format vaedx-diagnosis-1 .*refit it with `vaedx diag"):
        DiagnosisModel.load(tmp_path)


def test_tta_auto_is_chosen_on_validation_and_travels_with_the_model(vae, store, tmp_path):
    """tta="auto" scores every view set with the chosen classifier on val and keeps one only when the
    paired bootstrap puts its gain above 0; the saved spec applies it wherever features are computed."""
    diag = fit_diagnosis(vae, store, out=tmp_path / "d", candidates=("logreg",))
    doc = diag.meta["tta"]
    tried = doc["tried"]
    assert doc["mode"] == "auto" and set(tried) == {"none", "hflip", "affine"}
    assert doc["chosen"] == diag.features.tta
    for name in ("hflip", "affine"):
        t = tried[name]
        assert 0 <= t["p_not_better"] <= 1 and t["gain_low"] <= t["gain_high"]
    if doc["chosen"] != "none":
        assert tried[doc["chosen"]]["p_not_better"] < 0.05
        assert tried[doc["chosen"]]["val_auc"] > tried["none"]["val_auc"]
    loaded = DiagnosisModel.load(tmp_path / "d")
    assert loaded.features.tta == doc["chosen"] and loaded.meta["tta"]["chosen"] == doc["chosen"]
    fixed = fit_diagnosis(vae, store, out=tmp_path / "f", candidates=("logreg",), tta="hflip")
    assert fixed.features.tta == "hflip" and fixed.meta["tta"] == {"mode": "hflip", "chosen": "hflip"}
    rows = store.select(split="test")
    feats = fixed.features.compute(vae, RowView(store.images, rows))
    again = DiagnosisModel.load(tmp_path / "f")
    np.testing.assert_allclose(again.features.compute(vae, RowView(store.images, rows)), feats)
    plain = fit_diagnosis(vae, store, candidates=("logreg",), tta="none").features.compute(
        vae, RowView(store.images, rows)
    )
    assert feats.shape == plain.shape and not np.allclose(feats, plain)
    with pytest.raises(ConfigError, match="tta must be one of"):
        fit_diagnosis(vae, store, candidates=("logreg",), tta="mixup")


def test_tta_auto_keeps_none_for_pca(pca, store):
    diag = fit_diagnosis(pca, store, candidates=("logreg",))
    assert diag.features.tta == "none" and diag.meta["tta"]["chosen"] == "none"


class _ViewSpec(FeatureSpec):
    """Features that depend only on the view set: noisy, or clean under the ``cleaned_by`` view set."""

    cleaned_by: str | None = "hflip"

    def compute(self, model, images, batch_size=256, progress=None):  # type: ignore[no-untyped-def]
        y, noise = images
        return (y[:, None] * 2.0 - 1.0) + (0.1 if self.tta == self.cleaned_by else 3.0) * noise


class _NoViewHelps(_ViewSpec):
    cleaned_by = None


@pytest.mark.parametrize("spec_type", [_ViewSpec, _NoViewHelps])
def test_tta_is_kept_only_when_the_paired_bootstrap_confirms_the_gain(vae, spec_type):
    """A view set that cleans the features wins with p < 0.05; when none changes anything, none is kept."""
    from sklearn.linear_model import LogisticRegression

    from vaedx.diagnose.fit import choose_tta

    y = np.tile([0, 1], 150)
    noise = np.random.default_rng(0).standard_normal((len(y), 1))
    clf = LogisticRegression().fit(y[:, None] * 2.0 - 1.0, y)
    spec = spec_type(("mu",), 1)
    doc = choose_tta("auto", clf, spec, vae, (y, noise), spec.compute(vae, (y, noise)), y)
    hflip = doc["tried"]["hflip"]
    if spec_type is _ViewSpec:
        assert doc["chosen"] == spec.tta == "hflip" and hflip["p_not_better"] < 0.05 and hflip["gain_low"] > 0
    else:
        assert doc["chosen"] == spec.tta == "none" and hflip["p_not_better"] == 1.0

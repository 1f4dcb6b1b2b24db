"""MODEL_CARD.md of a diagnosis folder, fitted on a real PneumoniaMNIST run: counts, settings, validation
figures and threshold, and limitations that follow from the folder's own files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from card_fixtures import RealRun, counts
from vaedx.diagnose.card import write_diagnosis_card
from vaedx.diagnose.fit import fit_diagnosis
from vaedx.runs.model_card import CARD_FILE, fmt

pytestmark = pytest.mark.realdata


def test_diagnosis_folder_card_has_counts_settings_and_validation_figures(real_run: RealRun, tmp_path: Path):
    diag = fit_diagnosis(
        real_run.run, real_run.store, out=tmp_path / "diag", candidates=("logreg",), n_splits=3
    )
    card = (tmp_path / "diag" / CARD_FILE).read_text(encoding="utf-8")
    n_train, n_val = len(real_run.labels["train"]), len(real_run.labels["val"])
    for split in ("train", "val"):  # labelled images used, per label (all labels, unlike the VAE)
        normal, pneumonia = counts(real_run.labels[split])
        assert f"| {split} | {normal} | {pneumonia} | {normal + pneumonia} |" in card
    assert f"| trained on | {n_train} labelled images (100% of the training labels) |" in card
    assert f"| validated on | {n_val} images (calibration and threshold) |" in card
    assert f"| decision threshold | {fmt(diag.threshold)} (youden) |" in card
    assert f"| validation AUC | {fmt(diag.metrics['auc'])} |" in card
    assert f"| auc | {fmt(diag.metrics['auc'])} |" in card and "optimistic" in card
    assert "| classifier | logreg |" in card and "| latent_dim | 4 |" in card  # classifier and encoder
    tried = diag.meta["tta"]["tried"]  # every view set tried on validation, with its AUC
    assert f"| test-time augmentation | {diag.features.tta} (chosen on validation; AUC none " in card
    assert all(f"{name} {fmt(t['val_auc'])}" in card for name, t in tried.items())
    assert "not for clinical decisions" in card and "splits are by image" in card
    assert "No test figures yet" in card
    assert "pneumoniamnist.npz#" not in card  # the training images' paths (train_refs) are never listed


def test_card_follows_the_labelled_fraction_and_a_moved_encoder(real_run: RealRun, tmp_path: Path):
    encoder = tmp_path / "encoder"
    shutil.copytree(real_run.run, encoder)
    diag = fit_diagnosis(encoder, real_run.store, out=tmp_path / "diag", labelled_fraction=0.5,
                         candidates=("logreg",), n_splits=3)  # fmt: skip
    card = (tmp_path / "diag" / CARD_FILE).read_text(encoding="utf-8")
    assert (
        f"| trained on | {diag.meta['data']['n_labelled']} labelled images (50% of the training labels) |"
        in card
    )
    assert "Only 50% of the training labels were used." in card
    assert "not where it was" not in card
    shutil.rmtree(encoder)
    write_diagnosis_card(tmp_path / "diag")
    card = (tmp_path / "diag" / CARD_FILE).read_text(encoding="utf-8")
    assert "The encoder run is not where it was when fitted" in card and "| latent_dim |" not in card

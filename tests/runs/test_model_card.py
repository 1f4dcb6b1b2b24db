"""MODEL_CARD.md of a training run: a real PneumoniaMNIST run's counts and settings, regeneration from the
folder's files, and no patient identifier from a DICOM source."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from card_fixtures import FAST, RealRun, counts
from dicom_builders import PHI_STRINGS, write_ct_dicom
from vaedx.runs.model_card import (
    CARD_FILE,
    EVALUATIONS_FILE,
    evaluation_lines,
    fmt,
    headline,
    key_facts,
    read_evaluations,
    record_evaluation,
    run_card,
    write_run_card,
)

pytestmark = pytest.mark.realdata


def test_run_card_has_the_counts_per_split_and_label_and_the_settings(real_run: RealRun) -> None:
    card = (real_run.run / CARD_FILE).read_text(encoding="utf-8")
    for split, labels in real_run.labels.items():  # the store: every split, both labels
        normal, pneumonia = counts(labels)
        assert f"| {split} | {normal} | {pneumonia} | {normal + pneumonia} |" in card
    n_train, _ = counts(real_run.labels["train"])
    n_val, _ = counts(real_run.labels["val"])
    assert f"| train | {n_train} | {n_train} |" in card  # what the model used: the normal images only
    assert f"| val | {n_val} | {n_val} |" in card
    assert f"| trained on | {n_train} images, labels normal |" in card
    for setting in ("| latent_dim | 4 |", "| widths | 8, 16 |", "| epochs | 1 |", "| label_filter | normal |",
                    "| normalize | percentile |", "| batch_size | 16 |"):  # fmt: skip
        assert setting in card
    with open(real_run.run / "metrics.csv", newline="") as fh:
        val_loss = float(next(csv.DictReader(fh))["val_loss"])
    assert f"| val_loss | {fmt(val_loss)} |" in card
    assert "not for clinical decisions" in card
    assert "splits are by image" in card  # MedMNIST has no patient ids
    assert "Trained only on labels normal" in card
    assert "No test figures yet" in card
    assert str(real_run.store) not in card  # the store by name only: a folder can name a patient


def test_card_is_regenerated_from_the_folder_files(real_run: RealRun, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(real_run.run, run)
    before = (run / CARD_FILE).read_text(encoding="utf-8")
    (run / CARD_FILE).write_text("edited by hand\n", encoding="utf-8")
    write_run_card(run / "best")  # a checkpoint folder names its run
    assert (run / CARD_FILE).read_text(encoding="utf-8") == before.replace(
        "# Model card: run", "# Model card: run"
    )
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # written atomically
    facts = dict(key_facts(run))
    assert facts["model"] == "vae, latent dim 4, widths 8, 16"
    assert facts["intended use"] == "research only, not for clinical decisions"


def test_a_dae_run_is_named_a_denoising_autoencoder_not_a_vae(real_run: RealRun, tmp_path: Path) -> None:
    import json

    run = tmp_path / "run"
    shutil.copytree(real_run.run, run)
    for config in (run / "config.json", run / "best" / "config.json"):
        meta = json.loads(config.read_text())
        meta["train"]["model"].update(kind="dae", arch="conv-unet", widths=[8, 16, 32])
        meta["train"]["denoise"] = "coarse"
        config.write_text(json.dumps(meta))
    card = run_card(run).render()
    assert "A denoising autoencoder (dae) trained by vaedx" in card and "A vae trained" not in card
    assert "it has no ELBO; only the residual and SSIM scorers apply" in card
    assert "trained to remove coarse noise" in card
    assert "widths 8, 16, 32 |" in card and "| widths | 8, 16, 32 |" in card  # three ints are not a CI
    assert fmt([0.5, 0.25, 0.75]) == "0.5 (95% CI 0.25 to 0.75)"
    assert dict(run_card(real_run.run).facts)["model"].startswith("vae, ")  # the VAE's card is as before


def test_key_facts_come_back_from_the_rendered_card(real_run: RealRun) -> None:
    card = run_card(real_run.run)
    assert key_facts(real_run.run) == [(k, fmt(v)) for k, v in card.facts]


def test_no_patient_identifier_from_dicom_sources_reaches_the_card(tmp_path: Path) -> None:
    """Folders named after the patients, files full of identifiers: the card shows counts only."""
    import vaedx

    rng = np.random.default_rng(0)
    src = tmp_path / "dicoms"
    for patient in ("Doe^Jane_PID-12345", "House^Greg_ACC-777"):
        (src / patient).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 2000, (24, 24)).astype(np.uint16)
            write_ct_dicom(src / patient / f"slice{i}.dcm", pixels, slope=1.0, intercept=-1024.0)
    vaedx.prepare(src, tmp_path / "store", size=16, fractions=(0.5, 0.5, 0.0))
    vaedx.train(tmp_path / "store", tmp_path / "run", epochs=1, **FAST)
    card = (tmp_path / "run" / CARD_FILE).read_text(encoding="utf-8")
    assert "Patients (distinct patient ids, never listed): 2 (" in card  # the facts are there
    assert "| train | 6 | 6 |" in card or "| val | 6 | 6 |" in card
    for s in PHI_STRINGS:
        assert s not in card, f"{s!r} leaked into the model card"


def test_finetuned_encoder_run_has_its_own_card(real_run: RealRun, tmp_path: Path) -> None:
    from vaedx.diagnose.finetune import finetune_encoder

    tuned = finetune_encoder(
        real_run.run, real_run.store, tmp_path / "ft", epochs=1, min_steps=4, batch_size=16, num_threads=1
    )
    card = (tmp_path / "ft" / CARD_FILE).read_text(encoding="utf-8")
    normal, pneumonia = counts(real_run.labels["train"])
    assert f"| encoder fine-tuning (labelled) | {normal} | {pneumonia} | {normal + pneumonia} |" in card
    recipe = tuned.meta["finetune"]
    assert f"Encoder fine-tuned on {recipe['n_labelled']} labelled images ({recipe['epochs']} epochs)" in card
    assert "for `vaedx diagnose fit` only, not for anomaly detection" in card
    assert "| latent_dim | 4 |" in card  # the settings of the VAE it started from


def test_recorded_figures_render_with_their_cis_and_one_headline_per_evaluation(tmp_path: Path) -> None:
    auroc = {"point": 0.8125, "low": 0.7, "high": 0.9}
    image = {
        "title": "Anomaly detection",
        "split": "test",
        "summary": "40 images",
        "row_name": "scorer",
        "rows": [{"name": "residual", "metrics": {"AUROC": auroc, "AUPRC": None}}],
        "notes": ["a note"],
    }
    volume = {
        "title": "per volume",
        "headline": False,
        "rows": [{"name": "residual", "metrics": {"volumes": 4}}],
    }
    record_evaluation(tmp_path, "det/evaluation.json", image)
    record_evaluation(tmp_path, "det/evaluation.json#volumes", volume)
    record_evaluation(tmp_path, "det/evaluation.json", image)  # the same file again replaces its record
    entries = read_evaluations(tmp_path)
    assert list(entries) == ["det/evaluation.json", "det/evaluation.json#volumes"]
    assert headline(entries) == "test residual AUROC 0.8125 (95% CI 0.7 to 0.9)"
    lines = evaluation_lines(entries, "run evaluate")
    assert "| residual | 0.8125 (95% CI 0.7 to 0.9) | n/a |" in lines and "- a note" in lines
    assert "| residual | 4 |" in lines
    (tmp_path / EVALUATIONS_FILE).write_text("{not json", encoding="utf-8")
    assert read_evaluations(tmp_path) == {}  # a damaged record drops its figures, never the card
    assert evaluation_lines({}, "run evaluate") == ["No test figures yet: run evaluate."]

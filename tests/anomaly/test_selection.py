"""`vaedx detect` without a scorer chooses scorer and post-processing on real LGG val slices, never test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaedx.anomaly import selection as sel
from vaedx.anomaly.calibration import CalibrationFile
from vaedx.anomaly.detect import detect
from vaedx.anomaly.scoring import PostSpec
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter, TensorStore
from vaedx.data.volume_prep import prepare_volume
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.runs.loaded import load_model

SIZE = 32
SPLITS = ("train", "val", "test")  # one real patient each, in this order


def _write_store(lgg_dir: Path, out: Path, noisy_test: bool = False) -> Path:
    """Three LGG patients at 32 px with their tumour masks; ``noisy_test`` replaces the test patient's
    slices and masks by noise, so anything that read them would see different data."""
    cfg = PreprocessConfig(size=(SIZE, SIZE), channels=[1], normalize_scope="volume")
    cases = sorted(p for p in lgg_dir.iterdir() if p.is_dir() and p.name.startswith("TCGA"))[: len(SPLITS)]
    prepared = []
    for case in cases:
        vol, mask = read_lgg_patient(case)
        prepared.append(prepare_volume(vol, cfg, mask))
    writer = StoreWriter(out, sum(len(p.slices) for p in prepared), (1, SIZE, SIZE), with_masks=True)
    rng = np.random.default_rng(1)
    for split, case, p in zip(SPLITS, cases, prepared, strict=True):
        assert p.masks is not None
        for z in range(len(p.slices)):
            image, mask = p.slices[z], p.masks[z]
            if noisy_test and split == "test":
                image = rng.random(image.shape).astype(np.float32)
                mask = (rng.random(mask.shape) > 0.7).astype(np.uint8)
            writer.add(
                image, label=int(p.masks[z].any()), mask=mask, split=split,
                path=f"{case.name}/{case.name}_{z + 1}.png", patient_id=case.name,
            )  # fmt: skip
    writer.finish(["no_tumour", "tumour"], cfg)
    return out


@pytest.fixture(scope="module")
def store(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_store(lgg_dir, tmp_path_factory.mktemp("selection") / "store")


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vaedx

    out = tmp_path_factory.mktemp("selection") / "run"
    fast = {"widths": [8, 16], "latent_dim": 8, "batch_size": 32, "num_threads": 1}
    vaedx.train(store, out, epochs=2, label_filter=["no_tumour"], lr=3e-3, **fast)
    return out


def test_choice_reads_val_rows_only_and_keeps_the_best_candidate(run, store, monkeypatch):
    seen_splits, scored_sizes = [], []
    real_inputs, real_score = sel.store_inputs, sel.run_scorers

    def spy_inputs(ts, preprocess, shape, split):
        seen_splits.append(split)
        inputs = real_inputs(ts, preprocess, shape, split)
        seen_splits.extend(r["split"] for r in inputs.rows)
        return inputs

    def spy_score(model, images, *args, **kwargs):
        scored_sizes.append(len(images))
        return real_score(model, images, *args, **kwargs)

    monkeypatch.setattr(sel, "store_inputs", spy_inputs)
    monkeypatch.setattr(sel, "run_scorers", spy_score)
    ts = TensorStore.open(store)
    choice = sel.choose_scoring(load_model(run), ts)
    n_val = ts.select(split="val").size
    assert set(seen_splits) == {"val"} and len(seen_splits) == n_val + 1  # the request and every row read
    n_candidates = len(sel.CANDIDATE_SCORERS) * len(sel.CANDIDATE_POSTS)  # a VAE allows all four scorers
    assert scored_sizes == [n_val] * n_candidates and len(choice.candidates) == n_candidates
    assert choice.metric == "pixel_auprc" and choice.split == "val" and choice.n_images == n_val
    best = max(c["value"] for c in choice.candidates)
    assert choice.value == best and 0 < best <= 1 and not choice.skipped
    winner = next(c for c in choice.candidates if c["value"] == best)
    assert (choice.scorer, choice.postprocess) == (winner["scorer"], winner["postprocess"])
    assert PostSpec.parse(choice.postprocess).foreground  # every candidate scores inside the head


def test_detect_records_the_choice_and_test_rows_do_not_change_it(run, store, lgg_dir, tmp_path):
    common = {"scorers": None, "split": "test", "max_overlays": 0, "quiet": True}
    out = detect(run, tmp_path / "auto", store=store, **common)
    meta = json.loads((out / "detect.json").read_text())
    chosen = meta["selection"]
    assert meta["scorers"] == [chosen["scorer"]] and meta["split"] == "test"
    assert meta["postprocess"] == PostSpec.parse(chosen["postprocess"]).as_dict()
    assert CalibrationFile.load(out).selection.model_dump(mode="json") == chosen  # thresholds.json too
    assert meta["thresholds"][chosen["scorer"]]["pixel_threshold"] is not None  # calibrated on val
    assert np.load(out / "maps" / f"{chosen['scorer']}.npy").shape[0] == meta["n_images"]
    # the same store with the test patient replaced by noise: the choice and its val figures are the same
    noisy = _write_store(lgg_dir, tmp_path / "noisy", noisy_test=True)
    again = json.loads(
        (detect(run, tmp_path / "noisy_out", store=noisy, **common) / "detect.json").read_text()
    )
    keep = ("scorer", "postprocess", "value", "dice", "candidates")
    assert {k: again["selection"][k] for k in keep} == {k: chosen[k] for k in keep}


def test_budget_and_explicit_postprocess_limit_the_candidates(run, store):
    loaded, ts = load_model(run), TensorStore.open(store)
    spent = sel.choose_scoring(loaded, ts, budget_s=0)
    # the recorded default (plain residual: no preset) is tried first, the rest recorded as skipped
    assert [(c["scorer"], c["postprocess"]) for c in spent.candidates] == [("residual", "foreground")]
    assert len(spent.skipped) == len(sel.CANDIDATE_SCORERS) * len(sel.CANDIDATE_POSTS) - 1
    fixed = sel.choose_scoring(loaded, ts, post=PostSpec.parse("foreground,median=3"))
    assert {c["postprocess"] for c in fixed.candidates} == {"foreground,median=3"}
    assert {c["scorer"] for c in fixed.candidates} == set(sel.CANDIDATE_SCORERS)


def test_without_a_store_the_saved_choice_or_the_recorded_default_applies(run, store, tmp_path):
    import shutil

    own = shutil.copytree(run, tmp_path / "run")
    choice = sel.choose_scoring(load_model(own), None)
    assert (choice.scorer, choice.postprocess, choice.metric) == ("residual", "", "recorded_default")
    assert choice.value is None and "no store" in choice.reason
    # chosen on val and saved with the run's calibration: scoring files later uses that choice
    detect(own, tmp_path / "d", store=store, scorers=None, save_calibration=True, max_overlays=0, quiet=True)
    saved = CalibrationFile.load(own).selection
    assert saved is not None and saved.metric == "pixel_auprc"
    assert sel.choose_scoring(load_model(own), None) == saved
    card = (own / "MODEL_CARD.md").read_text()
    assert f"Chosen by `vaedx detect` without `--scorer` on the val split: {saved.scorer}" in card

"""Tuning restoration's lam and steps on real LGG slices: val only, recorded, reused by later detect runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vaedx.anomaly import restoration_tuning as rt
from vaedx.anomaly.calibration import CalibrationFile
from vaedx.anomaly.detect import detect
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter, TensorStore
from vaedx.data.volume_prep import prepare_volume
from vaedx.errors import ConfigError
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.runs.loaded import load_model

SIZE = 32
SPLITS = ("train", "val", "test")  # one real patient each
LAMS, STEPS = (0.5, 4.0), (2, 4)


@pytest.fixture(scope="module")
def store(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = PreprocessConfig(size=(SIZE, SIZE), channels=[1], normalize_scope="volume")
    cases = sorted(p for p in lgg_dir.iterdir() if p.is_dir() and p.name.startswith("TCGA"))[: len(SPLITS)]
    prepared = []
    for case in cases:
        vol, mask = read_lgg_patient(case)
        prepared.append(prepare_volume(vol, cfg, mask))
    out = tmp_path_factory.mktemp("tuning") / "store"
    writer = StoreWriter(out, sum(len(p.slices) for p in prepared), (1, SIZE, SIZE), with_masks=True)
    for split, case, p in zip(SPLITS, cases, prepared, strict=True):
        assert p.masks is not None
        for z in range(len(p.slices)):
            writer.add(
                p.slices[z], label=int(p.masks[z].any()), mask=p.masks[z], split=split,
                path=f"{case.name}/{case.name}_{z + 1}.png", patient_id=case.name,
            )  # fmt: skip
    writer.finish(["no_tumour", "tumour"], cfg)
    return out


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import vaedx

    out = tmp_path_factory.mktemp("tuning") / "run"
    fast = {"widths": [8, 16], "latent_dim": 8, "batch_size": 32, "num_threads": 1}
    vaedx.train(store, out, epochs=2, label_filter=["no_tumour"], lr=3e-3, **fast)
    return out


def test_tuning_scores_the_val_rows_only_and_picks_the_best_of_the_grid(run, store, monkeypatch):
    seen_splits, scored_sizes = [], []
    real_inputs, real_score = rt.store_inputs, rt.run_scorers

    def spy_inputs(ts, preprocess, shape, split):
        seen_splits.append(split)
        inputs = real_inputs(ts, preprocess, shape, split)
        seen_splits.extend(r["split"] for r in inputs.rows)
        return inputs

    def spy_score(model, images, *args, **kwargs):
        scored_sizes.append(len(images))
        return real_score(model, images, *args, **kwargs)

    monkeypatch.setattr(rt, "store_inputs", spy_inputs)
    monkeypatch.setattr(rt, "run_scorers", spy_score)
    ts = TensorStore.open(store)
    tuning = rt.tune_restoration(load_model(run), ts, lams=LAMS, steps=STEPS)
    n_val = ts.select(split="val").size
    assert set(seen_splits) == {"val"} and len(seen_splits) == n_val + 1  # the request and every row read
    assert scored_sizes == [n_val] * (len(LAMS) * len(STEPS))
    assert tuning.metric == "pixel_auprc" and tuning.split == "val" and tuning.n_images == n_val
    assert {(g["lam"], g["steps"]) for g in tuning.grid} == {(lam, s) for lam in LAMS for s in STEPS}
    best = max(g["value"] for g in tuning.grid)
    assert tuning.value == best and 0 < best <= 1
    chosen = next(g for g in tuning.grid if (g["lam"], g["steps"]) == (tuning.lam, tuning.steps))
    assert chosen["value"] == best


def test_detect_tunes_records_the_choice_and_later_runs_reuse_it(run, store, tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "GRID_LAM", LAMS)
    monkeypatch.setattr(rt, "GRID_STEPS", STEPS)
    common = {"store": store, "scorers": ["restoration"], "max_overlays": 0, "quiet": True}
    first = detect(run, tmp_path / "tuned", tune_restoration=True, save_calibration=True, **common)
    saved = CalibrationFile.load(run).restoration
    assert saved is not None and saved.split == "val"
    assert CalibrationFile.load(first).restoration == saved
    chosen = {"lam": saved.lam, "steps": saved.steps}
    meta = json.loads((first / "detect.json").read_text())
    assert meta["options"]["restoration"] == chosen
    assert CalibrationFile.load(run).scorers["restoration"].options == chosen  # serve applies these
    # a later run without the flag scores with the saved choice; explicit options still win
    monkeypatch.setattr(rt, "tune_restoration", lambda *a, **k: pytest.fail("must not tune again"))
    again = detect(run, tmp_path / "again", options={"restoration": {"steps": 3}}, **common)
    assert json.loads((again / "detect.json").read_text())["options"]["restoration"] == {**chosen, "steps": 3}
    assert np.isfinite(np.load(again / "maps" / "restoration.npy")).all()


def test_tuning_needs_the_restoration_scorer_and_a_store(run, store, tmp_path):
    with pytest.raises(ConfigError, match="--scorer restoration"):
        detect(run, tmp_path / "x", store=store, scorers=["residual"], tune_restoration=True, quiet=True)
    with pytest.raises(ConfigError, match="needs --store"):
        rt.restoration_options(load_model(run), None, {}, tune=True)

from __future__ import annotations

import pytest

from diag_helpers import ARCH, make_store
from vaedx.data.preprocess import PreprocessConfig
from vaedx.diagnose.study import (
    METHODS,
    STUDY_METHODS,
    StudyMethod,
    label_fraction_study,
    paired_comparison,
    summarise,
)
from vaedx.errors import ConfigError, ModelMismatchError


def test_study_compares_all_methods_on_the_same_subsets(store, vae):
    seen = []
    res = label_fraction_study(
        store,
        fractions=(0.5, 1.0),
        seeds=(0, 1),
        methods=METHODS,
        epochs=1,
        vae=vae,
        model=ARCH,
        batch_size=16,
        progress=seen.append,
    )
    assert len(res.rows) == len(METHODS) * 2 * 2 and seen == res.rows
    assert {r["method"] for r in res.rows} == {
        "vae_latent_lr", "m2", "vae_finetune", "supervised_cnn", "vae_fixmatch"
    }  # fmt: skip
    for r in res.rows:
        assert set(r) == {"method", "fraction", "n_labelled", "seed", "auc", "acc", "sens", "spec"}
        assert r["n_labelled"] == {0.5: 20, 1.0: 40}[r["fraction"]]
        assert 0 <= r["auc"] <= 1 and 0 <= r["acc"] <= 1
    # the pre-trained VAE + logistic regression is the strong method on this toy
    lr = [r["auc"] for r in res.rows if r["method"] == "vae_latent_lr"]
    assert min(lr) > 0.9
    assert len(res.summary) == len(METHODS) * 2
    s = next(r for r in res.summary if r["method"] == "vae_latent_lr" and r["fraction"] == 1.0)
    assert s["n_seeds"] == 2 and s["auc"].count("±") == 1 and s["auc_sd"] >= 0
    # every other method against the CNN on the same two subsets, per fraction
    assert {(p["method"], p["fraction"]) for p in res.paired} == {
        (m, f) for m in METHODS if m != "supervised_cnn" for f in (0.5, 1.0)
    }
    for p in res.paired:
        d = [
            r["auc"] - next(c["auc"] for c in res.rows if c["method"] == "supervised_cnn" and
                            (c["fraction"], c["seed"]) == (r["fraction"], r["seed"]))
            for r in res.rows if (r["method"], r["fraction"]) == (p["method"], p["fraction"])
        ]  # fmt: skip
        assert p["n_seeds"] == 2 and p["diff_mean"] == pytest.approx(sum(d) / 2)
        assert p["ci_low"] <= p["diff_mean"] <= p["ci_high"] and p["wins"] == sum(x > 0 for x in d)


def test_study_trains_its_own_vae_when_none_is_given(store, tmp_path):
    res = label_fraction_study(
        store,
        fractions=(1.0,),
        seeds=(0,),
        methods=("vae_latent_lr",),
        epochs=2,
        model=ARCH,
        work_dir=tmp_path,
    )
    assert (tmp_path / "vae" / "best" / "model.safetensors").exists() and len(res.rows) == 1


def test_summary_mean_and_sd():
    rows = [
        {
            "method": "m",
            "fraction": 0.1,
            "n_labelled": 4,
            "seed": s,
            "auc": a,
            "acc": 0.5,
            "sens": None,
            "spec": 1.0,
        }
        for s, a in enumerate([0.6, 0.8])
    ]
    (s,) = summarise(rows)
    assert s["auc_mean"] == pytest.approx(0.7) and s["auc_sd"] == pytest.approx(0.1414, abs=1e-3)
    assert s["auc"] == "0.700 ± 0.141" and s["sens"] == "n/a" and s["spec_sd"] == 0.0


def test_paired_comparison_is_a_t_interval_over_the_shared_seeds():
    def row(method, seed, auc, fraction=0.01):
        return {"method": method, "fraction": fraction, "seed": seed, "auc": auc}

    cnn = [row("supervised_cnn", s, a) for s, a in enumerate([0.90, 0.80, 0.85, 0.70])]
    fm = [row("vae_fixmatch", s, a) for s, a in enumerate([0.91, 0.82, 0.88])]  # seed 3 missing
    p = paired_comparison(cnn + fm)[0]
    # differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t(0.975, 2) = 4.3027
    assert p["n_seeds"] == 3 and p["wins"] == 3
    assert p["diff_mean"] == pytest.approx(0.02) and p["diff_sd"] == pytest.approx(0.01)
    assert p["ci_low"] == pytest.approx(0.02 - 4.3027 * 0.01 / 3**0.5, abs=1e-4)
    assert p["ci_high"] == pytest.approx(0.02 + 4.3027 * 0.01 / 3**0.5, abs=1e-4)
    # a fraction the baseline lacks gives no row; one seed gives a mean but no interval
    assert len(paired_comparison(cnn + fm + [row("vae_fixmatch", 0, 0.5, fraction=0.1)])) == 1
    (one,) = paired_comparison(cnn + fm[:1])
    assert one["diff_mean"] == pytest.approx(0.01) and one["ci_low"] is None and one["diff_sd"] is None
    with pytest.raises(ConfigError, match="alpha"):
        paired_comparison(cnn, alpha=1.5)


def test_study_bad_input(store, vae, tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        label_fraction_study(store, methods=("svm",))
    # an infeasible fraction fails before anything is trained
    with pytest.raises(ConfigError, match="labelled subset has only class"):
        label_fraction_study(store, fractions=(0.01,), seeds=(0,), methods=("m2",))
    other = make_store(
        tmp_path / "o", {"train": 8, "test": 4}, preprocess=PreprocessConfig(size=16, grey=True)
    )
    with pytest.raises(ModelMismatchError, match="preprocess grey"):
        label_fraction_study(other, fractions=(1.0,), seeds=(0,), methods=("vae_latent_lr",), vae=vae.path)


def test_a_registered_method_is_one_entry(store, monkeypatch):
    """A method added to the registry is run on the same subsets and scored like the others."""
    import numpy as np

    def prior(inp, fraction, seed, rows):  # predicts the labelled subset's class frequencies
        freq = np.bincount(inp.store.labels[rows], minlength=2) / len(rows)
        return np.tile(freq, (len(inp.test), 1))

    monkeypatch.setitem(STUDY_METHODS, "prior", StudyMethod(prior))
    res = label_fraction_study(store, fractions=(0.5,), seeds=(0, 1), methods=("prior",))
    assert [r["method"] for r in res.rows] == ["prior", "prior"]
    assert all(r["auc"] == 0.5 for r in res.rows) and res.summary[0]["n_seeds"] == 2
    assert tuple(STUDY_METHODS)[: len(METHODS)] == METHODS

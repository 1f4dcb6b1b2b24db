"""`vaedx train`: options generated from TrainConfig/ModelConfig, defaults in --help, --config round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from train_fixtures import tiny_store  # noqa: F401
from vaedx.cli import app, main
from vaedx.models.config import ModelConfig
from vaedx.runs.config import TrainConfig

runner = CliRunner()


def test_help_shows_every_field_with_its_default() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = result.output
    for name in [*TrainConfig.model_fields, *ModelConfig.model_fields]:
        if name in ("model", "in_channels", "image_size", "detect"):  # detect: from --preset or YAML
            continue
        flag = "--threads" if name == "num_threads" else "--" + name.replace("_", "-")
        assert flag in text, flag
    defaults = ("[default: 200]", "[default: 10]", "[default: 10.0]", "[default: 32]", "[default: 32,64,128]")
    for shown in (*defaults, "[default: auto]"):
        assert shown in text
    assert "--num-threads" not in text  # old spelling: hidden, still accepted


def test_print_config_feeds_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "-s", "st", "-o", "out", "--latent-dim", "8", "--widths", "8,16", "--val-split", "none",
            "--label-filter", "normal", "--augment", "--num-threads", "2", "--beta", "2"]  # fmt: skip
    assert main([*args, "--print-config"]) == 0
    captured = capsys.readouterr()
    assert "--num-threads is deprecated; use --threads" in captured.err
    (tmp_path / "c.yaml").write_text(captured.out)
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out == captured.out
    import yaml

    cfg = TrainConfig.model_validate(yaml.safe_load(captured.out))
    assert cfg.model.latent_dim == 8 and cfg.model.widths == [8, 16] and cfg.val_split is None
    assert cfg.num_threads == 2 and cfg.beta == 2 and cfg.augment is not None


def test_a_runs_config_json_round_trips(tiny_store: Path, tmp_path: Path) -> None:  # noqa: F811
    first = tmp_path / "a"
    args = ["train", "-s", str(tiny_store), "-o", str(first), "--epochs", "1", "--latent-dim", "4",
            "--widths", "8,16", "--batch-size", "8", "--threads", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    saved = next(first.glob("*/config.json"))
    second = tmp_path / "b"
    assert main(["train", "--config", str(saved), "-o", str(second), "--quiet"]) == 0
    a = json.loads(saved.read_text())["train"]
    b = json.loads(next(second.glob(f"{saved.parent.name}/config.json")).read_text())["train"]
    assert a.pop("out") != b.pop("out")
    assert a == b


def test_train_refuses_to_replace_a_run(tiny_store: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    args = ["train", "-s", str(tiny_store), "-o", str(tmp_path / "r"), "--epochs", "1", "--latent-dim", "2",
            "--widths", "4", "--threads", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_import_and_root_help_stay_free_of_torch() -> None:
    """train's options come from torch-importing config modules, so they are built only when train runs."""
    import subprocess
    import sys

    code = (
        "import sys; from vaedx.cli import main; rc = main(['--help']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout


def test_denoise_options(tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert "Kascenas et al., MIDL 2022" in result.output and "none | coarse" in result.output
    flags = ["--denoise", "coarse", "--noise-resolution", "8", "--noise-std", "0.1"]
    assert main(["train", "-s", "st", "-o", "out", *flags, "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "denoise: coarse" in shown and "noise_resolution: 8" in shown and "noise_std: 0.1" in shown

    out = tmp_path / "run"
    args = ["train", "-s", str(tiny_store), "-o", str(out), "--epochs", "1", "--latent-dim", "4",
            "--widths", "8,16", "--batch-size", "8", "--threads", "1", *flags]  # fmt: skip
    assert main(args) == 0
    assert "coarse noise (8x8 grid, std 0.1)" in " ".join(capsys.readouterr().err.split())
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["denoise"], saved["noise_resolution"], saved["noise_std"]) == ("coarse", 8, 0.1)

    refused = ((["--denoise", "fine"], "denoise"), ([*flags, "--kind", "pca"], "denoise applies to vae/ae"))
    for bad, said in refused:
        assert main(["train", "-s", str(tiny_store), "-o", str(tmp_path / "x"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err


def test_context_encoding_options(capsys: pytest.CaptureFixture[str]) -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert "Zimmerer et al., MIDL 2019" in result.output and "--no-context-encoding" in result.output
    flags = ["--context-encoding", "--ce-weight", "2", "--ce-patches", "4", "--ce-fill", "zero"]
    assert main(["train", "-s", "st", "-o", "out", *flags, "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "context_encoding: true" in shown and "ce_weight: 2.0" in shown
    assert "ce_patches: 4" in shown and "ce_fill: zero" in shown
    assert main(["train", "-s", "st", "-o", "out", *flags, "--denoise", "coarse", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert "separate recipes" in err and len(err.splitlines()) == 1, err


def _lgg_store(lgg_dir: Path, out: Path, size: int = 64) -> Path:
    """Tumour-free slices of two real FLAIR volumes: three in four to train on, the rest to validate on."""
    from vaedx.data.preprocess import PreprocessConfig, apply
    from vaedx.data.store import StoreWriter
    from vaedx.io.slice_stack import read_lgg_patient

    cfg, images = PreprocessConfig(size=(size, size)), []
    for case in sorted(p for p in lgg_dir.iterdir() if p.name.startswith("TCGA"))[:2]:
        vol, mask = read_lgg_patient(case)
        n = len(mask)
        images += [(case.name, z, apply(vol.data[z], cfg, mask[z])[0]) for z in range(n // 5, 4 * n // 5)
                   if not mask[z].any()]  # fmt: skip
    writer = StoreWriter(out, len(images), (1, size, size), with_masks=False)
    for i, (name, z, img) in enumerate(images):
        split = "val" if i % 4 == 3 else "train"
        writer.add(img, label=0, split=split, path=f"{name}/{z}.png", patient_id=name)
    writer.finish(["normal"], cfg)
    return out


def test_conv_unet_trains_as_a_denoising_autoencoder(lgg_dir: Path, tmp_path: Path, capsys) -> None:
    """One epoch on real LGG slices: kind dae with coarse noise on by default, saved, reloaded, scored by
    residuals only; training it without a corruption is refused in one line."""
    import numpy as np
    import torch

    from vaedx.anomaly.registry import available_scorers, build_scorer
    from vaedx.errors import ModelMismatchError
    from vaedx.models.unet import ConvUNet
    from vaedx.runs.loaded import load_model

    store, out = _lgg_store(lgg_dir, tmp_path / "store"), tmp_path / "run"
    base = ["train", "-s", str(store), "--arch", "conv-unet", "--epochs", "1", "--latent-dim", "4",
            "--widths", "8,16", "--batch-size", "8", "--threads", "1"]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "x"), "--denoise", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "learns to copy its input" in err and len(err.splitlines()) == 1, err
    assert main([*base, "-o", str(tmp_path / "x"), "--kind", "vae"]) == 2
    err = capsys.readouterr().err.strip()
    assert "denoising autoencoder, kind dae" in err and len(err.splitlines()) == 1, err

    assert main([*base, "-o", str(out)]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "training denoising autoencoder (dae) on" in said and "coarse noise (16x16 grid" in said
    saved = json.loads((out / "config.json").read_text())["train"]
    model = saved["model"]
    assert (model["kind"], model["arch"], saved["denoise"]) == ("dae", "conv-unet", "coarse")
    card = (out / "MODEL_CARD.md").read_text()
    assert "A denoising autoencoder (dae) trained by vaedx" in card and "it has no ELBO" in card

    loaded = load_model(out)
    assert isinstance(loaded.model, ConvUNet) and loaded.kind == "dae"
    x = torch.from_numpy(np.load(store / "images.npy")[:4])
    assert set(available_scorers(loaded.model)) == {"residual", "residual_signed", "residual_intensity",
                                                   "ssim", "ssim_l1", "intensity"}  # fmt: skip
    for name in ("residual", "ssim"):
        assert build_scorer(name, loaded.model).score(x).maps.shape == (4, 64, 64)
    for name in ("elbo", "kl", "grad_elbo", "uncertainty", "restoration"):
        with pytest.raises(ModelMismatchError, match="a denoising autoencoder: skip connections bypass"):
            build_scorer(name, loaded.model)


def test_preset_brain_mri_fills_the_recipe_and_detect_follows_it(
    lgg_dir: Path, tmp_path: Path, capsys
) -> None:
    """`--preset brain-mri` on real LGG slices: the preset's values where nothing was typed, typed options
    win, the choice is saved in config.json and the model card, and `vaedx detect` without --scorer falls
    back to the preset's scorer and post-processing when validation (no masks, one label) cannot choose."""
    store, out = _lgg_store(lgg_dir, tmp_path / "store"), tmp_path / "run"
    base = ["train", "-s", str(store), "--preset", "brain-mri", "--threads", "1"]
    assert main([*base, "-o", str(tmp_path / "x"), "--preset", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "preset" in err and "brain-mri" in err and len(err.splitlines()) == 1, err
    assert main([*base, "-o", str(tmp_path / "v"), "--kind", "vae", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["model"]["kind"], shown["model"]["arch"], shown["denoise"]) == ("vae", "auto", "none")
    assert shown["model"]["widths"] == [16, 32, 64] and shown["preset"] == "brain-mri"

    assert main([*base, "-o", str(out), "--epochs", "1", "--widths", "8,16", "--batch-size", "8"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "preset brain-mri: dae (conv-unet)" in said and "detect default residual_signed" in said
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["preset"], saved["model"]["kind"], saved["model"]["arch"]) == (
        "brain-mri",
        "dae",
        "conv-unet",
    )
    assert saved["model"]["widths"] == [8, 16] and saved["epochs"] == 1  # typed: they win
    assert saved["model"]["latent_dim"] == 32 and saved["denoise"] == "coarse"  # the preset's
    assert saved["noise_resolution"] == 64 // 8  # 8-pixel noise cells on this 64 px store
    assert saved["detect"]["scorer"] == "residual_signed"
    card = (out / "MODEL_CARD.md").read_text()
    assert "--preset brain-mri" in card and "falls back to scorer residual_signed" in card

    det = tmp_path / "det"
    args = ["detect", "-m", str(out), "-s", str(store), "-o", str(det), "--split", "val",
            "--max-overlays", "0", "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    assert "chose scorer residual_signed" in " ".join(capsys.readouterr().err.split())
    meta = json.loads((det / "detect.json").read_text())
    assert meta["scorers"] == ["residual_signed"] and meta["selection"]["metric"] == "recorded_default"
    assert meta["postprocess"] == {"foreground": True, "median": 5, "gaussian": 0.0}
    assert meta["options"]["residual_signed"] == {"image_method": "topk", "topk_percent": 1.0}

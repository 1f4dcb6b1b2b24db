"""``vaedx train``: every TrainConfig/ModelConfig field as an option; options override the YAML file.

Why every option defaults to None: only what the user actually typed overrides the YAML (and, with
--resume, the saved run), so "not given" and "given the default value" stay distinguishable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vaedx.errors import ConfigError


def _split(values: list[str] | None) -> list[str] | None:
    """--label-filter normal --label-filter benign, or --label-filter normal,benign."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _widths(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--widths takes integers such as 32,64,128, not {text!r}") from None


def train_command(
    store: Path | None = typer.Option(None, "--store", "-s", help="Tensor store folder."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (checkpoints, metrics, logs)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of options."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from last/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or epoch lines."),
    # model
    kind: str | None = typer.Option(None, help="vae | ae | pca"),
    latent_dim: int | None = typer.Option(None, help="Latent dimensions (PCA: components)."),
    widths: str | None = typer.Option(None, help="Channels per level, e.g. 32,64,128."),
    norm: str | None = typer.Option(None, help="group | batch | instance | none"),
    residual: int | None = typer.Option(None, help="Residual blocks per level."),
    likelihood: str | None = typer.Option(None, help="gaussian | gaussian_learned | bernoulli | laplace"),
    sigma: float | None = typer.Option(None, help="Decoder std (gaussian) or scale (laplace)."),
    learned_sigma: str | None = typer.Option(None, help="global | pixel (gaussian_learned)."),
    ssim_weight: float | None = typer.Option(None, help="Weight of the (1 - SSIM) recon term."),
    # optimisation
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None, help="AdamW learning rate."),
    weight_decay: float | None = typer.Option(None),
    scheduler: str | None = typer.Option(None, help="none | cosine | plateau"),
    grad_clip: float | None = typer.Option(None, help="Max gradient norm."),
    beta: float | None = typer.Option(None, help="KL weight (per-image sums; 1 = ELBO)."),
    kl_anneal: str | None = typer.Option(None, help="none | linear | cyclical"),
    anneal_epochs: int | None = typer.Option(None),
    cycles: int | None = typer.Option(None),
    free_bits: float | None = typer.Option(None, help="Nats per latent dimension."),
    patience: int | None = typer.Option(None, help="Early stopping patience in epochs (0 = off)."),
    min_delta: float | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    # data
    train_split: str | None = typer.Option(None),
    val_split: str | None = typer.Option(None, help="Split for validation ('none' = no validation)."),
    label_filter: list[str] | None = typer.Option(None, help="Only these labels (repeat or comma-separate)."),
    max_images: int | None = typer.Option(None, help="Cap on images per split."),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="Random rotation, zoom and shift of training batches."
    ),
    # runtime
    device: str | None = typer.Option(None, help="auto | cpu | cuda | cuda:N"),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: on for CUDA)."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last"),
    num_threads: int | None = typer.Option(None, help="CPU threads for torch."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    log_every: int | None = typer.Option(None, help="Steps between train.log lines."),
) -> None:
    """Train a VAE, AE or PCA baseline on a tensor store (torchrun-aware)."""
    given = dict(locals())
    from vaedx.training.engine import run_training

    control = ("config", "resume", "overwrite", "quiet")
    overrides: dict[str, Any] = {k: v for k, v in given.items() if k not in control and v is not None}
    if widths is not None:
        overrides["widths"] = _widths(widths)
    overrides.pop("label_filter", None)
    if label_filter:
        overrides["label_filter"] = _split(label_filter)
    if val_split is not None and val_split.lower() == "none":
        overrides["val_split"] = None
    out_dir = run_training(config, overrides, resume=resume, overwrite=overwrite, quiet=quiet)
    if not quiet:
        typer.echo(f"run written to {out_dir}", err=True)

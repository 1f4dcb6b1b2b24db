"""``vaedx train``: every TrainConfig/ModelConfig field as an option; options override the YAML file.

The options are generated from the pydantic fields (name, type, description, default), so a new field is a
new option with its default shown in ``--help``, and the CLI cannot drift from the config it fills.

Why every option defaults to None: only what the user actually typed overrides the YAML (and, with
--resume, the saved run), so "not given" and "given the default value" stay distinguishable. The field's
real default is shown in the help text instead.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Any, Literal

import typer

from vaedx.cli.options import DEVICE_HELP, QUIET_HELP, THREADS_HELP, TRACKER_HELP, dump_settings, pick
from vaedx.errors import ConfigError
from vaedx.models.config import ModelConfig
from vaedx.runs.config import TrainConfig, build_config

# filled in from the tensor store by the trainer, not choices a user makes on the command line
_NOT_OPTIONS = frozenset({"model", "in_channels", "image_size", "detect"})
# spelling kept from before the options were generated: field name -> option name
_RENAMED = {"num_threads": "threads"}
_SHORT = {"store": "-s", "out": "-o"}
_HELP = {  # for fields whose description is missing or written for the YAML rather than the command line
    "kind": "Model family.",
    "latent_dim": "Latent dimensions (PCA: components).",
    "widths": "Channels per level, e.g. 32,64,128.",
    "likelihood": "Decoder likelihood.",
    "val_split": "Split for validation ('none' = no validation).",
    "label_filter": "Only these labels (repeat or comma-separate).",
    "augment": "Random rotation, zoom and shift of training batches.",
    "denoise": "coarse: train to give back the clean image from one corrupted with upsampled low-resolution "
    "Gaussian noise inside the head (Kascenas et al., MIDL 2022); validation stays on clean images.",
    "noise_resolution": "With --denoise coarse: side of the noise grid (paper: 16 for 128 px).",
    "noise_std": "With --denoise coarse: std of the noise on its grid (paper: 0.2).",
    "context_encoding": "ceVAE (Zimmerer et al., MIDL 2019): also train the model to give back the clean "
    "image from a copy with rectangles inside the head masked out; score with --scorer combi.",
    "preset": "Best measured recipe for this kind of data; options you type win over its values, and "
    "the chosen values are saved in config.json and shown in the model card. brain-mri: U-Net denoising "
    "autoencoder (coarse noise of 8-pixel cells), widths 16,32,64, 20 epochs; vaedx detect then defaults "
    "to residual_signed with foreground,median=5 (prepare with vaedx data prepare --preset brain-mri: "
    "skull stripped, 128 px; mean Dice 0.52 on 28 LGG patients, 0.22 with the skull left in).",
    "device": DEVICE_HELP,
    "num_threads": THREADS_HELP,
}
_CONTROL = ("config", "resume", "overwrite", "quiet", "print_config", "num_threads_old", "tracker")


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


def _fields() -> list[tuple[str, Any]]:
    """(name, FieldInfo) of every option: the run's fields first, then the model's."""
    out = [(n, f) for n, f in TrainConfig.model_fields.items() if n not in _NOT_OPTIONS]
    out += [(n, f) for n, f in ModelConfig.model_fields.items() if n not in _NOT_OPTIONS]
    return out


def _strip_none(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return annotation


def _shown(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _option(name: str, field: Any) -> inspect.Parameter:
    """One typer option for one pydantic field; the default is None so that typing it is what counts."""
    base = _strip_none(field.annotation)
    flag = "--" + _RENAMED.get(name, name).replace("_", "-")
    decls = [flag, *([_SHORT[name]] if name in _SHORT else [])]
    text = _HELP.get(name) or field.description or ""
    if typing.get_origin(base) is Literal:
        text = f"{' | '.join(map(str, typing.get_args(base)))}. {text}".strip()
        base = str
    if name == "widths":
        kind: Any = str
    elif name == "label_filter":
        kind = list[str]
    elif name == "augment" or base is bool:
        kind, decls = bool, [f"{flag}/--no-{flag[2:]}"]
    elif base in (int, float, str, Path):
        kind = base
    else:
        kind = str
    text = f"{text.rstrip('.')}. " if text else ""
    option = typer.Option(None, *decls, help=f"{text}\\[default: {_shown(field)}]", show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


def _control() -> list[inspect.Parameter]:
    def opt(name: str, kind: Any, default: Any, *decls: str, **kw: Any) -> inspect.Parameter:
        value = typer.Option(default, *decls, **kw)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=kind)

    return [
        opt("config", Path | None, None, "--config", "-c",
            help="YAML file of options, or a run's config.json (typed options win)."),
        opt("resume", bool, False, "--resume", help="Continue the run in --out from last/."),
        opt("overwrite", bool, False, "--overwrite", help="Replace a run already in --out."),
        opt("quiet", bool, False, "--quiet", "-q", help=QUIET_HELP),
        opt("tracker", str, "none", "--tracker", help=TRACKER_HELP),
        opt("print_config", bool, False, "--print-config",
            help="Print the resolved settings as YAML (accepted by --config) and exit."),
        opt("num_threads_old", int | None, None, "--num-threads", hidden=True,
            help="Old spelling of --threads."),
    ]  # fmt: skip


def _overrides(given: dict[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {k: v for k, v in given.items() if k not in _CONTROL and v is not None}
    threads = pick(given.get("num_threads"), given.get("num_threads_old"), "--num-threads", "--threads")
    if threads is not None:
        overrides["num_threads"] = threads
    if given.get("widths") is not None:
        overrides["widths"] = _widths(given["widths"])
    overrides.pop("label_filter", None)
    if given.get("label_filter"):
        overrides["label_filter"] = _split(given["label_filter"])
    val = given.get("val_split")
    if val is not None and val.lower() == "none":
        overrides["val_split"] = None
    return overrides


def _print_config(config: Path | None, overrides: dict[str, Any]) -> None:
    """The settings the run would start from (before the store fills in the image shape)."""
    cfg = build_config(config, overrides)
    typer.echo(dump_settings(cfg.model_dump(mode="json")), nl=False)


def _train(**given: Any) -> None:
    """Train a VAE, AE or PCA baseline on a tensor store (torchrun-aware)."""
    overrides = _overrides(given)
    if given["print_config"]:
        _print_config(given["config"], overrides)
        return
    from vaedx.training.engine import run_training

    out_dir = run_training(
        given["config"], overrides, resume=given["resume"], overwrite=given["overwrite"],
        quiet=given["quiet"], tracker=given["tracker"],
    )
    if not given["quiet"]:
        typer.echo(f"run written to {out_dir}", err=True)


def _command() -> Any:
    params = [_option(n, f) for n, f in _fields()] + _control()

    def train_command(**given: Any) -> None:
        _train(**given)

    train_command.__doc__ = _train.__doc__
    train_command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    train_command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return train_command


train_command = _command()

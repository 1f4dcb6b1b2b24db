"""The option vocabulary shared by every ``vaedx`` command, and the checks that go with it.

Why one module: ``--out``, ``--store``, ``--model``, ``--threads``, ``--device`` and ``--overwrite`` mean the
same thing in every command, so they are spelled, validated and explained once. Old spellings survive as
hidden options that still work and say once, on stderr, what replaced them. Nothing here imports torch at
module level, so ``vaedx --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer
import yaml

from vaedx.errors import ConfigError

T = TypeVar("T")

DEVICE_HELP = (
    "cpu | cuda | cuda:N | auto (auto: CUDA when present). CUDA inference runs under mixed precision "
    "(VAEDX_AMP=0: float32)."
)
THREADS_HELP = "CPU threads for torch (default: torch's)."
OVERWRITE_HELP = "Replace earlier output in --out."
QUIET_HELP = "No progress bars or progress lines (progress goes to stderr, and only to a terminal)."
JSON_HELP = "Print one JSON object (the summary) on stdout and nothing else there; messages go to stderr."
TRACKER_HELP = "Also log to none | tensorboard (<out>/tensorboard) | mlflow (./mlruns, $MLFLOW_TRACKING_URI)."
QuietOpt = typer.Option(False, "--quiet", "-q", help=QUIET_HELP)
JsonOpt = typer.Option(False, "--json", help=JSON_HELP)


def deprecated(name: str, instead: str) -> None:
    """One line on stderr: the old spelling still works, but scripts should move to the new one."""
    print(f"warning: {name} is deprecated; use {instead}", file=sys.stderr)


def pick(new: T | None, old: T | None, old_name: str, new_name: str) -> T | None:
    """The value of an option given by its new spelling, or else by its hidden old one (with a warning)."""
    if old is None or old == [] or old is False:
        return new
    deprecated(old_name, new_name)
    if new is not None and new != [] and new is not False and new != old:
        raise ConfigError(f"give {new_name} once, not also as {old_name}")
    return old


def required(value: T | None, name: str) -> T:
    """A required option that has a hidden alias cannot be required by typer itself."""
    if value is None:
        raise ConfigError(f"missing option {name}")
    return value


def split_list(values: Iterable[str] | str | None) -> list[str]:
    """Repeated options that also accept commas: --scorer a --scorer b, or --scorer a,b."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [v.strip() for item in items for v in str(item).split(",") if v.strip()]


def refuse_existing(path: Path | None, overwrite: bool) -> None:
    """Earlier output is replaced only when asked: a re-run must not silently destroy results."""
    if path is None or overwrite or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise ConfigError("already exists; pass --overwrite to replace it", path)


def check_device(device: str) -> str:
    """The device text, resolved (``auto``: CUDA when present) and checked: a typo or a CUDA device on a
    machine without one is one clear line. The rule itself lives in :func:`vaedx.models.device.resolve_device`
    so the library and every command resolve ``auto`` alike."""
    from vaedx.models.device import resolve_device

    return str(resolve_device(device))


def print_json(obj: Any) -> None:
    """--json: one JSON object on stdout. NaN and infinity become null (strict JSON parsers refuse them)."""
    import json
    import math

    def plain(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if hasattr(v, "tolist"):  # numpy scalars and arrays
            return plain(v.tolist())
        return v

    typer.echo(json.dumps(plain(obj), allow_nan=False))


def set_threads(threads: int | None) -> None:
    """--threads for commands that run a network in this process."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)


# how a command runs, not what it computes: a shared settings file must not silently replace results
NOT_SETTINGS = frozenset({"config", "print_config", "overwrite", "as_json"})


def read_settings(path: Path | None) -> dict[str, Any]:
    """A YAML (or JSON) mapping of option: value, keys spelled with - or _ alike."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config ({str(e).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of option: value", path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def dump_settings(settings: dict[str, Any]) -> str:
    """YAML that --config reads back to the same settings (paths as text, tuples as lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if hasattr(v, "value") and not isinstance(v, int | float | str | bool):  # enums
            return v.value
        return v

    return yaml.safe_dump(plain(settings), sort_keys=False)


def with_config(
    ctx: typer.Context, config: Path | None, values: dict[str, Any], hidden: Iterable[str] = ()
) -> dict[str, Any]:
    """defaults < --config file < options typed on the command line; unknown keys are an error.

    ``values`` are the command's parameters (``locals()``); ``hidden`` names old spellings that a file may
    not use. File values are converted to the option's type, so a file and a flag mean the same.
    """
    skip = set(hidden) | NOT_SETTINGS
    known = {k for k in values if k not in skip}
    file = read_settings(config)
    unknown = sorted(set(file) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", config
        )
    merged = dict(values)
    for k, v in file.items():
        source = ctx.get_parameter_source(k)  # by name: typer carries its own copy of click's enum
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            continue
        merged[k] = _cast(k, v, type(values[k]) if values[k] is not None else None, config)
    return merged


# settings that name files or folders, whatever the command: a YAML file gives them as text
PATH_SETTINGS = frozenset(
    {"model", "out", "store", "diagnosis", "encoder", "inputs", "anomaly_model", "heatmaps"}
)


def _cast(name: str, value: Any, kind: type | None, config: Path | None) -> Any:
    """A file's value as the option would have parsed it (YAML already gives numbers, booleans, lists)."""
    if value is None:
        return value
    if name in PATH_SETTINGS:
        return [Path(v) for v in value] if isinstance(value, list) else Path(value)
    if kind is None or kind is list or isinstance(value, kind):
        return value
    try:
        if kind is bool:
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} must be {kind.__name__}, not {value!r}", config) from None


def print_config(settings: dict[str, Any], skip: Iterable[str] = ()) -> None:
    """--print-config: the settings a command would run with, as YAML that --config accepts."""
    drop = set(skip) | NOT_SETTINGS
    typer.echo(dump_settings({k: v for k, v in settings.items() if k not in drop}), nl=False)
    raise typer.Exit()

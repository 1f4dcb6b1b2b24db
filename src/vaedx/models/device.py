"""Where torch work runs, decided once: ``auto`` means CUDA when present, and inference on CUDA is autocast.

Why here (the models layer): every layer that runs a network (runs, anomaly, diagnose, serve, report,
export) sits above it, so they all resolve ``--device`` and choose the mixed-precision mode the same way.

Mixed precision is for inference on CUDA only: the CPU path stays float32 and bit-identical with or without
it. bfloat16 is preferred where the GPU supports it (the float32 exponent range, so no loss scaling and no
overflow in logits or variances); float16 otherwise. ``VAEDX_AMP=0`` (or ``off``/``false``/``no``) turns it
off, so a CUDA run computes in float32 when exact agreement matters more than speed. Numerically delicate
reductions (ELBO sums, KL, importance weights) are computed in float32 by the code that does them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from vaedx.errors import ConfigError

AMP_ENV = "VAEDX_AMP"
_OFF = frozenset({"0", "off", "false", "no"})


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``; others are checked.

    A typo or a CUDA device on a machine without one is a :class:`ConfigError` (one line), not a torch
    RuntimeError from deep inside a model.
    """
    if isinstance(spec, torch.device):
        text = str(spec)
    else:
        text = "auto" if spec is None else str(spec).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, not {spec!r}")
    if text == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if text == "auto":
        return torch.device("cuda" if available else "cpu")
    if not available:
        raise ConfigError(f"--device {text}: CUDA is not available on this machine; use --device cpu")
    if ":" in text and int(text.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def amp_enabled(device: str | torch.device) -> bool:
    """Autocast applies on CUDA only, unless ``VAEDX_AMP`` turns it off."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    return kind == "cuda" and os.environ.get(AMP_ENV, "1").strip().lower() not in _OFF


def amp_dtype() -> torch.dtype:
    """bfloat16 where the GPU has it (float32's range: no overflow), else float16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def inference_autocast(device: str | torch.device, enabled: bool = True) -> Iterator[None]:
    """``torch.autocast`` on CUDA when ``enabled`` and not turned off by ``VAEDX_AMP``; nothing elsewhere."""
    if not (enabled and amp_enabled(device)):
        yield
        return
    with torch.autocast("cuda", dtype=amp_dtype()):
        yield


def model_device(model: object) -> torch.device:
    """The device of a torch model's first parameter (CPU for parameter-free or non-torch models)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")

"""Saved networks that are not training runs: the M2 semi-supervised VAE and the supervised CNN.

Both are written the same way, beside the run folder's format: weights in ``model.safetensors`` plus one
JSON file (``semi.json`` / ``supervised.json``) with the architecture, classes, preprocessing, training
recipe and the weights' sha256, never pickled. One writer and one reader keep the two formats from
drifting apart; loading gives a :class:`LoadedNetwork` with the fields the diagnosis code reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import ValidationError

from vaedx.atomic import atomic_write, atomic_write_json
from vaedx.data.preprocess import PreprocessConfig
from vaedx.errors import InputError
from vaedx.models.cnn import SupervisedCNN
from vaedx.models.config import ModelConfig
from vaedx.models.device import resolve_device
from vaedx.models.semi import SemiConfig, SemiVAE
from vaedx.runs import checkpoint as ck

WEIGHTS = "model.safetensors"
SEMI_FORMAT, SEMI_JSON = "vaedx-semi-1", "semi.json"
SUPERVISED_FORMAT, SUPERVISED_JSON = "vaedx-supervised-1", "supervised.json"


def save_net(
    directory: Path, net: torch.nn.Module, fmt: str, files: tuple[str, str], doc: dict[str, Any]
) -> Path:
    """Weights to ``files[1]`` (safetensors), then ``doc`` + format + the weights' sha256 to ``files[0]``,
    each written atomically (the JSON last, so a folder with a JSON always has its weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / files[1]
    atomic_write(weights, lambda p: ck.save_tensors(p, net.state_dict(), {"format": fmt}))
    atomic_write_json(directory / files[0], {"format": fmt, **doc, "sha256": ck.sha256(weights)})
    return directory


def read_net_json(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """The JSON written by :func:`save_net`; another format is an InputError naming the file. ``what`` is
    the thing with its article ("an M2 model"), for the message."""
    doc = ck.read_json(path)
    if doc.get("format") != fmt:
        raise InputError(f"not {what} of format {fmt} (found {doc.get('format')!r})", path)
    return doc


@dataclass
class LoadedNetwork:
    """A saved classifier network with what is needed to feed it and read its probability columns."""

    model: Any  # SemiVAE | SupervisedCNN, in eval mode
    classes: np.ndarray  # store label codes of the probability columns
    label_names: list[str]
    preprocess: PreprocessConfig
    path: Path
    meta: dict[str, Any]

    kind: ClassVar[str] = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.cfg.require_shape()


@dataclass
class LoadedSemi(LoadedNetwork):
    """A saved M2 model; ``config`` holds its full SemiConfig (alpha, classifier width)."""

    config: SemiConfig

    kind: ClassVar[str] = "m2"


@dataclass
class LoadedSupervised(LoadedNetwork):
    """A saved supervised CNN (trained on labels only, or fine-tuned from a VAE's encoder)."""

    kind: ClassVar[str] = "supervised_cnn"


# -------------------------------------------------------------------------------------------------- M2
def save_semi(
    model: SemiVAE, config: SemiConfig, preprocess: PreprocessConfig, directory: str | Path, **meta: Any
) -> Path:
    """``model.safetensors`` (weights) + ``semi.json`` (config, preprocessing, checksum, ``meta``)."""
    doc = {"semi": config.model_dump(mode="json"), "preprocess": preprocess.model_dump(mode="json"), **meta}
    return save_net(Path(directory), model, SEMI_FORMAT, (SEMI_JSON, WEIGHTS), doc)


def load_semi(directory: str | Path, device: str | torch.device = "cpu") -> LoadedSemi:
    """Inverse of :func:`save_semi`; a wrong format, bad config or altered weights name the file."""
    d = Path(directory)
    doc = read_net_json(d / SEMI_JSON, SEMI_FORMAT, "an M2 model")
    try:
        cfg = SemiConfig.model_validate(doc["semi"])
        pre = PreprocessConfig.model_validate(doc["preprocess"])
    except (KeyError, ValidationError) as e:
        raise InputError(f"invalid M2 config ({str(e).splitlines()[0]})", d / SEMI_JSON) from None
    model = SemiVAE(cfg.model, len(cfg.classes), cfg.classifier_hidden)
    ck.load_weights(model, d / WEIGHTS, doc.get("sha256"))
    meta = {k: v for k, v in doc.items() if k not in ("format", "semi", "preprocess")}
    classes = np.asarray(cfg.classes, dtype=np.int64)
    net = model.to(resolve_device(device)).eval()
    return LoadedSemi(net, classes, list(cfg.label_names), pre, d, meta, cfg)


# ---------------------------------------------------------------------------------------- supervised CNN
def save_supervised(
    model: SupervisedCNN,
    classes: np.ndarray,
    label_names: list[str],
    preprocess: PreprocessConfig,
    directory: str | Path,
    **meta: Any,
) -> Path:
    """``model.safetensors`` (weights) + ``supervised.json`` (architecture, classes, preprocessing, hash)."""
    doc = {
        "model": model.cfg.model_dump(mode="json"),
        "classes": [int(c) for c in classes],
        "label_names": [str(n) for n in label_names],
        "preprocess": preprocess.model_dump(mode="json"),
        **meta,
    }
    return save_net(Path(directory), model, SUPERVISED_FORMAT, (SUPERVISED_JSON, WEIGHTS), doc)


def load_supervised(directory: str | Path, device: str | torch.device = "cpu") -> LoadedSupervised:
    """Inverse of :func:`save_supervised`; a wrong format, bad config or altered weights name the file."""
    d = Path(directory)
    doc = read_net_json(d / SUPERVISED_JSON, SUPERVISED_FORMAT, "a supervised CNN")
    try:
        cfg = ModelConfig.model_validate(doc["model"])
        pre = PreprocessConfig.model_validate(doc["preprocess"])
        classes = np.asarray([int(c) for c in doc["classes"]], dtype=np.int64)
        names = [str(n) for n in doc["label_names"]]
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        why = str(e).splitlines()[0]
        raise InputError(f"invalid supervised CNN config ({why})", d / SUPERVISED_JSON) from None
    if len(classes) < 2:
        raise InputError("a supervised CNN needs at least two classes", d / SUPERVISED_JSON)
    model = SupervisedCNN(cfg, len(classes))
    ck.load_weights(model, d / WEIGHTS, doc.get("sha256"))
    known = ("format", "model", "classes", "label_names", "preprocess", "sha256")
    meta = {k: v for k, v in doc.items() if k not in known}
    return LoadedSupervised(model.to(resolve_device(device)).eval(), classes, names, pre, d, meta)

"""Checkpoint folders, written atomically and without pickle.

Layout of one checkpoint folder (``<run>/last`` and ``<run>/best``)::

    model.safetensors      weights (or the PCA arrays, plus pca.json)
    config.json            TrainConfig + ModelConfig + the store's PreprocessConfig, label names, data summary
    state.json             epoch, step, best value, early-stop counters, optimiser/scheduler scalars, sha256s
    optimizer.safetensors  optimiser/scheduler/scaler tensors and the torch RNG state

Why a folder swap: the four files must change together, so a folder is written under a temporary name and
renamed into place (the previous one is kept as ``.<name>.old`` until the rename is done; a run killed in
between is repaired by :func:`recover`). Why no pickle: ``torch.load`` of a pickled file can execute code,
so tensors go to safetensors and everything else to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vaedx.errors import InputError, ModelMismatchError
from vaedx.models.config import with_saved_arch

RUN_FORMAT = "vaedx-run"
RUN_FORMAT_VERSION = 1
MODEL_FILE, CONFIG_FILE, STATE_FILE, OPTIM_FILE = (
    "model.safetensors",
    "config.json",
    "state.json",
    "optimizer.safetensors",
)


# -- pickle-free state dicts -------------------------------------------------------------------------------
def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor in a nested state dict by a reference into ``tensors``; the rest is JSON."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} without pickle")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# -- atomic folder writes ----------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # directories cannot be fsynced on some platforms
        pass
    finally:
        os.close(fd)


def make_readable(path: Path) -> Path:
    """Give a file the usual umask permissions (temporary files are created owner-only), so a run folder
    can be read by the serving process or colleagues like any other output."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover(final: Path) -> None:
    """Finish a folder swap that a kill interrupted: the previous complete folder comes back."""
    old = _old(final)
    if old.exists():
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)


def write_folder(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)``, fsync every file, then swap the folder into place."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove_dead_tmp(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        for f in tmp.iterdir():
            make_readable(f)
            _fsync(f)
        recover(final)
        old = _old(final)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _remove_dead_tmp(final: Path) -> None:
    """Delete the half-written ``.<name>.tmp-<pid>`` folders of writers that were killed: each holds a whole
    set of weights, so a run killed and rerun now and then would otherwise fill the disk unseen."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill there terminates the process, whatever the signal: never ask
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def copy_folder(src: Path, final: Path) -> Path:
    return write_folder(final, lambda tmp: [shutil.copy2(f, tmp / f.name) for f in Path(src).iterdir()])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


# -- reading -----------------------------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file missing from checkpoint", path) from None
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable JSON ({e})", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    return data


def read_run_config(path: Path) -> dict[str, Any]:
    """config.json of a run, refusing other formats and versions with a message naming the file."""
    data = read_json(path)
    if data.get("format") != RUN_FORMAT or data.get("format_version") != RUN_FORMAT_VERSION:
        raise InputError(
            f"not a vaedx run config of format version {RUN_FORMAT_VERSION} "
            f"(found {data.get('format')!r} version {data.get('format_version')!r})",
            path,
        )
    return with_saved_train_arch(data)


def with_saved_train_arch(data: dict[str, Any]) -> dict[str, Any]:
    """A run config whose ``train.model`` lacks ``arch`` (saved before the field existed) gets the arch it
    was trained with, not today's default (see :func:`vaedx.models.config.with_saved_arch`)."""
    train = data.get("train")
    if isinstance(train, dict) and isinstance(train.get("model"), dict):
        return {**data, "train": {**train, "model": with_saved_arch(train["model"])}}
    return data


def load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a checksum mismatch or a damaged file is an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file missing from checkpoint", path)
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise InputError("checksum mismatch: the file was modified or truncated after it was written", path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"damaged or truncated safetensors file ({e})", path) from None


def load_weights(model: torch.nn.Module, path: Path, expected_sha256: str | None = None) -> None:
    """Load safetensors weights into ``model`` (strict); a mismatch names the file."""
    weights = load_tensors(path, expected_sha256)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        msg = str(e).splitlines()[0]
        raise ModelMismatchError(f"weights do not fit the configured model ({msg})", path) from None


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint folder from a run folder (best/, else last/) or a checkpoint folder itself."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such run or checkpoint folder", p)
    if (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file():
        return p
    order = [prefer, "last" if prefer == "best" else "best"]
    for name in order:
        recover(p / name)
    for name in order:
        if (p / name / MODEL_FILE).is_file():
            return p / name
    raise InputError("no checkpoint found (expected best/ or last/ with model.safetensors)", p)

"""From uploaded bytes to a prediction: read safely, preprocess like training, score, render.

Why here and not in the web layer: the same code serves the API, the batch endpoint and the load benchmark,
and can be tested without HTTP. Uploads are written under a private directory (mode 0700) with a random
name - the client's file name never touches the disk, logs or responses, because file names of medical
images often carry patient names.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vaedx.anomaly.registry import available_scorers, build_scorer
from vaedx.anomaly.scoring import run_scorers
from vaedx.errors import ConfigError, InputError, ModelMismatchError, VaedxError
from vaedx.io import detect_format, read_any
from vaedx.runs.inputs import ModelInputs
from vaedx.runs.loaded import LoadedModel, load_model
from vaedx.serve import render
from vaedx.serve.calibration import Calibration, DiagnosisAdapter, resolve_scoring

log = logging.getLogger("vaedx.serve")
CAVEAT = (
    "Research tool, not a medical device: do not use it for clinical decisions. Scores depend on the "
    "training data and may be wrong for images unlike it."
)
SUPPORTED = "PNG, JPEG, TIFF, DICOM or NIfTI"
CHUNK = 1 << 16


class ServeError(Exception):
    """An upload problem with the HTTP status it maps to; ``message`` never contains a path or file name."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UploadOptions:
    slice_index: int | None = None
    window: str | None = None


def save_upload(stream: BinaryIO, folder: Path, limit: int) -> Path:
    """Copy an upload to ``folder/<random>`` in chunks, stopping with 413 as soon as it exceeds ``limit``."""
    path = folder / secrets.token_hex(16)
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise ServeError(413, f"upload larger than the limit of {limit} bytes")
            out.write(chunk)
    if size == 0:
        raise ServeError(422, "empty upload")
    return path


def _window(value: str | None) -> str | tuple[float, float] | None:
    """'lung', 'auto' or 'centre,width' (e.g. '40,400')."""
    if value is None or not value.strip():
        return None
    parts = value.split(",")
    if len(parts) == 2:
        try:
            return float(parts[0]), float(parts[1])
        except ValueError:
            raise ServeError(422, "window must be a name (e.g. lung) or 'centre,width'") from None
    return value.strip()


def read_upload(path: Path, opts: UploadOptions, fold_rgb: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode the upload by content -> (C, H, W) float32 and non-identifying facts about it.

    ``fold_rgb``: read colour rasters as grey (see ``Predictor.fold_rgb``).
    """
    try:
        fmt = detect_format(path)
    except InputError:
        raise ServeError(415, f"unsupported file type: expected {SUPPORTED} (checked by content)") from None
    if fmt == "npz":
        raise ServeError(415, f"npz archives are data sets, not images: upload one {SUPPORTED} image")
    if fmt == "nifti":  # nibabel picks its reader by extension
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        path = path.rename(path.with_name(path.name + (".nii.gz" if gz else ".nii")))
    reader_opts: dict[str, Any] = {}
    if fmt in ("png", "jpeg", "tiff") and fold_rgb:
        reader_opts["rgb"] = "grey"  # an RGB export of a grey X-ray is common; the model needs one channel
    if fmt == "dicom" and opts.window is not None:
        reader_opts["window"] = _window(opts.window)
    try:
        images = read_any(path, **reader_opts)
    except (InputError, ConfigError) as e:
        raise ServeError(422, f"unreadable {fmt.upper()} image: {e.problem}") from None
    if not images:
        raise ServeError(422, f"the {fmt.upper()} file holds no image")
    n = len(images)
    idx = opts.slice_index if opts.slice_index is not None else (n // 2 if fmt == "nifti" else 0)
    if not -n <= idx < n:
        raise ServeError(422, f"slice_index {idx} out of range: the file has {n} slice(s)/frame(s)")
    img = images[idx]
    facts = {
        "format": fmt,
        "modality": img.meta.get("modality"),
        "original_size": list(img.array.shape[1:]),
        "original_channels": int(img.array.shape[0]),
        "n_slices": n,
        "slice_index": idx % n,
        "window": img.meta.get("window") if isinstance(img.meta.get("window"), str | list | None) else None,
    }
    return img.array, facts


class Predictor:
    """A model loaded once, with its scorer, calibration and optional diagnosis; predict() is thread-safe.

    Why no lock: requests share only what they read - the model in eval mode (loaded that way, and the
    scorers' eval-mode guard then only ever sets it to eval again), its weights (the gradient and
    restoration scorers differentiate w.r.t. their own copy of the input with ``torch.autograd.grad``,
    never ``.backward()``, so no ``.grad`` is written), the calibration and the preprocessing. Scorers are
    built per request, each upload has its own private folder, and the one request-time cache (the volume
    cache) has its own lock. How many requests run at once is :mod:`vaedx.serve.admission`'s business.
    """

    def __init__(
        self,
        model_dir: str | Path,
        diagnosis_dir: str | Path | None = None,
        scorer: str | None = None,
        device: str = "cpu",
    ):
        self.model_dir = Path(model_dir)
        self.loaded: LoadedModel = load_model(self.model_dir, device=device)
        self.loaded.require_decoder()  # the anomaly model; a fine-tuned encoder belongs to --diagnosis
        self.run_dir = self.loaded.path.parent if self.loaded.path != self.model_dir else self.model_dir
        offered = available_scorers(self.loaded.model)
        # the scorer, options, post-processing and thresholds exactly as `vaedx detect` would apply them
        self.calibration: Calibration = resolve_scoring(self.loaded.path, offered, scorer)
        self.scorer_name = self.calibration.scorer
        # the picture of the reconstruction comes from the plain model, whatever the scorer; it costs one more
        # forward pass per request, because run_scorers (shared with detect) returns maps and scores only
        self.recon_scorer = (
            build_scorer("residual", self.loaded.model, keep_reconstructions=True) if "residual" in offered
            else None
        )  # fmt: skip
        self.diagnosis: DiagnosisAdapter | None = None
        self.diagnosis_problem: str | None = None
        if diagnosis_dir is not None:
            self.diagnosis, self.diagnosis_problem = DiagnosisAdapter.load(Path(diagnosis_dir), self.loaded)
            if self.diagnosis_problem:
                log.warning("diagnosis not attached: %s", self.diagnosis_problem)
        pre = self.loaded.preprocess
        c = self.loaded.image_shape[0]
        # a model trained without a fixed size still needs one: resize uploads to its training size
        self.inputs = ModelInputs.for_model(self.loaded, fill_size=True)
        self.preprocess = self.inputs.preprocess
        # a one-channel model that does not pick or fold channels itself gets RGB uploads folded to grey; one
        # that picks a channel (LGG FLAIR: channels [1] of an RGB PNG) must see the colour image as trained
        self.fold_rgb = c == 1 and pre.channels is None and not pre.grey
        self.tmp_root = Path(tempfile.mkdtemp(prefix="vaedx-serve-"))  # 0700, removed by close()

    def close(self) -> None:
        shutil.rmtree(self.tmp_root, ignore_errors=True)

    def private_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.tmp_root))

    # -- model facts ------------------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        meta = self.loaded.meta
        data = {k: v for k, v in meta.get("data", {}).items() if k != "store"}  # no server paths
        cal = self.calibration
        return {
            "kind": self.loaded.kind,
            "image_shape": list(self.loaded.image_shape),
            "model": self.loaded.config.model.model_dump(mode="json"),
            "preprocess": self.loaded.preprocess.model_dump(mode="json"),
            "label_names": self.loaded.label_names,
            "scorer": self.scorer_name,
            "calibration": {
                "image_threshold": cal.image_threshold,
                "pixel_threshold": cal.pixel_threshold,
                "options": cal.options,
                "postprocess": cal.post.as_dict(),
                "calibrated_scorers": cal.calibrated_scorers,
                "details": cal.details,
                "problem": cal.problem,
            },
            "diagnosis": {
                "attached": self.diagnosis is not None,
                "problem": self.diagnosis_problem,
                **(self.diagnosis.info if self.diagnosis else {}),
            },
            "training_data": data,
            "checkpoint": {k: v for k, v in self.loaded.state.items() if isinstance(v, int | float | bool)},
            "metrics": read_metrics(self.run_dir / "metrics.csv"),
            "versions": {k: meta.get(k) for k in ("vaedx_version", "torch_version")},
            "caveat": CAVEAT,
        }

    # -- prediction -------------------------------------------------------------------------------------
    def prepare(self, array: np.ndarray) -> np.ndarray:
        c = self.loaded.image_shape[0]
        try:
            x = self.inputs.prepare(array)
        except (ConfigError, InputError) as e:
            raise ServeError(
                422, f"cannot preprocess the image like the training data: {e.problem}"
            ) from None
        if x.shape[0] != c:
            raise ServeError(
                422, f"the model expects {c}-channel images but this one has {x.shape[0]} channel(s)"
            )
        why = self.inputs.mismatch(x)
        if why is not None:
            raise ServeError(422, why)
        if not np.isfinite(x).all():
            raise ServeError(422, "the image holds non-finite pixel values")
        return x

    def predict_array(self, array: np.ndarray, facts: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        x = self.prepare(array)
        cal = self.calibration
        opts = {cal.scorer: cal.options}
        try:
            scored = run_scorers(self.loaded.model, x[None], [cal.scorer], opts, cal.post)
            res = self.recon_scorer.score(x[None]) if self.recon_scorer is not None else None
            diagnosis = self.diagnosis.predict(x[None]) if self.diagnosis is not None else None
        except (ModelMismatchError, InputError) as e:
            raise ServeError(422, e.problem) from None
        amap, score = scored.maps[cal.scorer][0], float(scored.scores[cal.scorer][0])
        recon = res.extra["reconstruction"][0] if res is not None else x
        thr = cal.image_threshold
        out = {
            "scorer": self.scorer_name,
            "score": score,
            "threshold": thr,
            "flag": None if thr is None else bool(score > thr),
            "diagnosis": diagnosis,
            "image": {
                **facts, "model_size": list(x.shape[1:]), "channels": int(x.shape[0]), **self._mapping(array)
            },  # fmt: skip
            **self._pictures(x, recon, amap),
            "caveat": CAVEAT,
        }
        ms = (time.perf_counter() - start) * 1000
        # only non-identifying facts are logged: format, sizes, score, time
        log.info("predict format=%s size=%s score=%.6g ms=%.1f", facts.get("format"),
                 "x".join(map(str, facts.get("original_size", []))), score, ms)  # fmt: skip
        return out

    def _mapping(self, array: np.ndarray) -> dict[str, str]:
        """``channel_mapping`` when a one-channel upload stands for the model's one channel (else empty)."""
        note = self.inputs.mapping_note(array.shape[0] if array.ndim == 3 else 1)
        return {"channel_mapping": note} if note else {}

    def score_images(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(maps (N, H, W), scores (N,)) of model inputs with the calibrated scorer, options and
        post-processing (``run_scorers``, as ``vaedx detect``); safe to call from several threads."""
        cal = self.calibration
        opts = {cal.scorer: cal.options}
        try:
            scored = run_scorers(self.loaded.model, images, [cal.scorer], opts, cal.post)
        except (ModelMismatchError, InputError) as e:
            raise ServeError(422, e.problem) from None
        return scored.maps[cal.scorer], scored.scores[cal.scorer]

    def _pictures(self, x: np.ndarray, recon: np.ndarray, amap: np.ndarray) -> dict[str, Any]:
        pix = self.calibration.pixel_threshold
        if pix is not None:
            level, source = pix, "calibrated pixel threshold"
        else:
            level, source = float(np.percentile(amap, 99)), "99th percentile of this map (not calibrated)"
        vmax = 2 * pix if pix is not None and pix > 0 else float(amap.max())
        region = amap > level
        shown = render.display_range(x)
        base = render.display_image(x, shown)
        heat = render.heatmap_rgba(amap, vmax)
        edge = render.contour_layer(region)
        composite = render.overlay(render.overlay(base, heat), edge, opacity=1.0)
        return {
            "input_png": render.to_png_b64(base),
            "reconstruction_png": render.to_png_b64(render.display_image(recon, shown)),
            "heatmap_png": render.to_png_b64(heat),
            "overlay_png": render.to_png_b64(composite),
            "heatmap_scale": {"min": 0.0, "max": vmax},
            "contour": {
                "level": level,
                "source": source,
                "n_pixels": int(region.sum()),
                "fraction": float(region.mean()),
                "regions": render.regions(region),
                "png": render.to_png_b64(edge),
            },
        }

    def predict_upload(self, stream: BinaryIO, opts: UploadOptions, limit: int) -> dict[str, Any]:
        folder = self.private_dir()
        try:
            path = save_upload(stream, folder, limit)
            array, facts = read_upload(path, opts, self.fold_rgb)
            return self.predict_array(array, facts)
        except VaedxError as e:  # anything the library raises about the data is the client's problem
            raise ServeError(422, e.problem) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def read_metrics(path: Path) -> dict[str, Any] | None:
    """Last and best (lowest val_loss) rows of metrics.csv as numbers; None when there is no log."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    parsed = [{k: _num(v) for k, v in r.items() if k} for r in rows]
    if not parsed:
        return None
    with_val = [r for r in parsed if isinstance(r.get("val_loss"), float)]
    best = min(with_val, key=lambda r: r["val_loss"]) if with_val else None
    return {"epochs": len(parsed), "last": parsed[-1], "best": best}


def _num(v: str | None) -> float | str | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v

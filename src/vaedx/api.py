"""The notebook API: the functions behind the commands, for notebooks and scripts.

``vaedx.train(store, out, **options)``, ``vaedx.load_model(path)``,
``vaedx.detect(model, out, inputs=[...])``, and for volumes ``vaedx.read_volume(path)`` (NIfTI,
DICOM series folder or zip, numbered slices),
``vaedx.prepare_volume(volume, preprocess)`` (model inputs and the way back to the input's space) and
``vaedx.volume_metrics(maps, truth, threshold)`` (per-volume Dice, voxel AUPRC, lesion-wise detection).
``vaedx.load_model(run)`` returns a :class:`Model` that reads like the CLI: ``score`` (what ``vaedx detect``
computes, at the run's calibrated thresholds), ``encode``, ``reconstruct``, ``sample``, ``interpolate`` and
``preprocess``; ``vaedx.fit_diagnosis`` and ``vaedx.finetune`` are ``vaedx diagnose fit`` and ``finetune``,
``vaedx.load_diagnosis(folder).predict(x)`` is ``vaedx diagnose predict``;
``vaedx.prepare`` and ``vaedx.api.evaluate`` mirror ``vaedx data prepare`` and ``vaedx evaluate``.
A facade over the layers below it, beside the CLI at the top: nothing inside vaedx imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.calibration import CalibrationFile
from vaedx.anomaly.detect import detect as _detect
from vaedx.anomaly.scoring import PostSpec, run_scorers
from vaedx.data.volume_prep import PreparedVolume, prepare_volume
from vaedx.io.volume import Volume
from vaedx.io.volume_source import read_volume
from vaedx.metrics.volume import volume_metrics
from vaedx.runs.inputs import ModelInputs
from vaedx.runs.loaded import LoadedModel
from vaedx.runs.loaded import load_model as _load_run
from vaedx.training.engine import train

__all__ = [
    "Diagnosis",
    "LoadedModel",
    "Model",
    "Scores",
    "PreparedVolume",
    "Volume",
    "detect",
    "evaluate",
    "finetune",
    "fit_diagnosis",
    "load_diagnosis",
    "load_model",
    "prepare",
    "prepare_volume",
    "read_volume",
    "train",
    "volume_metrics",
]

Images = Any  # numpy array (H,W)/(C,H,W)/(N,C,H,W), torch tensor, a file path, or a list of these


def _as_batch(inputs: ModelInputs, x: Images, prepared: bool = False) -> np.ndarray:
    """(N, C, H, W) float32 prepared like the model's training data.

    Paths go through the same reader as ``vaedx detect --input`` (any format vaedx reads); arrays and
    tensors are raw images and are preprocessed here, one by one, exactly as files would be.
    """
    items = list(x) if isinstance(x, list | tuple) else [x]
    out: list[np.ndarray] = []
    for item in items:
        if isinstance(item, str | Path):
            out.extend(inputs.files([item])[0])
            continue
        arr = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
        frames = arr if arr.ndim == 4 else [arr]
        for f in frames:
            f = np.asarray(f, dtype=np.float32)
            if prepared:  # rows of a store prepared like the model's data: checked, not preprocessed again
                why = inputs.mismatch(f if f.ndim == 3 else f[None])
                if why is not None:
                    from vaedx.errors import ModelMismatchError

                    raise ModelMismatchError(why, "array")
                out.append(f if f.ndim == 3 else f[None])
            else:
                out.append(inputs.array(f, "array"))
    shapes = {a.shape for a in out}
    if not out or len(shapes) > 1:
        from vaedx.errors import InputError

        raise InputError(f"images give {'no' if not out else 'different'} shapes: {sorted(shapes)}")
    return np.stack(out).astype(np.float32)


@dataclass
class Scores:
    """What ``vaedx detect`` computes for each image and scorer: image score, anomaly map and flags.

    ``flags[name]`` is score > the run's calibrated image threshold and ``masks[name]`` map > its pixel
    threshold; each is None when thresholds.json has no entry for that scorer and request (as in detect).
    """

    scores: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]
    flags: dict[str, np.ndarray | None]
    masks: dict[str, np.ndarray | None]
    thresholds: dict[str, dict[str, Any] | None]
    images: np.ndarray


class Model:
    """A trained run for notebooks; every other attribute (``config``, ``state``, ``path``...) is the
    underlying :class:`LoadedModel`'s, so code written against ``LoadedModel`` keeps working."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.inputs = ModelInputs.for_model(loaded, fill_size=True)

    def __getattr__(self, name: str) -> Any:
        if name == "loaded":
            raise AttributeError(name)
        return getattr(self.loaded, name)

    def __repr__(self) -> str:
        return f"Model({self.loaded.kind}, {self.loaded.path})"

    def to_inputs(self, x: Images, prepared: bool = False) -> np.ndarray:
        """Images as the model takes them, (N, C, H, W) float32: read, preprocessed like the training data
        (the run's PreprocessConfig), checked against the model's shape. ``prepared``: arrays are store
        rows, already preprocessed, so they are only checked."""
        return _as_batch(self.inputs, x, prepared)

    def score(
        self,
        x: Images,
        scorers: Sequence[str] = ("residual",),
        options: dict[str, dict[str, Any]] | None = None,
        postprocess: str | None = None,
        target_specificity: float | None = None,
        prepared: bool = False,
    ) -> Scores:
        """Image scores, anomaly maps and flags at the run's calibrated thresholds, as ``vaedx detect``.

        Scoring is ``run_scorers`` (the function detect calls) on ``to_inputs(x)``; the thresholds are the
        run folder's thresholds.json entries that match the scorer, options and post-processing (calibrate
        with ``vaedx.detect(..., save_calibration=True)`` or ``vaedx detect --save-calibration``).
        """
        self.loaded.require_decoder()
        opts, post = options or {}, PostSpec.parse(postprocess)
        images = self.to_inputs(x, prepared)
        scored = run_scorers(self.loaded.model, images, list(scorers), opts, post)
        cal = CalibrationFile.load(self.loaded.path)
        found = {s: cal.lookup(s, opts.get(s, {}), post, target_specificity) for s in scorers}
        flags: dict[str, np.ndarray | None] = {}
        masks: dict[str, np.ndarray | None] = {}
        for s, t in found.items():
            img_t = None if t is None else t.image_threshold
            pix_t = None if t is None else t.pixel_threshold
            flags[s] = None if img_t is None else scored.scores[s] > img_t
            masks[s] = None if pix_t is None else scored.maps[s] > pix_t
        thr = {s: (t.model_dump() if t is not None else None) for s, t in found.items()}
        return Scores(dict(scored.scores), dict(scored.maps), flags, masks, thr, images)

    def _torch(self, x: Images) -> Any:
        import torch

        if self.loaded.kind == "pca":
            return self.to_inputs(x)
        return torch.from_numpy(self.to_inputs(x)).to(next(self.loaded.model.parameters()).device)

    def encode(self, x: Images) -> tuple[np.ndarray, np.ndarray | None]:
        """(mu, logvar) of the posterior per image; logvar None for an AE or PCA."""
        import torch

        with torch.no_grad():
            mu, logvar = self.loaded.model.encode(self._torch(x))
        return _np(mu), (None if logvar is None else _np(logvar))

    def reconstruct(self, x: Images) -> np.ndarray:
        """decode(mu) per image, (N, C, H, W): the reconstruction the residual scorer compares with."""
        import torch

        with torch.no_grad():
            return _np(self.loaded.model.reconstruct(self._torch(x)))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` images decoded from z ~ N(0, I) with a seeded generator (VAEs only)."""
        import torch

        if not hasattr(self.loaded.model, "sample"):
            from vaedx.errors import ConfigError

            raise ConfigError(f"a {self.loaded.kind} model has no prior to sample from; use a VAE run")
        return _np(self.loaded.model.sample(n, torch.Generator().manual_seed(seed)))

    def interpolate(self, a: Images, b: Images, steps: int = 8) -> np.ndarray:
        """``steps`` images decoded between the posterior means of images ``a`` and ``b``."""
        import torch

        mu_a, mu_b = self.encode(a)[0][:1], self.encode(b)[0][:1]
        w = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        z = torch.from_numpy((1 - w) * mu_a + w * mu_b)
        with torch.no_grad():
            if self.loaded.kind == "pca":
                return _np(self.loaded.model.decode(z.numpy()))
            return _np(self.loaded.model.decode(z.to(next(self.loaded.model.parameters()).device)))


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """A run folder (its best/ checkpoint, else last/) or one checkpoint folder, as a :class:`Model`."""
    return Model(_load_run(path, device=device))


class Diagnosis:
    """A fitted diagnosis folder with its encoder, for ``predict`` as ``vaedx diagnose predict``."""

    def __init__(self, folder: str | Path, encoder: str | Path | None = None, device: str = "cpu"):
        from vaedx.diagnose.encoder import load_encoder
        from vaedx.diagnose.model import DiagnosisModel

        self.path = Path(folder)
        self.diagnosis = DiagnosisModel.load(folder)
        self.encoder = load_encoder(self.diagnosis, encoder, device=device)
        self.inputs = ModelInputs.for_model(self.encoder)

    def encoder_inputs(self, x: Images) -> np.ndarray:
        """Images as the encoder takes them (read and preprocessed like its training data)."""
        return _as_batch(self.inputs, x)

    @property
    def class_names(self) -> list[str]:
        return list(self.diagnosis.class_names)

    def predict(self, x: Images, neighbours: int = 5) -> dict[str, Any]:
        """``probabilities`` (N, classes), ``labels`` (predicted class names) and ``rows`` (what ``vaedx
        diagnose predict --out x.json`` writes: class, probability, nearest training images)."""
        from vaedx.diagnose.predict import diagnose_images

        images = self.encoder_inputs(x)
        rows = diagnose_images(self.diagnosis, self.encoder, images, k=neighbours)
        proba = np.array([[r["probabilities"][n] for n in self.class_names] for r in rows])
        return {"probabilities": proba, "labels": [r["class"] for r in rows], "rows": rows}


def load_diagnosis(folder: str | Path, encoder: str | Path | None = None, device: str = "cpu") -> Diagnosis:
    """A ``vaedx diagnose fit`` folder; ``encoder``: the encoder run when it has moved since fitting."""
    return Diagnosis(folder, encoder, device)


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """As the commands do: a folder with earlier results is replaced only with ``overwrite=True``."""
    if overwrite or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    from vaedx.errors import ConfigError

    raise ConfigError("already exists; pass overwrite=True to replace it", out)


def _run(model: str | Path | Model | LoadedModel) -> str | Path | LoadedModel:
    """A run folder or loaded run as the diagnosis functions take it (a notebook :class:`Model` unwrapped)."""
    return model.loaded if isinstance(model, Model) else model


def fit_diagnosis(
    model: str | Path | Model | LoadedModel,
    store: str | Path,
    out: str | Path,
    *,
    labelled_fraction: float = 1.0,
    calibration: str = "sigmoid",
    threshold: str | float = "youden",
    classifiers: Sequence[str] = ("logreg", "knn", "mlp", "hgb"),
    features: Sequence[str] = ("mu", "logvar"),
    scorer: Sequence[str] = (),
    seed: int = 0,
    train_split: str = "train",
    val_split: str = "val",
    n_splits: int = 5,
    tta: str = "auto",
    device: str = "cpu",
    threads: int | None = None,
    overwrite: bool = False,
) -> Diagnosis:
    """``vaedx diagnose fit --model MODEL --store STORE --out OUT``: returns the written folder, loaded.

    Same options and defaults as the command: the ``classifiers`` are compared by ``n_splits``-fold
    cross-validation on the (``labelled_fraction`` of the) training labels, the winner is calibrated and
    its threshold chosen on ``val_split``. Returning the folder loaded back, rather than the fitted object,
    means the notebook predicts with exactly what ``vaedx diagnose predict`` and ``vaedx serve`` would read;
    ``Diagnosis.diagnosis.metrics`` and ``.meta["chosen"]`` hold what the command prints. ``threads``
    limits torch's threads during the fit only, so the notebook's own setting comes back afterwards.
    ``tta`` is the test-time augmentation of the latents (``auto``: kept only where validation gains).
    """
    import torch

    from vaedx.diagnose.encoder import as_loaded
    from vaedx.diagnose.fit import fit_diagnosis as _fit
    from vaedx.errors import ConfigError

    out = Path(out)
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    _refuse_existing(out, overwrite)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or before)
        loaded = as_loaded(_run(model), device=device)
        _fit(
            loaded, store, out=out, labelled_fraction=labelled_fraction, seed=seed, calibration=calibration,
            threshold=threshold, candidates=list(classifiers), include=list(features), scorers=list(scorer),
            train_split=train_split, val_split=val_split, n_splits=n_splits, tta=tta,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return Diagnosis(out, device=device)


def finetune(
    model: str | Path | Model | LoadedModel,
    store: str | Path,
    out: str | Path,
    *,
    labelled_fraction: float = 1.0,
    recipe: str = "auto",
    budget: float = 10.0,
    epochs: int = 20,
    min_steps: int = 300,
    lr: float = 2e-3,
    augment: bool = True,
    seed: int = 0,
    init: str = "vae",
    tracker: str = "none",
    device: str = "cpu",
    threads: int | None = None,
    overwrite: bool = False,
) -> Model:
    """``vaedx diagnose finetune``: fine-tune a VAE's encoder on the labels; returns the new run, loaded.

    ``recipe="auto"`` searches learning rate, augmentation, weight decay, class weights and a frozen
    encoder on validation within ``budget`` minutes (``epochs``: the most per trial); ``"fixed"`` is the
    one-cycle recipe with ``lr``, ``augment`` and ``epochs``. Then, as after the command,
    ``vaedx.fit_diagnosis(run, store, out, features=["mu"])`` fits the classifier on its latents.
    ``init="random"`` trains the same architecture from random weights: the supervised CNN baseline.
    """
    from vaedx.diagnose.finetune import finetune_encoder
    from vaedx.diagnose.recipe import auto_finetune
    from vaedx.errors import ConfigError

    if recipe not in ("auto", "fixed"):
        raise ConfigError(f"recipe must be auto or fixed, got {recipe!r}")
    common: dict[str, Any] = {
        "labelled_fraction": labelled_fraction, "seed": seed, "min_steps": min_steps, "overwrite": overwrite,
        "num_threads": threads, "device": device, "tracker": tracker, "init": init,
    }  # fmt: skip
    if recipe == "auto":
        tuned = auto_finetune(_run(model), store, out, budget_minutes=budget, max_epochs=epochs, **common)
    else:
        tuned = finetune_encoder(_run(model), store, out, epochs=epochs, lr=lr, augment=augment, **common)
    return Model(tuned)


def detect(
    model: str | Path | Model | LoadedModel,
    out: str | Path,
    *,
    store: str | Path | None = None,
    split: str | None = "test",
    inputs: Sequence[str | Path] | None = None,
    scorers: Sequence[str] | None = None,
    postprocess: str | None = None,
    tune_budget: float = 300.0,
    save_calibration: bool = False,
    device: str = "cpu",
    quiet: bool = False,
    **options: Any,
) -> Path:
    """``vaedx detect``: score a store split (``store``, ``split``) or files (``inputs``); returns ``out``.

    As with the command, ``scorers=None`` chooses the scorer and, unless ``postprocess`` is given, the
    post-processing on the store's val split within ``tune_budget`` seconds (recorded in detect.json as
    ``selection``); name ``scorers`` (e.g. ``["residual", "ssim"]``) to score with those instead.
    Further keywords (``options``, ``max_overlays``, ``target_specificity``, ``normal_label``,
    ``dicom_seg``, ``tune_restoration``) are those of :func:`vaedx.anomaly.detect.detect`. Read the
    folder back with :class:`vaedx.anomaly.output.DetectOutput`.
    """
    path = model if isinstance(model, (str, Path)) else model.path  # a Model or LoadedModel
    return _detect(
        path, out, store=store, split=split, inputs=inputs, scorers=scorers, postprocess=postprocess,
        selection_budget=tune_budget, save_calibration=save_calibration, device=device, quiet=quiet,
        **options,
    )  # fmt: skip


def prepare(
    source: str | Path,
    out: str | Path,
    *,
    size: int | None = None,
    config: str | Path | None = None,
    label_names: Sequence[str] | None = None,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
    on_error: str = "fail",
    **preprocess: Any,
) -> Any:
    """``vaedx data prepare SOURCE --out OUT``: returns the TensorStore. ``preprocess`` takes the other
    PreprocessConfig fields by name (``normalize='minmax'``, ``channels=[1]``...)."""
    from vaedx.data.prepare import prepare as _prepare
    from vaedx.data.prepare import prepare_config
    from vaedx.data.splits import DEFAULT_FRACTIONS

    cfg = prepare_config(config, size=size, **preprocess)
    return _prepare(
        source, out, cfg, on_error=on_error, label_names=label_names,  # type: ignore[arg-type]
        fractions=fractions or DEFAULT_FRACTIONS, seed=seed,
    )  # fmt: skip


def evaluate(
    pred: str | Path | None = None,
    store: str | Path | None = None,
    *,
    diagnosis: str | Path | None = None,
    split: str = "test",
    n_boot: int = 1000,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """``vaedx evaluate anomaly --pred PRED --store STORE`` (writes <pred>/evaluation.json), or with
    ``diagnosis`` ``vaedx evaluate diagnosis`` (writes <diagnosis>/evaluation_<split>.json); returns it."""
    from vaedx.atomic import atomic_write_json
    from vaedx.errors import ConfigError
    from vaedx.evaluate.card import record_anomaly_evaluation, record_diagnosis_evaluation

    if store is None or (pred is None) == (diagnosis is None):
        raise ConfigError("give store and either pred (a detect folder) or diagnosis (a diagnose fit folder)")
    if pred is not None:
        from vaedx.evaluate.anomaly import evaluate_anomaly, to_json

        result = to_json(evaluate_anomaly(pred, store, n_boot=n_boot, seed=seed))
        target = atomic_write_json(Path(out) if out else Path(pred) / "evaluation.json", result)
        record_anomaly_evaluation(pred, target, result)  # test figures into the model's MODEL_CARD.md
        return result
    from vaedx.data.store import TensorStore
    from vaedx.diagnose.fit import split_probabilities
    from vaedx.evaluate.diagnosis import evaluate_probabilities

    d = Diagnosis(diagnosis)  # type: ignore[arg-type]
    diag, y, proba, rows = split_probabilities(d.diagnosis, d.encoder, store, split)
    groups = TensorStore.open(store).patient_ids[rows]
    result = evaluate_probabilities(diag, y, proba, groups=groups, n_boot=n_boot, seed=seed)
    result["split"] = split
    target = atomic_write_json(Path(out) if out else Path(diagnosis) / f"evaluation_{split}.json", result)  # type: ignore[arg-type]
    record_diagnosis_evaluation(diagnosis, target, result)  # type: ignore[arg-type]
    return result

"""Entry point of a training run: config, output folder, resume, then the torch loop or the PCA fit.

Why separate from the loop: everything here happens once per run (checking that the output folder and the
store make sense, resolving what --resume may change, writing config.json), so the loop stays about epochs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.atomic import atomic_write_json
from vaedx.data.augment import Transform
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, ModelMismatchError
from vaedx.models.config import KIND_NAMES, ModelConfig
from vaedx.runs import checkpoint as ck
from vaedx.runs.config import RESUMABLE_FIELDS, TrainConfig, build_config, merge, read_yaml
from vaedx.runs.folder import THRESHOLDS_FILE
from vaedx.runs.loaded import LoadedModel, load_model
from vaedx.runs.model_card import CARD_FILE, EVALUATIONS_FILE, store_facts, write_run_card
from vaedx.runs.presets import PRESETS, noise_resolution_for
from vaedx.training.batches import select_indices
from vaedx.training.distributed import Runtime, setup_runtime
from vaedx.training.loop import BatchHook, TorchTrainer
from vaedx.training.pca import fit_pca
from vaedx.training.progress import MetricsLog, Reporter, attach_log_file, log
from vaedx.training.tracker import check_tracker, open_tracker

RUN_OUTPUTS = ("last", "best", ".last.old", ".best.old", "metrics.csv", "train.log", "tensorboard")
RUN_OUTPUTS += (CARD_FILE, EVALUATIONS_FILE)  # an old model's card and test figures go with it
RUN_OUTPUTS += (THRESHOLDS_FILE,)  # and its saved calibration: a new model's scores need their own thresholds


def run_training(
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    on_batch: BatchHook | None = None,
    transform: Transform | None = None,
    tracker: str = "none",
) -> Path:
    """Train (or resume) a run; returns the run folder. ``on_batch(epoch, store_rows)`` sees every batch.

    ``transform``: your own augmentation (a MONAI/torchio transform or any callable) applied to each
    training image, see :func:`vaedx.data.augment.apply_transform`; it is not saved with the run, only its
    ``repr`` in config.json, so pass it again when resuming.
    """
    overrides = dict(overrides or {})
    check_tracker(tracker)  # ``tracker``: also log to tensorboard or mlflow (vaedx.training.tracker)
    cfg = build_config(config_path, overrides)
    if cfg.out is None:
        raise ConfigError("an output folder (--out) is needed")
    out = Path(cfg.out)
    if resume:  # the saved run supplies everything not given again, including the store
        cfg = _resume_config(out, config_path, overrides)
    if cfg.store is None:
        raise ConfigError("a tensor store (--store) is needed")
    rt = setup_runtime(cfg.device)
    threads, determ = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    handler, reporter, metrics, ok = None, Reporter(rt.is_main, quiet), None, False
    try:
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if rt.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
            # subnormal floats (e.g. from near-zero image backgrounds) made early CPU steps ~15x slower
            torch.set_flush_denormal(True)
        store = TensorStore.open(cfg.store)
        cfg = _fill_shape(cfg, store)
        train_idx = select_indices(store, cfg.train_split, cfg.label_filter, cfg.max_images, cfg.seed)
        val_idx = select_indices(store, cfg.val_split, cfg.label_filter, cfg.max_images, cfg.seed + 1)
        if len(train_idx) == 0:
            raise ConfigError(
                f"no training images in split {cfg.train_split!r} with labels {cfg.label_filter or 'any'}",
                store.root,
            )
        _check_out_dir(out, resume, overwrite)
        rt.barrier()  # every rank has checked the folder before rank 0 changes it
        meta = run_metadata(cfg, store, train_idx, val_idx, rt)
        if transform is not None:
            if cfg.model.kind == "pca":
                raise ConfigError("a transform applies to vae/ae training; PCA is fitted on stored images")
            meta["transform"] = repr(transform)[:2000]
        if resume:
            saved = ck.read_run_config(out / "last" / ck.CONFIG_FILE)
            store.check_compatible(PreprocessConfig.model_validate(saved["preprocess"]), store.image_shape)
        state_epoch = ck.read_json(out / "last" / ck.STATE_FILE)["run"]["epoch"] if resume else None
        if rt.is_main:
            if overwrite and not resume:
                for name in RUN_OUTPUTS:
                    p = out / name
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)
            ck.make_readable(atomic_write_json(out / ck.CONFIG_FILE, meta))
            handler = attach_log_file(out)
            metrics = MetricsLog(out, state_epoch, open_tracker(tracker, out, cfg.model_dump(mode="json")))
        for note in preset_notes(cfg, store):
            reporter.line(note)
        reporter.line(
            f"{'resuming' if resume else 'training'} {KIND_NAMES[cfg.model.kind]} on {len(train_idx)} images "
            f"(val {len(val_idx)}), shape {store.image_shape}, device {rt.device}, "
            f"{rt.world_size} process(es)"
        )
        if len(val_idx) == 0 and cfg.model.kind != "pca":
            reporter.line("no validation images: best/ and early stopping use the training loss")
        if cfg.model.kind == "pca":
            if rt.is_main:
                fit_pca(cfg, store, train_idx, val_idx, out, meta, metrics, reporter)
        else:
            trainer = TorchTrainer(
                cfg, rt, store, train_idx, val_idx, out, meta, reporter, on_batch, transform=transform
            )
            if resume:
                trainer.restore(out / "last")
            trainer.fit(metrics)
        if rt.is_main:
            write_run_card(out)
        ok = True
    finally:
        reporter.close()
        if metrics is not None:
            metrics.close(ok)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(determ, warn_only=True)
        torch.set_flush_denormal(False)
        if ok:
            rt.close()
        elif rt.owns_group:
            torch.distributed.destroy_process_group()
    return out


def _fill_shape(cfg: TrainConfig, store: TensorStore) -> TrainConfig:
    """Take channels and image size from the store; refuse a config that says otherwise."""
    c, h, w = store.image_shape
    m = cfg.model
    if m.in_channels not in (None, c) or (m.image_size is not None and tuple(m.image_size) != (h, w)):
        raise ModelMismatchError(
            f"config expects {m.in_channels} channel(s) of {m.image_size}; the store has {c} of {(h, w)}",
            store.root,
        )
    # validated (not model_copy), so arch auto is resolved by the image size and the run records the network
    shaped = ModelConfig.model_validate({**m.model_dump(), "in_channels": c, "image_size": (h, w)})
    update: dict[str, Any] = {"model": shaped}
    if cfg.preset and cfg.denoise == "coarse" and "noise_resolution" not in cfg.model_fields_set:
        # the preset's noise is defined by its cell size in pixels, so its grid follows the image size
        update["noise_resolution"] = noise_resolution_for(cfg.preset, min(h, w)) or cfg.noise_resolution
    return cfg.model_copy(update=update)


def preset_notes(cfg: TrainConfig, store: TensorStore) -> list[str]:
    """What the user should know about the preset on this store: its values, and a size it was not made for
    (slices are sized by ``vaedx data prepare``; training cannot resize them)."""
    if not cfg.preset:
        return []
    preset, (_, h, w) = PRESETS[cfg.preset], store.image_shape
    notes = [
        f"preset {cfg.preset}: {cfg.model.kind} ({cfg.model.arch}), widths {cfg.model.widths}, "
        f"denoise {cfg.denoise} (grid {cfg.noise_resolution}, std {cfg.noise_std}), {cfg.epochs} epochs; "
        f"detect default {cfg.detect.scorer if cfg.detect else 'residual'}"
    ]
    if max(h, w) > preset.size:
        cheaper = max(h, w) ** 2 // preset.size**2
        notes.append(
            f"preset {cfg.preset} is meant for {preset.size} px slices; this store's are {h}x{w}: "
            f"`vaedx data prepare --size {preset.size}` makes training about {cheaper}x cheaper"
        )
    return notes


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    has_run = any((out / n).exists() for n in ("last", "best", ".last.old"))
    if resume and not (out / "last" / ck.STATE_FILE).exists():
        raise ConfigError("nothing to resume: no last/ checkpoint in the output folder", out)
    if not resume and has_run and not overwrite:
        raise ConfigError("output folder already holds a run; use --resume or --overwrite", out)


def _resume_config(out: Path, config_path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config, with only options that do not change the computation allowed to differ."""
    ck.recover(out / "last")
    cfg_file = out / "last" / ck.CONFIG_FILE
    if not cfg_file.exists():
        raise ConfigError("nothing to resume: no last/ checkpoint in the output folder", out)
    saved = ck.read_run_config(cfg_file)["train"]
    explicit = merge(read_yaml(config_path) if config_path else {}, overrides)
    cfg = build_config(None, explicit, base=saved)
    old, new = TrainConfig.model_validate(saved).model_dump(mode="json"), cfg.model_dump(mode="json")
    changed = [k for k in new if k not in RESUMABLE_FIELDS and k != "model" and new[k] != old[k]]
    changed += [f"model.{k}" for k in new["model"] if new["model"][k] != old["model"][k]]
    if changed:
        raise ConfigError(f"cannot change {', '.join(changed)} when resuming; start a new run instead", out)
    return cfg


def run_metadata(
    cfg: TrainConfig, store: TensorStore, train_idx: np.ndarray, val_idx: np.ndarray, rt: Runtime
) -> dict[str, Any]:
    """config.json: everything a later stage needs to use the model on new data, and where it came from."""
    from vaedx.version import __version__

    def counts(idx: np.ndarray) -> dict[str, int]:
        names = [*store.label_names, "unlabelled"]
        labs, n = np.unique(store.labels[idx], return_counts=True)
        return {names[int(lab)]: int(c) for lab, c in zip(labs, n, strict=True)}

    return {
        "format": ck.RUN_FORMAT,
        "format_version": ck.RUN_FORMAT_VERSION,
        "vaedx_version": __version__,
        "torch_version": torch.__version__,
        "train": cfg.model_dump(mode="json"),
        "preprocess": store.preprocess.model_dump(mode="json"),
        "label_names": list(store.label_names),
        "data": {
            "store": str(Path(store.root).resolve()),
            "image_shape": list(store.image_shape),
            "n_store": len(store),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "train_labels": counts(train_idx),
            "val_labels": counts(val_idx),
            "world_size": rt.world_size,
        },
        "store_facts": store_facts(store),  # counts for MODEL_CARD.md; no patient id, no path
    }


def train(
    store: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    transform: Transform | None = None,
    tracker: str = "none",
    **overrides: Any,
) -> LoadedModel:
    """Train a model on a tensor store; options as in TrainConfig/ModelConfig (e.g. latent_dim=16, beta=2).

    Returns the best checkpoint, loaded. ``config`` is an optional YAML file; keyword options override it.
    ``transform``: a MONAI/torchio transform or any callable applied to each training image (a dictionary
    transform gets ``{"image": ..., "mask": ...}``), see :mod:`vaedx.data.augment`.
    """
    opts = {**overrides, "store": store, "out": out}
    run_training(
        config, opts, resume=resume, overwrite=overwrite, quiet=quiet, transform=transform, tracker=tracker
    )
    return load_model(out)
